"""Done-when for vm_backup on a real private libvirtd with real TCG guests (lab/).

One module-scoped domain ``vmb01`` (a controller VM's stand-in) boots the tiny bookworm guest; the tests run in file
order: refusals first (no space, running domain), then a live backup, then the round trip
backup -> rebuild from the trixie image -> restore, then corrupted/truncated backups, then
list/prune and the states. The guest's console line (``LEAPFROG-GUEST os=... boot=N
marker=...``) is what the tests read: the marker is a UUID the guest wrote to its disk on
first boot.
"""
import json
import os
import re
import shutil
import subprocess
import tempfile
import time

import leapfrog_files
import pytest
import salt.config
from saltfactories.utils.functional import Loaders

from lab import guest
from tests.conftest import REPO
from tests.keypair import rsa_pair

DOMAIN = "vmb01"  # its own name: other modules may share the session libvirtd


_sha256 = leapfrog_files.sha256

@pytest.fixture(scope="module")
def work(libvirt_lab):
    path = tempfile.mkdtemp(prefix="vmb-", dir=libvirt_lab.run_dir)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def make_loaders(libvirt_lab, work, **backups):
    """Loaders of this repo's modules/states on the lab's libvirtd, backups under work."""
    opts = salt.config.minion_config(None)
    opts.update({
        "root_dir": work, "cachedir": os.path.join(work, "cache"),
        "pki_dir": os.path.join(work, "pki"), "file_client": "local",
        "module_dirs": [os.path.join(REPO, "_modules")],
        "states_dirs": [os.path.join(REPO, "_states")],
        "pillar": {"leapfrog": {
            "libvirt": {"uri": libvirt_lab.uri},
            "backups": {"dir": os.path.join(work, "backups"), "keep": 2, **backups},
            "vms": {"shutdown_timeout": 30},
        }},
    })
    return Loaders(opts)


@pytest.fixture(scope="module")
def loaders(libvirt_lab, work):
    return make_loaders(libvirt_lab, work)


@pytest.fixture(scope="module")
def vm(loaders):
    return loaders.modules.vm_backup


@pytest.fixture(scope="module")
def seal(work):
    """This minion's key pair (the module unseals with it); seals a PEM to it as
    leapfrog.rebuild_node does."""
    import leapfrog_rebuild

    pub, pem = rsa_pair()
    os.makedirs(os.path.join(work, "pki"), exist_ok=True)
    with open(os.path.join(work, "pki", "minion.pem"), "w") as handle:
        handle.write(pem)
    return lambda secret: leapfrog_rebuild.seal(secret, pub)


@pytest.fixture(scope="module")
def node(libvirt_lab, guest_images, work):
    """vmb01: a copy of the bookworm base disk, booted once (its marker is chosen)."""
    images = os.path.join(work, "images")
    conn = libvirt_lab.connect()
    started = time.monotonic()
    made = guest.define_node(conn, DOMAIN, images, release=guest.OLD)
    disk, console = made["disk"], made["console"]
    first = guest.wait_ready(console, 1, timeout=90)
    boot_seconds = time.monotonic() - started
    print(f"\n[vm_backup] guest ready in {boot_seconds:.1f}s: {first}")
    state = {"conn": conn, "disk": disk, "console": console, "images": images,
             "marker": first["marker"], "lines": 1, "boot_seconds": boot_seconds}
    yield state
    remove_domain(conn, DOMAIN)


def remove_domain(conn, name):
    """Destroy and undefine a test's domain, then close the connection."""
    try:
        dom = conn.lookupByName(name)
        if dom.isActive():
            dom.destroy()
        dom.undefine()
    finally:
        conn.close()


def _dom(node):
    return node["conn"].lookupByName(DOMAIN)


def _next_line(node, timeout=90):
    node["lines"] += 1
    return guest.wait_ready(node["console"], node["lines"], timeout=timeout)


