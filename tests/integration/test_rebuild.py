"""Done-when for rebuilding a controller VM on a new OS, on real parts only.

A real salt-master cfg01 and a kvm01 minion (lab.salt_cluster, keys seeded, no auto-accept)
whose pillar (lab/pillar/roles/hypervisor.sls) points vm_backup at the lab's private
libvirtd; a ctl01 VM (the tiny bookworm guest, TCG) on that libvirtd; the lab's cloud-init
stand-in (``python -m lab.bridge``) running as its own process, so ctl01's host-side minion
runs exactly while its domain runs. The tests run in file order:

1. refusals that change nothing (unknown node, running domain without a backup);
2. back up ctl01, ``salt-run leapfrog.rebuild_node ctl01 backup=...``: the rebuilt VM's
   minion connects with the key the master accepted beforehand and reports trixie; the
   private key is nowhere under the master's directories;
3. a rebuild from the wrong image fails the OS check (retcode 1, the reason);
4. a minion presenting id ctl01 with another key is not accepted and never answers;
5. rollback: the kept old key accepted again, the backup restored: the old guest boots with
   its marker and the minion reports bookworm again;
6. a rehearsal's throwaway controller upg01 made like ctl01 and discarded, leaving nothing.
"""
import concurrent.futures
import glob
import json
import os
import shutil
import subprocess
import tempfile
import time

import pytest

from lab import bridge as lab_bridge
from lab import guest, procs, topology
from lab.libvirt import Libvirt
from lab.salt_cluster import SALT_BIN, SaltCluster
from tests.keypair import rsa_pair

NODE = "ctl01"
HYP = "kvm01"


def _have_parts():
    try:
        import libvirt  # noqa: F401
        import pycdlib  # noqa: F401
    except ImportError:
        return False
    return all(shutil.which(t) for t in ("libvirtd", "virtlogd", "qemu-system-x86_64",
                                         "qemu-img", "busybox", "unshare"))


