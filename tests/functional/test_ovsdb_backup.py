"""ovsdb_backup against the lab's real OVN central (ovsdb-server NB/SB, ovn-northd): a
backup holds what the NB held, a corrupt one is refused before anything changes, and a
restore brings back switches, routers and ports made or deleted after it."""
import json
import os

import pytest

from lab.ovn import OVN
from tests.loader import minion_modules


@pytest.fixture
def ovn(tmp_path):
    lab = OVN(str(tmp_path / "ovn"))
    lab.start()
    yield lab
    lab.stop()


@pytest.fixture
def mods(ovn, tmp_path):
    return minion_modules(tmp_path / "cache", {"leapfrog": {
        "ovn": {"nb_connection": ovn.nb_connection, "sb_connection": ovn.sb_connection},
        "backups": {"dir": str(tmp_path / "backups")}}}, ["ovsdb_backup"])


def _switches(ovn):
    return sorted(ovn.nbctl("--bare", "--columns=name", "list", "Logical_Switch").split())


def test_restore_brings_back_the_nb_of_the_backup(ovn, mods, tmp_path):
    ovn.nbctl("ls-add", "neutron-net1")
    ovn.nbctl("lsp-add", "neutron-net1", "port1")
    ovn.nbctl("lr-add", "neutron-router1")
    ovn.add_chassis("cmp01", "127.0.0.51")
    taken = mods["ovsdb_backup.backup"](label="run-1")
    assert taken["id"].endswith("-run-1")
    folder = tmp_path / "backups" / "ovsdb" / taken["id"]
    assert sorted(os.listdir(folder)) == ["OVN_Northbound.db", "OVN_Southbound.db",
                                          "manifest.json"]
    manifest = json.loads((folder / "manifest.json").read_text())
    nb = manifest["databases"]["OVN_Northbound"]["tables"]
    assert (nb["Logical_Switch"], nb["Logical_Switch_Port"], nb["Logical_Router"]) == (1, 1, 1)
    assert manifest["databases"]["OVN_Southbound"]["tables"]["Chassis"] == 1
    assert oct(os.stat(folder / "OVN_Northbound.db").st_mode & 0o777) == "0o600"
    assert mods["ovsdb_backup.verify"](label="run-1") == {"id": taken["id"], "valid": True,
                                                          "problems": []}

    # the cloud moves on: a switch deleted, another made
    ovn.nbctl("ls-del", "neutron-net1")
    ovn.nbctl("ls-add", "neutron-net2")
    restored = mods["ovsdb_backup.restore"](None, label="run-1")
    assert restored == {"id": taken["id"], "restored": ["OVN_Northbound", "OVN_Southbound"],
                        "matches_manifest": True, "differ": []}
    assert _switches(ovn) == ["neutron-net1"]
    assert ovn.nbctl("--bare", "--columns=name", "list", "Logical_Switch_Port") == "port1"
    assert ovn.nbctl("--bare", "--columns=name", "list", "Logical_Router") == "neutron-router1"


def test_a_corrupt_backup_is_refused_and_nothing_changes(ovn, mods, tmp_path):
    ovn.nbctl("ls-add", "neutron-net1")
    taken = mods["ovsdb_backup.backup"](label="run-2")
    path = tmp_path / "backups" / "ovsdb" / taken["id"] / "OVN_Northbound.db"
    os.chmod(path, 0o600)
    with open(path, "ab") as handle:
        handle.write(b"\n")
    ovn.nbctl("ls-add", "neutron-net2")
    checked = mods["ovsdb_backup.verify"](taken["id"])
    assert checked["valid"] is False
    assert checked["problems"] == ["OVN_Northbound: OVN_Northbound.db does not match its "
                                   "sha256 (changed or corrupt)"]
    with pytest.raises(Exception, match=f"OVSDB backup {taken['id']} does not verify .*"
                                        "nothing restored"):
        mods["ovsdb_backup.restore"](taken["id"])
    assert _switches(ovn) == ["neutron-net1", "neutron-net2"]


def test_bad_inputs_name_the_fix(mods, tmp_path):
    with pytest.raises(Exception, match="invalid label '../x'"):
        mods["ovsdb_backup.backup"](label="../x")
    with pytest.raises(Exception, match="no OVSDB backup '../../etc' in"):
        mods["ovsdb_backup.verify"]("../../etc")
    with pytest.raises(Exception, match="nb_connection 'http://x' is not an OVSDB remote"):
        mods["ovsdb_backup.backup"](nb_connection="http://x")
    with pytest.raises(Exception, match="no OVSDB backup labelled nope"):
        mods["ovsdb_backup.restore"](None, label="nope")
    assert not os.path.exists(tmp_path / "backups" / "ovsdb") or \
        os.listdir(tmp_path / "backups" / "ovsdb") == []