def test_backup_refuses_before_stopping_when_space_is_short(vm, node, work):
    small = os.path.join(work, "small")
    os.makedirs(small)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", small], check=True)
    try:
        with pytest.raises(Exception) as info:
            vm.backup(DOMAIN, backup_dir=small)
        assert "not enough space" in str(info.value)
        assert "nothing was stopped" in str(info.value)
        assert _dom(node).isActive()
        assert os.listdir(small) == [] or not any(
            os.listdir(os.path.join(small, d)) for d in os.listdir(small))
    finally:
        subprocess.run(["umount", small], check=True)
    assert guest.console_lines(node["console"])[-1]["boot"] == "1"  # never rebooted


def test_live_backup_keeps_domain_running_and_verifies(vm, node):
    result = vm.backup(DOMAIN, mode="live", tag="live")
    assert result["mode"] == "live"
    assert _dom(node).isActive()
    checked = vm.verify(result["backup"])
    assert checked["verified"] is True
    with open(os.path.join(result["path"], "manifest.json")) as handle:
        manifest = json.load(handle)
    assert manifest["os_release"] == "bookworm"
    assert manifest["disks"][0]["virtual_size"] == 256 * 1024 * 1024
    assert "<domain" in manifest["domain_xml"]
    node["live_backup"] = result["backup"]


def test_offline_restore_refuses_running_domain(vm, node):
    with pytest.raises(Exception) as info:
        vm.restore(DOMAIN, node["live_backup"])
    assert "is running: refusing to restore" in str(info.value)
    assert _dom(node).isActive()


def test_backup_rebuild_restore_round_trip(vm, node, guest_images, seal):
    # offline backup: ACPI shutdown, copy, leave it down for the rebuild
    backup = vm.backup(DOMAIN, restart=False, tag="pre-upgrade")
    assert backup["stopped"] == "acpi shutdown"
    assert not _dom(node).isActive()
    assert vm.verify(backup["backup"])["verified"] is True
    (disk,) = backup["disks"]  # hashed in the pass that copied it: a plain sha256 of the file
    assert disk["method"] in ("sparse copy, sha256 in the same pass", "reflink clone")
    assert _sha256(os.path.join(backup["path"], disk["file"])) == disk["sha256"]
    node["backup"] = backup["backup"]
    print(f"[vm_backup] offline backup {backup['seconds']}s")

    # rebuild from the trixie image with a seed carrying a fresh key pair
    pub, pem = rsa_pair()
    with pytest.raises(Exception) as info:  # never in clear: argv, job cache, events
        vm.rebuild(DOMAIN, guest_images["images"]["trixie"], minion_pub=pub, minion_pem=pem,
                   master="127.0.1.10", os_release="trixie", backup=node["backup"])
    assert "minion_pem is a private key in clear: refused" in str(info.value)
    assert pem not in str(info.value)
    assert vm.info(DOMAIN)["image"] == guest_images["images"]["bookworm"]  # unchanged
    rebuilt = vm.rebuild(DOMAIN, guest_images["images"]["trixie"], minion_pub=pub,
                         minion_pem=seal(pem), master="127.0.1.10", os_release="trixie",
                         backup=node["backup"])
    assert "minion_pem" not in json.dumps(rebuilt) and "PRIVATE" not in json.dumps(rebuilt)
    seed = rebuilt["seed"]["path"]
    assert os.stat(seed).st_mode & 0o777 == 0o600
    read = guest.read_seed(seed)  # what the lab's cloud-init stand-in reads
    assert read["label"] == "cidata"
    assert read["user_data"]["salt_minion"]["conf"] == {"id": DOMAIN, "master": "127.0.1.10"}
    assert read["user_data"]["salt_minion"]["private_key"] == pem
    assert read["user_data"]["salt_minion"]["public_key"] == pub
    assert read["meta_data"]["instance-id"] == rebuilt["seed"]["instance_id"]
    line = _next_line(node)
    assert line["os"] == "trixie"
    assert line["marker"] != node["marker"]
    assert line["seed"] == rebuilt["seed"]["instance_id"]
    assert line["host"] == DOMAIN
    assert vm.info(DOMAIN)["image"] == guest_images["images"]["trixie"]

    # the new minion is in (what leapfrog.rebuild_node waits for): the seed goes
    detached = vm.detach_seed(DOMAIN, seed)
    assert detached == {"domain": DOMAIN, "path": seed, "detached": True, "removed": True}
    assert not os.path.exists(seed)
    for flags in (0, 2):  # the running domain and its definition (VIR_DOMAIN_XML_INACTIVE)
        assert seed not in _dom(node).XMLDesc(flags)
    assert _dom(node).isActive()

    # the rebuilt VM's disk is an overlay: a live backup flattens its chain
    after = vm.backup(DOMAIN, mode="live", tag="rebuilt")
    manifest = vm.manifest(after["backup"])
    assert manifest["os_release"] == "trixie"
    assert len(manifest["disks"][0]["backing_chain"]) == 2
    assert vm.verify(after["backup"])["verified"] is True
    node["rebuilt_backup"] = after["backup"]

    # restore the old VM: the rebuilt domain is stopped and replaced
    restored = vm.restore(DOMAIN, node["backup"], stop=True)
    assert restored["stopped"] == "acpi shutdown"
    assert restored["replaced"]["uuid"] == rebuilt["uuid"]
    with open(os.path.join(vm.verify(node["backup"])["path"], "manifest.json")) as handle:
        manifest = json.load(handle)
    assert restored["disks"][0]["sha256"] == manifest["disks"][0]["sha256"]
    # read back by another reader before the guest boots and writes to it
    assert _sha256(node["disk"]) == manifest["disks"][0]["sha256"]
    # the disk it replaced was kept aside until then, and is gone now
    assert restored["kept_old"] == []
    assert not [f for f in os.listdir(node["images"]) if ".leapfrog-" in f]
    assert vm.start(DOMAIN)["started"] is True
    line = _next_line(node)
    assert line["os"] == "bookworm"
    assert line["marker"] == node["marker"]
    assert line["boot"] == "2"
    assert restored["disks"][0]["path"] == node["disk"]
    print(f"[vm_backup] restore {restored['seconds']}s")


