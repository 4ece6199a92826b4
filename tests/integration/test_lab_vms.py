"""The lab's controllers' services are tied to their VMs, and the lab redeploys a node at a
release through Salt (``state.apply lab_openstack.node``), on real parts only.

1. The bridge alone (heavy since 2026-12-07, ~2 min: the suite's budget; CI meets the bridge in
   test_rebuild, a VM's minion started and stopped with its domain): a one-controller cloud without computes, kvm01's
   private libvirtd, ctl01's TCG domain and the bridge in this process. The bridge adopts
   the old disk with what the cloud runs on ctl01; a stopped domain stops ctl01's services,
   a started one starts them again at the release its disk records; a freshly rebuilt disk
   (vm_backup.rebuild with a seed) starts none.
2. The whole lab (heavy): ``Lab.up`` with one controller and one compute and their VMs, the
   redeploy contract the product relies on (2024.1 -> 2025.1, stopped then running), an
   offline backup that stops and restarts ctl01 with its 2025.1 services, and
   ``leapfrog.rebuild_node`` followed by the redeploy; ``Lab.down`` leaves nothing.
"""
import concurrent.futures
import json
import os
import shutil
import tempfile
import time

import pytest

from lab import bridge as lab_bridge
from lab import guest, openstack_venv, procs, stack, topology
from lab.libvirt import Libvirt
from lab.openstack_cloud import OpenStackCloud
from lab.salt_cluster import SaltCluster
from tests.conftest import REPO
from tests.keypair import rsa_pair

NODE = "ctl01"
NEW_VENV = openstack_venv.venv_path("2025.1")


def _have_parts():
    try:
        import libvirt  # noqa: F401
        import pycdlib  # noqa: F401
    except ImportError:
        return False
    return all(shutil.which(t) for t in ("libvirtd", "virtlogd", "qemu-system-x86_64",
                                         "qemu-img", "busybox", "unshare", "mariadbd"))


pytestmark = pytest.mark.skipif(not _have_parts(), reason="libvirt, qemu, busybox-static, "
                                "MariaDB, libvirt-python and pycdlib are needed")


