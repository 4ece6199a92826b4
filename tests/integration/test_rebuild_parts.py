"""Fast checks of the rebuild's parts without daemons: sealing the private key to the
hypervisor's minion key, the master address a seed carries, the node lookup, and how the
lab bridge reads a domain and a guest's OS."""
import os

import pytest

import leapfrog_errors
import leapfrog_rebuild
from lab import bridge, guest
from tests.keypair import rsa_pair




def test_sealed_key_opens_only_with_the_recipients_key(tmp_path):
    hyp_pub, hyp_pem = rsa_pair()
    _, other_pem = rsa_pair()
    secret = "-----BEGIN RSA PRIVATE KEY-----\nabc\n-----END RSA PRIVATE KEY-----\n"
    sealed = leapfrog_rebuild.seal(secret, hyp_pub)
    assert "PRIVATE" not in str(sealed) and "abc" not in str(sealed)
    (tmp_path / "hyp.pem").write_text(hyp_pem)
    (tmp_path / "other.pem").write_text(other_pem)
    assert leapfrog_rebuild.unseal(sealed, str(tmp_path / "hyp.pem")) == secret
    with pytest.raises(leapfrog_errors.LeapfrogError, match="sealed to another key"):
        leapfrog_rebuild.unseal(sealed, str(tmp_path / "other.pem"))
    tampered = dict(sealed, data=sealed["data"][:-4] + "AAAA")
    with pytest.raises(leapfrog_errors.LeapfrogError, match="altered"):
        leapfrog_rebuild.unseal(tampered, str(tmp_path / "hyp.pem"))


def test_master_address():
    opts = {"interface": "10.0.0.5", "ret_port": 4506}
    assert leapfrog_rebuild.master_address(opts, {}) == "10.0.0.5"
    assert leapfrog_rebuild.master_address({**opts, "ret_port": 14506}, {}) == "10.0.0.5:14506"
    assert leapfrog_rebuild.master_address({"interface": "fd00::5", "ret_port": 1}, {}) \
        == "[fd00::5]:1"
    assert leapfrog_rebuild.master_address(opts, {"master": "salt.example:4506"}) \
        == "salt.example:4506"
    with pytest.raises(leapfrog_errors.LeapfrogError, match="set vms:master"):
        leapfrog_rebuild.master_address({"interface": "0.0.0.0"}, {})


def test_target_names_the_known_nodes():
    config = {"vms": {"image": "/img/trixie.qcow2", "os": {"os": "Debian",
                                                          "oscodename": "trixie"},
                      "nodes": {"ctl01": {"hypervisor": "kvm01", "domain": "ctl01-vm"}}}}
    found = leapfrog_rebuild.target(config, "ctl01")
    assert found["hypervisor"] == "kvm01" and found["domain"] == "ctl01-vm"
    assert found["image"] == "/img/trixie.qcow2" and found["method"] == "overlay"
    assert leapfrog_rebuild.target(config, "ctl01", image="/x.qcow2")["image"] == "/x.qcow2"
    with pytest.raises(leapfrog_errors.LeapfrogError, match="known: ctl01"):
        leapfrog_rebuild.target(config, "ctl02")


def test_bridge_reads_the_domain_and_the_guest_os():
    xml = guest.domain_xml("ctl01", "/v/ctl01.qcow2", "/v/ctl01.console", "/k", "/i",
                           seed="/v/ctl01-seed.iso")
    assert bridge.parse_domain(xml) == {"disk": "/v/ctl01.qcow2",
                                        "cdroms": ["/v/ctl01-seed.iso"],
                                        "console": "/v/ctl01.console"}
    assert bridge.guest_os_grains("trixie") == {"os": "Debian", "oscodename": "trixie",
                                                "osrelease": "13"}
    assert bridge.guest_os_grains("plan9") == {"oscodename": "plan9"}


def test_kept_key_only_from_the_nodes_own_keep_dir(tmp_path):
    opts = {"cachedir": str(tmp_path / "cache")}
    config = {"vms": {"image": "/i.qcow2", "nodes": {"ctl01": {"hypervisor": "kvm01"},
                                                     "ctl02": {"hypervisor": "kvm01"}}}}
    pub, _ = rsa_pair()
    kept = leapfrog_rebuild.keep_previous_key(opts, "ctl01", pub, backup="ctl01/b1")
    other = leapfrog_rebuild.keep_previous_key(opts, "ctl02", pub)
    assert leapfrog_rebuild.kept_key(opts, config, "ctl01", backup="ctl01/b1") == (kept, pub)
    assert leapfrog_rebuild.kept_key(opts, config, "ctl01", key=os.path.basename(kept))[0] == kept
    (tmp_path / "evil.pub").write_text(pub)
    os.symlink(tmp_path / "evil.pub", os.path.join(os.path.dirname(kept), "x.pub"))
    for key in (str(tmp_path / "evil.pub"), other, "../ctl02/" + os.path.basename(other),
                "x.pub"):
        with pytest.raises(leapfrog_errors.LeapfrogError, match="is not a key kept for ctl01"):
            leapfrog_rebuild.kept_key(opts, config, "ctl01", key=key)
    os.unlink(os.path.join(os.path.dirname(kept), "x.pub"))
    for node, text in (("../..", "node must be a minion id"), ("ctl01\n", "node must be"),
                       ("ctl09", "not in vms:nodes")):
        with pytest.raises(leapfrog_errors.LeapfrogError, match=text):
            leapfrog_rebuild.kept_key(opts, config, node)
    with open(kept, "w") as handle:
        handle.write("-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n")
    with pytest.raises(leapfrog_errors.LeapfrogError, match="is not a PEM public key"):
        leapfrog_rebuild.kept_key(opts, config, "ctl01")