def _clone(vm, backup, suffix):
    src = vm.verify(backup)["path"]
    dst = f"{src}-{suffix}"
    shutil.copytree(src, dst)
    return dst


def test_corrupted_and_truncated_backups_are_refused(vm, node):
    corrupt = _clone(vm, node["backup"], "corrupt")
    disk = os.path.join(corrupt, "vda.qcow2")
    with open(disk, "r+b") as handle:  # flip bytes inside the guest data
        size = os.path.getsize(disk)
        handle.seek(size // 2)
        block = handle.read(4096)
        handle.seek(size // 2)
        handle.write(bytes(b ^ 0xFF for b in block))
    truncated = _clone(vm, node["backup"], "truncated")
    tdisk = os.path.join(truncated, "vda.qcow2")
    os.truncate(tdisk, os.path.getsize(tdisk) // 3)

    running_disk_sha = _sha256(node["disk"])
    for path, words in ((corrupt, ["sha256"]), (truncated, ["sha256", "qemu-img check"])):
        with pytest.raises(Exception) as info:
            vm.verify(path)
        for word in words:
            assert word in str(info.value), str(info.value)
        with pytest.raises(Exception) as info:
            vm.restore(DOMAIN, path, stop=True, start=True)
        assert "failed verification" in str(info.value)
    assert _dom(node).isActive()  # refused before anything was stopped
    assert _sha256(node["disk"]) == running_disk_sha
    for path in (corrupt, truncated):
        shutil.rmtree(path)


def _break_emulator(path):
    """A sound backup whose domain XML libvirt refuses at define time (the emulator it
    names is gone, as after a hypervisor's OS upgrade): fails after the disk swap."""
    import re

    bad = "<emulator>/nonexistent/qemu-system-x86_64</emulator>"
    with open(os.path.join(path, "domain.xml")) as handle:
        xml = re.sub(r"<emulator>[^<]*</emulator>", bad, handle.read())
    assert bad in xml
    with open(os.path.join(path, "domain.xml"), "w") as handle:
        handle.write(xml)
    with open(os.path.join(path, "manifest.json")) as handle:
        manifest = json.load(handle)
    manifest["domain_xml"] = xml
    with open(os.path.join(path, "manifest.json"), "w") as handle:
        json.dump(manifest, handle)


def test_failed_restore_puts_the_old_disk_back(vm, node):
    assert vm.stop(DOMAIN)["stopped"] == "acpi shutdown"
    before_sha, before_xml = _sha256(node["disk"]), _dom(node).XMLDesc(2)
    broken = _clone(vm, node["backup"], "noemulator")
    _break_emulator(broken)
    with pytest.raises(Exception) as info:
        vm.restore(DOMAIN, broken, start=True)
    text = str(info.value)
    assert "libvirt refused the backup's domain XML" in text, text
    assert "the old disks were put back and nothing was changed" in text, text
    assert _sha256(node["disk"]) == before_sha
    assert _dom(node).XMLDesc(2) == before_xml and not _dom(node).isActive()
    assert not [f for f in os.listdir(node["images"]) if ".leapfrog-" in f]
    shutil.rmtree(broken)

    # a sound restore told to keep the disk it replaced: kept aside, byte for byte
    restored = vm.restore(DOMAIN, node["backup"], keep_old=True)
    (kept,) = restored["kept_old"]
    assert kept.startswith(node["disk"] + ".leapfrog-old-") and _sha256(kept) == before_sha
    assert _sha256(node["disk"]) == restored["disks"][0]["sha256"]
    os.unlink(kept)
    assert vm.start(DOMAIN)["started"] is True
    _next_line(node)


def test_list_and_prune(vm, node):
    listed = vm.list(domain=DOMAIN)
    assert [b["tag"] for b in listed] == ["rebuilt", "pre-upgrade", "live"]
    assert [b["os_release"] for b in listed] == ["trixie", "bookworm", "bookworm"]
    pruned = vm.prune()  # pillar leapfrog:backups:keep = 2
    assert pruned["removed"] == [node["live_backup"]]
    # the lab's layout: DB backups share leapfrog:backups:dir, in their own folder; and
    # folders that are not VM backups of this module beside the VM backups
    root = os.path.dirname(os.path.dirname(vm.verify(node["backup"])["path"]))
    base = os.path.dirname(root)
    strangers = {
        os.path.join(base, "mysql", "20260101T000000Z"): {"format": 1, "databases": {}},
        os.path.join(root, "notes"): None,
        os.path.join(root, DOMAIN, "20200101T000000Z-manual"): None,
        os.path.join(root, DOMAIN, "20200101T000000Z-db"): {"domain": DOMAIN, "disks": []},
    }
    for folder, manifest in strangers.items():
        os.makedirs(folder)
        with open(os.path.join(folder, "manifest.json" if manifest else "README"), "w") as f:
            json.dump(manifest or {}, f)
    pruned = vm.prune(keep=1)
    assert pruned["removed"] == [node["backup"]]
    assert [b["id"] for b in vm.list()] == [node["rebuilt_backup"]]
    assert set(pruned["left"]) == {  # never deleted, and said so (not the DB side's)
        os.path.join(root, "notes", "README"),
        os.path.join(root, DOMAIN, "20200101T000000Z-manual"),
        os.path.join(root, DOMAIN, "20200101T000000Z-db")}
    for folder in strangers:
        assert os.listdir(folder), folder  # still there, with its file
        if os.path.dirname(folder) != base + "/mysql":
            shutil.rmtree(folder)
    node["backup"] = node["rebuilt_backup"]


def test_present_state_is_idempotent_and_test_safe(loaders, node):
    states = loaders.states.vm_backup
    ret = states.present(DOMAIN, tag="rebuilt")
    assert ret["result"] is True and ret["changes"] == {}, ret
    ret = states.present(DOMAIN, tag="run2", mode="live", test=True)
    assert ret["result"] is None and ret["comment"].startswith("Would"), ret
    assert len(loaders.modules.vm_backup.list(domain=DOMAIN)) == 1
    ret = states.present(DOMAIN, tag="run2", mode="live")
    assert ret["result"] is True and ret["changes"]["new"].endswith("-run2"), ret
    node["run2"] = ret["changes"]["new"]
    ret = states.present(DOMAIN, tag="run2", mode="live")
    assert ret["result"] is True and ret["changes"] == {}, ret
    assert _dom(node).isActive()


def test_runs_image_and_restored_states_report_no_change_when_true(loaders, node,
                                                                    guest_images):
    states = loaders.states.vm_backup
    bookworm, trixie = guest_images["images"]["bookworm"], guest_images["images"]["trixie"]
    ret = states.runs_image(DOMAIN, image=bookworm)
    assert ret["result"] is True and ret["changes"] == {}, ret
    ret = states.runs_image(DOMAIN, image=trixie, test=True)
    assert ret["result"] is None and ret["comment"] == f"Would rebuild domain {DOMAIN} from {trixie}"
    assert ret["changes"]["old"]["image"] == bookworm
    ret = states.runs_image(DOMAIN, image=trixie)  # running: refused without stop=True
    assert ret["result"] is False and "is running" in ret["comment"], ret
    ret = states.restored(DOMAIN, backup=node["run2"])
    assert ret["result"] is True and ret["changes"] == {}, ret
    ret = states.restored(DOMAIN, backup=node["backup"], test=True)  # the rebuilt VM's backup
    assert ret["result"] is None and ret["comment"].startswith("Would restore"), ret
    assert _dom(node).isActive()


def test_a_throwaway_copies_a_domain_and_discard_removes_only_it(vm, node, guest_images,
                                                                 seal):
    """A rehearsal's controller: made like vmb01 from the trixie image, started with its
    own seed, disk, MAC and console (not waited for: a rebuild's boot is tested above); discard refuses vmb01 and another run's name, then removes
    the throwaway and the files it was given, and nothing of vmb01 or the image."""
    throwaway, run = f"{DOMAIN}-upg", "20261207-120000-ab12"
    trixie = guest_images["images"]["trixie"]
    before = _dom(node).XMLDesc(2)
    pub, pem = rsa_pair()
    with pytest.raises(Exception) as info:  # never over an existing non-throwaway domain
        vm.throwaway(DOMAIN, trixie, throwaway, run, minion_pub=pub, minion_pem=seal(pem),
                     master="127.0.1.10")
    assert "never replaces" in str(info.value) and "vmb01" in str(info.value)
    made = vm.throwaway(throwaway, trixie, DOMAIN, run, minion_pub=pub, minion_pem=seal(pem),
                        master="127.0.1.10", os_release="trixie")
    try:
        assert made["throwaway"] == run and made["started"] is True
        assert made["disk"] == os.path.join(node["images"], f"{throwaway}-trixie.qcow2")
        xml = node["conn"].lookupByName(throwaway).XMLDesc(0)
        console = os.path.join(node["images"], f"{throwaway}-console.log")
        assert console in xml and node["console"] not in xml
        seed = guest.read_seed(made["seed"]["path"])  # what the VM's cloud-init reads
        assert seed["user_data"]["salt_minion"]["conf"] == {"id": throwaway,
                                                            "master": "127.0.1.10"}
        assert node["conn"].lookupByName(throwaway).isActive()
        macs = lambda x: re.findall(r"<mac address='([^']+)'", x)  # noqa: E731
        assert not set(macs(xml)) & set(macs(_dom(node).XMLDesc(0)))
        assert vm.info(throwaway)["throwaway"] == run and vm.info(DOMAIN)["throwaway"] is None

        for domain, wrong in ((DOMAIN, run), (throwaway, "20261207-130000-cd34")):
            with pytest.raises(Exception) as info:
                vm.discard(domain, wrong)
            assert "nothing was changed" in str(info.value), info.value
        assert "not a throwaway" in str(pytest.raises(Exception, vm.discard, DOMAIN, run).value)
        assert _dom(node).XMLDesc(2) == before
    finally:
        gone = vm.discard(throwaway, run)
    assert gone["discarded"] is True
    assert sorted(gone["removed"]) == sorted([made["disk"], made["seed"]["path"], console])
    assert throwaway not in [d.name() for d in node["conn"].listAllDomains()]
    assert os.path.exists(trixie) and os.path.exists(node["disk"])
    assert _dom(node).XMLDesc(2) == before
    assert vm.discard(throwaway, run) == {"domain": throwaway, "discarded": False,
                                          "removed": []}