def _wait_event(run_dir, action, after, node=NODE, timeout=240):
    """The bridge's first ``action`` for ``node`` recorded at/after ``after`` (fails early
    on a bridge error)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in lab_bridge.events(run_dir):
            if entry["time"] < after:
                continue
            if entry["action"] == "error":
                raise AssertionError(f"bridge error: {entry}")
            if entry["action"] == action and entry.get("node") in (None, node):
                return entry
        time.sleep(0.3)
    raise AssertionError(f"no bridge {action} for {node} in {timeout} s: "
                         f"{lab_bridge.events(run_dir)}")


def _node_services(run_dir):
    cloud = OpenStackCloud.attach(os.path.join(run_dir, "os"))
    return {s.kind: s for s in cloud.node_services(NODE)}


def _running(run_dir):
    return {kind: s.running() for kind, s in _node_services(run_dir).items()}




# -- 1. the bridge alone -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def small(guest_images):
    run_dir = tempfile.mkdtemp(prefix="lfb-", dir="/tmp")  # short: unix socket paths
    virt = Libvirt(run_dir)
    cloud = OpenStackCloud(os.path.join(run_dir, "os"), controllers=1, computes=0, servers=0)
    cluster = SaltCluster(run_dir, [n for n in topology.nodes(1, 0) if n.id == NODE])
    watcher, timings, started = None, {}, time.monotonic()
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            hypervisor = pool.submit(virt.up)
            cloud.start()
            hypervisor.result()
        cluster.configure()
        watcher = lab_bridge.Bridge(run_dir, uri=virt.uri, nodes=cluster.nodes,
                                    interval=0.3).start()
        conn = virt.connect()
        vm = guest.define_node(conn, NODE, os.path.join(run_dir, "vms"), guest.OLD)
        conn.close()
        timings["up"] = round(time.monotonic() - started, 1)
        yield {"run_dir": run_dir, "virt": virt, "vm": vm, "timings": timings}
    finally:
        if watcher is not None:
            watcher.stop()
        virt.down()
        cluster.down()
        if os.path.exists(cloud.state_file):  # the bridge restarted services: their PIDs
            OpenStackCloud.attach(cloud.run_dir).stop()
        else:
            cloud.stop()
        print(f"\n[lab_vms bridge] timings: {json.dumps(timings)}")
        shutil.rmtree(run_dir, ignore_errors=True)


def _domain(small):
    conn = small["virt"].connect()
    return conn, conn.lookupByName(NODE)


@pytest.mark.heavy  # the lab's bridge itself: CI meets it in test_rebuild
def test_bridge_adopts_the_old_disk_with_what_the_cloud_runs(small):
    run_dir = small["run_dir"]
    started = _wait_event(run_dir, "services-started", after=0)
    assert started["release"] == "2024.1"
    assert lab_bridge.deployed(run_dir, NODE) == {"release": "2024.1", "enabled": True}
    assert lab_bridge.node_disk(run_dir, NODE) == small["vm"]["disk"]
    assert all(_running(run_dir).values())


@pytest.mark.heavy  # the lab's bridge itself: CI meets it in test_rebuild
def test_domain_stop_stops_the_nodes_services(small):
    run_dir = small["run_dir"]
    pids = {k: s.pid for k, s in _node_services(run_dir).items()}
    minion = SaltCluster(run_dir).pid_file(NODE)
    assert procs.alive(minion)
    t0 = time.time()
    conn, dom = _domain(small)
    dom.destroy()
    conn.close()
    killed = _wait_event(run_dir, "services-stopped", after=t0, timeout=60)
    # its services die first (at once, as a powered-off VM's), then its minion stops
    assert _wait_event(run_dir, "minion-stopped", after=t0, timeout=60)["time"] >= killed["time"]
    small["timings"]["stop"] = round(time.time() - t0, 1)
    assert not any(procs.pid_alive(pid) for pid in pids.values())
    assert not any(_running(run_dir).values())
    assert not procs.alive(minion)
    assert lab_bridge.node_disk(run_dir, NODE) is None  # no domain of it runs


@pytest.mark.heavy  # the lab's bridge itself: CI meets it in test_rebuild
def test_domain_start_restarts_the_release_its_disk_records(small):
    run_dir = small["run_dir"]
    t0 = time.time()
    conn, dom = _domain(small)
    dom.create()
    conn.close()
    entry = _wait_event(run_dir, "services-started", after=t0)
    small["timings"]["start"] = round(time.time() - t0, 1)
    assert entry["release"] == "2024.1"
    services = _node_services(run_dir)
    assert all(s.healthy() and s.release == "2024.1" for s in services.values())


@pytest.mark.heavy  # the lab's bridge itself: CI meets it in test_rebuild
def test_fresh_seed_disk_starts_no_services(small, tmp_path):
    import salt.config
    from saltfactories.utils.functional import Loaders

    run_dir = small["run_dir"]
    opts = salt.config.minion_config(None)
    opts.update({"root_dir": str(tmp_path), "cachedir": str(tmp_path / "cache"),
                 "pki_dir": str(tmp_path / "pki"), "file_client": "local",
                 "module_dirs": [os.path.join(REPO, "_modules")],
                 "pillar": {"leapfrog": {"libvirt": {"uri": small["virt"].uri},
                                         "vms": {"shutdown_timeout": 30}}}})
    import leapfrog_rebuild  # pylint: disable=import-outside-toplevel

    pub, pem = rsa_pair()
    hyp_pub, hyp_pem = rsa_pair()  # the hypervisor minion's own key: the PEM comes sealed
    os.makedirs(opts["pki_dir"], exist_ok=True)
    with open(os.path.join(opts["pki_dir"], "minion.pem"), "w", encoding="utf-8") as handle:
        handle.write(hyp_pem)
    t0 = time.time()
    rebuilt = Loaders(opts).modules.vm_backup.rebuild(
        NODE, guest.ensure()["images"][guest.NEW], minion_pub=pub,
        minion_pem=leapfrog_rebuild.seal(pem, hyp_pub),
        master=f"{topology.MASTER_ADDRESS}:4506", os_release=guest.NEW, stop=True)
    _wait_event(run_dir, "services-stopped", after=t0, timeout=60)
    seeded = _wait_event(run_dir, "seed", after=t0)
    none = _wait_event(run_dir, "services-none", after=t0)
    small["timings"]["rebuild"] = round(time.time() - t0, 1)
    assert seeded["disk"] == lab_bridge.node_disk(run_dir, NODE) != small["vm"]["disk"]
    assert none["deployed"] is None, rebuilt
    assert not any(_running(run_dir).values())
    assert lab_bridge.deployed(run_dir, NODE) is None


# -- 2. the whole lab --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lab():
    run_dir = tempfile.mkdtemp(prefix="lfl-", dir="/tmp")
    the_lab = stack.Lab(run_dir, controllers=1, computes=1)
    timings, started = {}, time.monotonic()
    try:
        the_lab.up()
        timings["lab_up"] = round(time.monotonic() - started, 1)
        timings.update(the_lab.timings)
        yield {"lab": the_lab, "run_dir": run_dir, "timings": timings}
    finally:
        the_lab.down()  # idempotent: the last test already took it down
        print(f"\n[lab_vms lab] timings: {json.dumps(timings)}")
        shutil.rmtree(run_dir, ignore_errors=True)


def _apply(cluster, node, pillar=None, test=False):
    """``salt NODE state.apply lab_openstack.node pillar=...``: the one state's result."""
    args = ["state.apply", "lab_openstack.node"]
    if pillar is not None:
        args.append(f"pillar={json.dumps({'leapfrog': pillar})}")
    if test:
        args.append("test=True")
    proc = cluster._cli("salt", ["--timeout=600", "--static", node, *args], 660)
    ret = json.loads(proc.stdout)[node]
    assert isinstance(ret, dict), ret
    (state,) = ret.values()
    return state