def _events(run_dir):
    path = os.path.join(run_dir, "bridge", "events.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _wait_event(run_dir, action, after, node=NODE, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in _events(run_dir):
            if entry["action"] == action and entry["time"] >= after and \
                    entry.get("node") in (None, node):
                return entry
        for entry in _events(run_dir):
            if entry["action"] == "error" and entry["time"] >= after:
                raise AssertionError(f"bridge error: {entry}")
        time.sleep(0.3)
    raise AssertionError(f"no bridge {action} for {node} in {timeout} s: {_events(run_dir)}")


def _accepted_key(cluster, minion_id):
    path = os.path.join(cluster.base, topology.MASTER_ID, "pki", "master", "minions", minion_id)
    with open(path) as handle:
        return handle.read()


def _key_lists(cluster):
    proc = subprocess.run([os.path.join(SALT_BIN, "salt-key"), "-c", cluster.master_conf_dir,
                           "-L", "--out=json"], capture_output=True, text=True,
                          env=cluster.env, check=True)
    return json.loads(proc.stdout)


def _ping(cluster, minion_id, timeout=10):
    return minion_id in cluster.answering([minion_id], timeout)


def _rebuild_run(cluster, *args, timeout=300):
    proc = cluster.run("leapfrog.rebuild_node", NODE, *args, timeout=timeout + 60, check=False)
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(f"salt-run printed no JSON: {proc.stdout}{proc.stderr}")
    if not isinstance(data, dict):
        raise AssertionError(f"salt-run exited {proc.returncode}: {data}\n{proc.stderr[-3000:]}")
    return proc.returncode, data


@pytest.fixture(scope="module")
def lab():
    if not _have_parts():
        pytest.skip("libvirt-daemon-system, qemu, busybox-static, libvirt-python and pycdlib "
                    "are needed")
    images = guest.ensure()
    run_dir = tempfile.mkdtemp(prefix="lfr-", dir="/tmp")  # short: unix socket paths
    virt = Libvirt(run_dir)
    nodes = [n for n in topology.nodes(controllers=1, computes=0) if n.id in (HYP, NODE)]
    cluster = SaltCluster(run_dir, nodes)
    impostor = {}
    timings = {}
    try:
        started = time.monotonic()

        def salt_up():
            cluster.configure()
            cluster.start_master()
            cluster.start_minion(HYP)

        with concurrent.futures.ThreadPoolExecutor(1) as pool:  # both take seconds
            salt_started = pool.submit(salt_up)
            virt.up()
            # the new OS image where the lab pillar's vms:image says it is
            os.makedirs(os.path.join(run_dir, "images"))
            shutil.copy(images["images"]["trixie"],
                        os.path.join(run_dir, "images", "trixie.qcow2"))
            salt_started.result()
        lab_bridge.spawn(run_dir)
        conn = virt.connect()
        vm = guest.define_node(conn, NODE, os.path.join(run_dir, "vms"), guest.OLD)
        conn.close()
        cluster.wait_minions([HYP, NODE], timeout=180)
        cluster.sync(HYP)  # and its pillar: compiled when it started
        cluster.run("saltutil.sync_all")
        timings["lab_up"] = round(time.monotonic() - started, 1)
        yield {"run_dir": run_dir, "cluster": cluster, "virt": virt, "vm": vm,
               "impostor": impostor, "timings": timings}
    finally:
        lab_bridge.terminate(run_dir)
        if impostor.get("name"):
            cluster.stop_minion(impostor["name"])
        virt.down()  # every domain destroyed and undefined, daemons stopped by PID
        cluster.down()
        print(f"\n[rebuild] timings: {json.dumps(timings)}")
        shutil.rmtree(run_dir, ignore_errors=True)


def test_bridge_started_the_old_minion(lab):
    cluster = lab["cluster"]
    grains = cluster.salt(NODE, "grains.item", "os", "oscodename")[NODE]
    assert grains == {"os": "Debian", "oscodename": "bookworm"}
    adopted = [e for e in _events(lab["run_dir"]) if e["action"] == "adopt"]
    assert adopted and adopted[0]["disk"] == lab["vm"]["disk"]
    line = guest.console_lines(lab["vm"]["console"])[-1]
    lab["marker"] = line["marker"]
    assert line["os"] == "bookworm"


def test_refusals_change_no_key(lab):
    cluster = lab["cluster"]
    key_before = _accepted_key(cluster, NODE)
    rc, data = _rebuild_run(cluster, timeout=60)  # the domain runs, no stop, no backup
    assert rc != 0
    assert data["retcode"] == 1 and data["step"] == "check"
    assert f"domain {NODE} on {HYP} is running" in data["error"]
    proc = cluster.run("leapfrog.rebuild_node", "ctl09", check=False)
    assert proc.returncode != 0
    assert "node 'ctl09' is not in vms:nodes" in json.loads(proc.stdout)["error"]
    assert _accepted_key(cluster, NODE) == key_before
    assert _ping(cluster, NODE) is True  # the old minion was never locked out


def test_rebuild_node_on_the_new_os(lab):
    cluster, run_dir = lab["cluster"], lab["run_dir"]
    old_key = _accepted_key(cluster, NODE)
    started, t0 = time.monotonic(), time.time()
    backup = cluster.salt(HYP, "vm_backup.backup", NODE, "restart=False", "tag=pre-rebuild",
                          timeout=180)[HYP]
    assert backup["stopped"] == "acpi shutdown", backup
    lab["backup"] = backup["backup"]
    lab["timings"]["backup"] = round(time.monotonic() - started, 1)
    # the bridge stopped ctl01's minion when its domain stopped
    _wait_event(run_dir, "minion-stopped", after=t0)
    assert not procs.alive(cluster.pid_file(NODE))

    started = time.monotonic()
    rc, data = _rebuild_run(cluster, f"backup={backup['backup']}")
    lab["timings"]["rebuild_node"] = round(time.monotonic() - started, 1)
    lab["timings"]["rebuild_phases"] = data.get("phases")
    print(f"\n[rebuild] {json.dumps(data)}")
    assert rc == 0, data
    assert data["old"] == {"os": "Debian", "oscodename": "bookworm"}
    assert data["new"] == {"os": "Debian", "oscodename": "trixie"}
    assert set(data["phases"]) == {"check", "key", "rebuild", "boot", "grains", "seed", "sync"}
    assert data["master"] == f"{topology.MASTER_ADDRESS}:{cluster._ports()['ret_port']}"
    assert "PRIVATE KEY" not in json.dumps(data)

    # once the new minion answered, its seed (the private key in clear) was ejected from
    # the domain and deleted
    assert data["seed"]["detached"] is True and data["seed"]["removed"] is True, data["seed"]
    assert not os.path.exists(data["seed"]["path"])
    conn = lab["virt"].connect()
    try:
        for flags in (0, 2):  # running domain, persistent definition (XML_INACTIVE)
            assert data["seed"]["path"] not in conn.lookupByName(NODE).XMLDesc(flags)
    finally:
        conn.close()

    # the rebuilt minion answers with the key the master accepted before the VM existed
    # (what the lab's cloud-init stand-in took from the seed into the guest's /etc/salt)
    new_key = _accepted_key(cluster, NODE)
    assert new_key != old_key
    pki = [os.path.dirname(p) for p in glob.glob(os.path.join(run_dir, "bridge", "disks", "*",
                                                              "pki", "minion.pub"))
           if open(p).read().strip() == new_key.strip()]
    assert len(pki) == 1, pki
    with open(os.path.join(pki[0], "minion.pem")) as handle:
        seed = {"private_key": handle.read()}
    assert cluster.salt(NODE, "grains.item", "oscodename")[NODE] == {"oscodename": "trixie"}
    line = guest.console_lines(lab["vm"]["console"])[-1]
    assert line["os"] == "trixie" and line["marker"] != lab["marker"]
    assert NODE not in _key_lists(cluster).get("minions_pre", [])

    # the private key exists only in the seed: not in the master's cache, jobs or logs
    body = [ln for ln in seed["private_key"].splitlines() if "-----" not in ln]
    needle = body[len(body) // 2]
    # (nor on the hypervisor minion, which only saw it sealed to its own key)
    roots = [os.path.join(cluster.base, name) for name in (topology.MASTER_ID, HYP)]
    found = subprocess.run(["grep", "-rlF", needle, *roots], capture_output=True,
                           text=True).stdout.split()
    assert found == []
    # and the kept old key is the one accepted before
    kept = data["key"]["previous_kept"]
    with open(kept) as handle:
        assert handle.read() == old_key
    lab["kept_key"], lab["old_key"] = kept, old_key


def test_wrong_image_fails_the_os_check(lab):
    """The OS check is real: the grains come from what the guest boots (its disk's
    /etc/os-release, as Salt's core grains would), not from what the seed asked for."""
    cluster = lab["cluster"]
    wrong = guest.ensure()["images"]["bookworm"]
    started = time.monotonic()
    rc, data = _rebuild_run(cluster, f"image={wrong}", "stop=True")
    lab["timings"]["wrong_image_rebuild"] = round(time.monotonic() - started, 1)
    assert rc != 0 and data["retcode"] == 1
    assert data["step"] == "grains"
    assert "ctl01 came back with the wrong OS: oscodename='bookworm' (expected 'trixie')" \
        in data["error"]
    assert set(data["phases"]) == {"check", "key", "rebuild", "boot", "grains", "seed"}  # no sync: stopped at the OS check
    # the VM was replaced, so its new key stays accepted: the node answers (wrong OS)
    assert cluster.salt(NODE, "grains.item", "oscodename")[NODE] == {"oscodename": "bookworm"}


def test_another_key_is_not_accepted(lab):
    cluster, run_dir = lab["cluster"], lab["run_dir"]
    accepted = _accepted_key(cluster, NODE)
    t0 = time.time()
    stopped = cluster.salt(HYP, "vm_backup.stop", NODE, timeout=120)[HYP]
    assert stopped["stopped"] == "acpi shutdown"
    _wait_event(run_dir, "minion-stopped", after=t0)
    assert _ping(cluster, NODE, timeout=3) is not True

    # an impostor: minion id ctl01, its own fresh key pair
    name = "imp01"
    pki = os.path.join(cluster.base, name, "pki", "minion")
    os.makedirs(pki)
    subprocess.run([os.path.join(SALT_BIN, "salt-key"), "-c", cluster.master_conf_dir,
                    "--gen-keys=minion", f"--gen-keys-dir={pki}"], check=True,
                   capture_output=True, env=cluster.env)
    ports = cluster._ports()
    cluster._write(name, "minion", {"id": NODE, "master": topology.MASTER_ADDRESS,
                                    "master_port": ports["ret_port"],
                                    "acceptance_wait_time": 1, "random_reauth_delay": 0})
    lab["impostor"]["name"] = name
    cluster.start_minion(name)
    with open(os.path.join(pki, "minion.pub")) as handle:
        impostor_pub = handle.read()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if NODE in _key_lists(cluster).get("minions_denied", []):
            break
        time.sleep(1)
    keys = _key_lists(cluster)
    assert NODE in keys["minions_denied"], keys
    assert NODE in keys["minions"]
    assert _accepted_key(cluster, NODE) == accepted  # untouched
    denied = os.path.join(cluster.base, topology.MASTER_ID, "pki", "master", "minions_denied",
                          NODE)
    if os.path.exists(denied):
        with open(denied) as handle:
            assert handle.read().strip() == impostor_pub.strip()
    assert _ping(cluster, NODE, timeout=5) is not True  # it never answers
    cluster.stop_minion(name)
    lab["impostor"].clear()


def test_restore_node_key_accepts_only_a_kept_key_of_a_known_node(lab):
    """A rollback's key step cannot be turned into "trust this key for that minion id"."""
    cluster, run_dir = lab["cluster"], lab["run_dir"]
    keep_dir = os.path.dirname(lab["kept_key"])
    attacker_pub, _ = rsa_pair()
    outside = os.path.join(run_dir, "attacker.pub")
    with open(outside, "w") as handle:
        handle.write(attacker_pub)
    link = os.path.join(keep_dir, "29990101T000000Z--link.pub")
    os.symlink(outside, link)
    junk = os.path.join(keep_dir, "29990101T000000Z--junk.pub")
    with open(junk, "w") as handle:
        handle.write("not a key\n")
    before = (_key_lists(cluster), _accepted_key(cluster, NODE))
    cases = [
        (["../.."], "node must be a minion id (letters, digits, '.', '_', '-'), got '../..'"),
        (["ctl09"], "node 'ctl09' is not in vms:nodes (or has no hypervisor); known: ctl01"),
        ([NODE, f"key={outside}"], "is not a key kept for ctl01: only files of"),
        ([NODE, "key=../kvm01/x.pub"], "is not a key kept for ctl01: only files of"),
        ([NODE, f"key={link}"], "is not a key kept for ctl01: only files of"),
        ([NODE, f"key={junk}"], "is not a PEM public key: not accepted; nothing was changed"),
    ]
    try:
        for args, text in cases:
            proc = cluster.run("leapfrog.restore_node_key", *args, check=False)
            assert proc.returncode != 0, (args, proc.stdout)
            data = json.loads(proc.stdout)
            assert data["retcode"] == 1 and text in data["error"], (args, data)
            assert (_key_lists(cluster), _accepted_key(cluster, NODE)) == before
    finally:
        os.unlink(link)
        os.unlink(junk)


def test_rollback_restores_the_old_guest_and_minion(lab):
    cluster, run_dir = lab["cluster"], lab["run_dir"]
    # two rebuilds kept two keys: the one kept with this backup goes with its disk
    ret = json.loads(cluster.run("leapfrog.restore_node_key", NODE,
                                 f"backup={lab['backup']}").stdout)
    assert ret["accepted"] == lab["kept_key"]
    assert _accepted_key(cluster, NODE) == lab["old_key"]
    started = time.monotonic()
    after = time.time()
    restored = cluster.salt(HYP, "vm_backup.restore", NODE, lab["backup"], "start=True",
                            timeout=180)[HYP]
    assert restored["disks"][0]["path"] == lab["vm"]["disk"]
    _wait_event(run_dir, "minion-started", after=after)
    cluster.wait_minions([NODE], timeout=120)
    lab["timings"]["restore_to_minion"] = round(time.monotonic() - started, 1)
    assert cluster.salt(NODE, "grains.item", "oscodename")[NODE] == {"oscodename": "bookworm"}
    line = guest.console_lines(lab["vm"]["console"])[-1]
    assert line["os"] == "bookworm" and line["marker"] == lab["marker"]


def _runner(cluster, function, *args, timeout=300):
    proc = cluster.run(function, *args, timeout=timeout + 60, check=False)
    return proc.returncode, json.loads(proc.stdout)


@pytest.mark.heavy  # the suite's 30 minutes; test_dress_rehearsal makes and discards it too
def test_a_throwaway_controller_comes_and_goes_leaving_nothing(lab):
    """A rehearsal's throwaway controller (pillar rehearsal:node upg01): a VM like ctl01
    from the new OS image whose minion comes in with a pre-accepted key, then discarded by
    its run only: domain, files and key gone, ctl01 untouched."""
    cluster, run_dir = lab["cluster"], lab["run_dir"]
    run, other = "20261207-120000-ab12", "20261207-130000-cd34"
    conn = lab["virt"].connect()
    try:
        ctl01_xml = conn.lookupByName(NODE).XMLDesc(2)
    finally:
        conn.close()
    ctl01_key = _accepted_key(cluster, NODE)  # (rehearsal:node ctl01 is refused by the
    after = time.time()                        # pillar's check: tests/unit/test_schema)
    rc, data = _runner(cluster, "leapfrog.throwaway_node", "run=" + run)
    print(f"\n[rebuild] throwaway: {json.dumps(data)}")
    assert rc == 0, data
    assert (data["node"], data["like"], data["new"]) == (
        "upg01", NODE, {"os": "Debian", "oscodename": "trixie"})
    assert data["seed"]["removed"] is True and "PRIVATE KEY" not in json.dumps(data)
    lab["timings"]["throwaway"] = data["seconds"]
    _wait_event(run_dir, "minion-started", after=after, node="upg01")
    assert "upg01" in _key_lists(cluster)["minions"]

    rc, refused = _runner(cluster, "leapfrog.discard_node", "run=" + other)
    assert rc != 0 and f"made for rehearsal run {run}, not {other}" in refused["error"]
    assert _ping(cluster, "upg01") is True  # nothing changed
    after = time.time()
    rc, gone = _runner(cluster, "leapfrog.discard_node", "run=" + run)
    assert rc == 0 and gone["discarded"] is True and gone["key_deleted"] is True, gone
    assert sorted(os.path.basename(p) for p in gone["removed"]) == [  # the seed went
        "upg01-console.log", "upg01-trixie.qcow2"]                      # when it came in
    assert not glob.glob(os.path.join(os.path.dirname(data["disk"]), "upg01*"))
    _wait_event(run_dir, "minion-stopped", after=after, node="upg01")
    assert "upg01" not in json.dumps(_key_lists(cluster))
    conn = lab["virt"].connect()
    try:
        assert "upg01" not in [d.name() for d in conn.listAllDomains()]
        assert conn.lookupByName(NODE).XMLDesc(2) == ctl01_xml
    finally:
        conn.close()
    assert _accepted_key(cluster, NODE) == ctl01_key and _ping(cluster, NODE) is True


def test_bridge_stops_the_minions_it_started_when_it_stops(lab):
    cluster, run_dir = lab["cluster"], lab["run_dir"]
    pid = procs.read_pid(lab_bridge.pid_file(run_dir))
    assert procs.pid_alive(pid)
    minion = procs.read_pid(cluster.pid_file(NODE))
    assert procs.pid_alive(minion)
    assert lab_bridge.terminate(run_dir) is True  # SIGTERM by its pid file
    assert not procs.pid_alive(pid) and not procs.pid_alive(minion)
    assert procs.alive(cluster.pid_file(HYP))  # not the bridge's: left alone
    assert [e["action"] for e in _events(run_dir)][-1] == "bridge-down"