def _cmdlines(run_dir):
    out = {}
    for kind, service in _node_services(run_dir).items():
        with open(f"/proc/{service.pid}/cmdline", "rb") as handle:
            out[kind] = handle.read().replace(b"\0", b" ").decode()
    return out


@pytest.mark.heavy
def test_lab_up_starts_the_vms_bridge_and_pillar(lab):
    the_lab, run_dir = lab["lab"], lab["run_dir"]
    status = the_lab.status()
    assert all(info["running"] for info in status.values()), status
    assert status["vm/ctl01"] == {"running": True, "state": "running", "os": "bookworm",
                                  "disk": os.path.join(run_dir, "vms", "ctl01.qcow2")}
    assert "vm/ctl01" in stack.describe(status) and "OS image bookworm" in stack.describe(status)
    salt = the_lab.salt
    uri = salt.salt("kvm01", "pillar.get", "leapfrog:libvirt:uri", "unmask=True")["kvm01"]
    assert uri == the_lab.virt.uri
    assert salt.salt(NODE, "grains.item", "oscodename")[NODE] == {"oscodename": "bookworm"}
    assert lab_bridge.deployed(run_dir, NODE) == {"release": "2024.1", "enabled": True}


@pytest.mark.heavy
def test_redeploy_contract_2024_1_to_2025_1(lab):
    the_lab, run_dir = lab["lab"], lab["run_dir"]
    salt = the_lab.salt
    state = _apply(salt, NODE)
    assert state["result"] is False
    assert "leapfrog:release" in state["comment"]

    before = {k: s.pid for k, s in _node_services(run_dir).items()}
    state = _apply(salt, NODE, {"release": "2025.1", "services": "stopped"}, test=True)
    assert state["result"] is None and "would stop keystone (2024.1)" in state["comment"]
    assert "configure nova-api for 2025.1" in state["comment"]
    assert {k: s.pid for k, s in _node_services(run_dir).items()} == before

    started = time.monotonic()
    state = _apply(salt, NODE, {"release": "2025.1", "services": "stopped"})
    lab["timings"]["stopped_2025.1"] = round(time.monotonic() - started, 1)
    assert state["result"] is True, state
    assert not any(_running(run_dir).values())
    assert {s.release for s in _node_services(run_dir).values()} == {"2025.1"}
    assert lab_bridge.deployed(run_dir, NODE) == {"release": "2025.1", "enabled": False}
    status = the_lab.status()
    assert status["ctl01/keystone"]["release"] == "2025.1"
    assert status["ctl01/keystone"]["enabled"] is False
    state = _apply(salt, NODE, {"release": "2025.1", "services": "stopped"})
    assert state["result"] is True and state["changes"] == {}, state

    # the product's own DB migration (nova_db) between the two redeploys
    synced = salt.salt(NODE, "state.single", "nova_db.synced", "nova", "release=2025.1",
                       timeout=600)[NODE]
    assert all(s["result"] for s in synced.values()), synced

    started = time.monotonic()
    state = _apply(salt, NODE, {"release": "2025.1", "services": "running"})
    lab["timings"]["running_2025.1"] = round(time.monotonic() - started, 1)
    assert state["result"] is True, state
    services = _node_services(run_dir)
    assert all(s.healthy() and s.release == "2025.1" for s in services.values())
    assert all(NEW_VENV in line for line in _cmdlines(run_dir).values()), _cmdlines(run_dir)
    assert lab_bridge.deployed(run_dir, NODE) == {"release": "2025.1", "enabled": True}
    state = _apply(salt, NODE, {"release": "2025.1"})
    assert state["changes"] == {} and "already" in state["comment"], state

    # a compute, without a VM, through its minion: already there
    state = _apply(salt, "cmp01", {"release": "2024.1", "services": "running"})
    assert state["changes"] == {}, state


@pytest.mark.heavy
def test_offline_backup_stops_and_restarts_the_nodes_services(lab):
    the_lab, run_dir = lab["lab"], lab["run_dir"]
    t0 = time.time()
    backup = the_lab.salt.salt("kvm01", "vm_backup.backup", NODE, timeout=300)["kvm01"]
    assert backup["stopped"] == "acpi shutdown", backup
    lab["backup"] = backup["backup"]
    _wait_event(run_dir, "services-stopped", after=t0)
    entry = _wait_event(run_dir, "services-started", after=t0)
    lab["timings"]["backup_and_services_back"] = round(time.time() - t0, 1)
    assert entry["release"] == "2025.1"
    assert all(NEW_VENV in line for line in _cmdlines(run_dir).values())
    the_lab.salt.wait_minions([NODE])


@pytest.mark.heavy
def test_rebuild_node_then_redeploy(lab):
    the_lab, run_dir = lab["lab"], lab["run_dir"]
    t0 = time.time()
    proc = the_lab.salt.run("leapfrog.rebuild_node", NODE, f"backup={lab['backup']}",
                            "stop=True", timeout=600)
    result = json.loads(proc.stdout)
    assert result["new"] == {"os": "Debian", "oscodename": "trixie"}, result
    _wait_event(run_dir, "services-none", after=t0)
    assert not any(_running(run_dir).values())
    assert the_lab.status()["vm/ctl01"]["os"] == "trixie"
    started = time.monotonic()
    state = _apply(the_lab.salt, NODE, {"release": "2025.1", "services": "running"})
    lab["timings"]["redeploy_after_rebuild"] = round(time.monotonic() - started, 1)
    assert state["result"] is True, state
    assert all(s.healthy() for s in _node_services(run_dir).values())
    assert lab_bridge.deployed(run_dir, NODE) == {"release": "2025.1", "enabled": True}


@pytest.mark.heavy
def test_lab_down_leaves_nothing(lab):
    the_lab, run_dir = lab["lab"], lab["run_dir"]
    pids = [procs.read_pid(p) for p in (the_lab.salt.pid_file("cfg01"),
                                        the_lab.salt.pid_file(NODE),
                                        lab_bridge.pid_file(run_dir),
                                        the_lab.virt.libvirtd_pid)]
    pids += [s.pid for s in _node_services(run_dir).values()]
    assert all(pids)
    the_lab.down()
    assert not any(procs.pid_alive(pid) for pid in pids)
    assert not os.path.exists(run_dir)
