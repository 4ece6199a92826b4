"""vm_backup execution module: loader dunders, fake libvirt connections, real qemu-img/cp."""
import io
import json
import os
import subprocess

import pycdlib
import pytest

import leapfrog_errors
from tests.loader import load
from tests.keypair import rsa_pair

vm_backup = load("modules", "vm_backup")

DOMAIN_XML = """<domain type='qemu'>
  <name>ctl01</name>
  <uuid>11111111-2222-3333-4444-555555555555</uuid>
  <memory unit='MiB'>192</memory>
  <os><type arch='x86_64' machine='pc'>hvm</type><kernel>/k</kernel></os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='{disk}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <source file='/old-seed.iso'/>
      <target dev='hdc' bus='ide'/>
      <readonly/>
    </disk>
    <disk type='file' device='disk'>
      <source file='/shared.img'/>
      <target dev='vdb' bus='virtio'/>
      <readonly/>
    </disk>
    <disk type='network' device='disk'>
      <source protocol='rbd' name='pool/img'/>
      <target dev='vdc' bus='virtio'/>
    </disk>
  </devices>
</domain>"""


def run_all(argv, python_shell=False, env=None, stdin=None, cwd=None, timeout=None,
            output_loglevel=None, ignore_retcode=False):
    assert python_shell is False and isinstance(argv, list)
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=timeout)
    return {"retcode": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr}


def make_config(values):
    def get(key, default=None):
        data = values
        for part in key.split(":"):
            if not isinstance(data, dict) or part not in data:
                return default
            data = data[part]
        return data

    return get


@pytest.fixture
def backup_root(tmp_path):
    return str(tmp_path / "backups")


@pytest.fixture
def configure_loader_modules(backup_root):
    config = {"leapfrog": {"backups": {"dir": backup_root, "keep": 2, "headroom": 0},
                           "libvirt": {"uri": "test:///fake"}}}
    return {vm_backup: {"__salt__": {"cmd.run_all": run_all,
                                     "config.get": make_config(config)}}}


class FakeDom:
    def __init__(self, xml, active=False, uuid="11111111-2222-3333-4444-555555555555"):
        self.xml = xml
        self.active = active
        self.uuid = uuid
        self.calls = []

    def name(self):
        return "ctl01"

    def XMLDesc(self, flags=0):
        return self.xml

    def isActive(self):
        return self.active

    def UUIDString(self):
        return self.uuid

    def shutdownFlags(self, flags):
        self.calls.append("shutdown")
        self.active = False

    def destroy(self):
        self.calls.append("destroy")
        self.active = False

    def undefine(self):
        self.calls.append("undefine")

    def create(self):
        self.calls.append("create")
        self.active = True


class FakeConn:
    def __init__(self, dom=None):
        self.dom = dom
        self.defined = []

    def lookupByName(self, name):
        if self.dom is None:
            raise vm_backup.libvirt.libvirtError("not found")
        return self.dom

    def defineXML(self, xml):
        self.defined.append(xml)
        return FakeDom(xml, uuid="99999999-2222-3333-4444-555555555555")

    def getURI(self):
        return "test:///fake"

    def close(self):
        pass


@pytest.fixture
def fake_libvirt(monkeypatch):
    holder = {}

    def install(conn):
        holder["conn"] = conn
        monkeypatch.setattr(vm_backup.libvirt, "open", lambda uri: conn)
        return conn

    return install


def qcow2(path, data=b"leapfrog", size="16M"):
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), size], check=True)
    subprocess.run(["qemu-io", "-c", f"write -P 0x5a 0 {len(data) * 4096}", str(path)],
                   check=True, capture_output=True)
    return str(path)


def test_virtual_names_what_is_missing(monkeypatch):
    assert vm_backup.__virtual__() == "vm_backup"
    monkeypatch.setattr(vm_backup, "HAS_LIBVIRT", False)
    ok, why = vm_backup.__virtual__()
    assert ok is False and "libvirt-python" in why
    monkeypatch.setattr(vm_backup, "HAS_LIBVIRT", True)
    monkeypatch.setattr(vm_backup.shutil, "which", lambda name: None)
    ok, why = vm_backup.__virtual__()
    assert ok is False and "qemu-utils" in why


def test_disks_copies_file_disks_and_says_why_it_skips_others():
    disks, skipped = vm_backup._disks(DOMAIN_XML.format(disk="/vm/ctl01.qcow2"))
    assert disks == [{"target": "vda", "source": "/vm/ctl01.qcow2", "format": "qcow2"}]
    assert [(s["target"], s["reason"]) for s in skipped] == [
        ("hdc", "cdrom"), ("vdb", "readonly"), ("vdc", "disk type network is not a file")]


def test_backup_dir_must_be_configured():
    vm_backup.__salt__["config.get"] = make_config({})
    with pytest.raises(leapfrog_errors.LeapfrogError) as info:
        vm_backup.list_()
    assert "leapfrog:backups:dir" in str(info.value)


def test_backup_refuses_before_stopping_when_space_is_short(tmp_path, fake_libvirt, monkeypatch):
    disk = qcow2(tmp_path / "ctl01.qcow2")
    dom = FakeDom(DOMAIN_XML.format(disk=disk), active=True)
    fake_libvirt(FakeConn(dom))
    monkeypatch.setattr(vm_backup, "_free_bytes", lambda path: 1024)
    with pytest.raises(vm_backup.NotEnoughSpace) as info:
        vm_backup.backup("ctl01")
    assert "1024 bytes free" in str(info.value) and "nothing was stopped" in str(info.value)
    assert dom.calls == [] and dom.active


def test_offline_backup_writes_manifest_and_restarts(tmp_path, fake_libvirt, backup_root):
    disk = qcow2(tmp_path / "ctl01.qcow2")
    dom = FakeDom(DOMAIN_XML.format(disk=disk), active=True)
    fake_libvirt(FakeConn(dom))
    result = vm_backup.backup("ctl01", tag="run1", os_release="bookworm")
    assert dom.calls == ["shutdown", "create"]
    assert result["stopped"] == "acpi shutdown" and result["restarted"] is True
    assert result["backup"].startswith("ctl01/") and result["backup"].endswith("-run1")
    with open(os.path.join(result["path"], "manifest.json")) as handle:
        manifest = json.load(handle)
    (vda,) = manifest["disks"]
    assert vda["virtual_size"] == 16 * 1024 * 1024
    assert vda["sha256"] == vm_backup._sha256(os.path.join(result["path"], "vda.qcow2"))
    assert vda["backing_chain"][0]["filename"] == disk
    assert manifest["os_release"] == "bookworm" and manifest["mode"] == "offline"
    assert [s["target"] for s in manifest["skipped"]] == ["hdc", "vdb", "vdc"]
    assert manifest["domain_xml"].startswith("<domain")
    assert not [p for p in os.listdir(os.path.join(backup_root, "vm", "ctl01")) if p.endswith(".partial")]
    assert vm_backup.verify(result["backup"])["verified"] is True


def test_overlay_is_flattened(tmp_path, fake_libvirt):
    base = qcow2(tmp_path / "base.qcow2")
    disk = str(tmp_path / "ctl01.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base, disk],
                   check=True)
    fake_libvirt(FakeConn(FakeDom(DOMAIN_XML.format(disk=disk))))
    result = vm_backup.backup("ctl01")
    manifest = vm_backup.manifest(result["backup"])
    assert len(manifest["disks"][0]["backing_chain"]) == 2
    assert manifest["disks"][0]["method"].startswith("qemu-img convert")
    info = json.loads(subprocess.run(
        ["qemu-img", "info", "--output=json", os.path.join(result["path"], "vda.qcow2")],
        capture_output=True, text=True, check=True).stdout)
    assert "backing-filename" not in info


def _backup(tmp_path, fake_libvirt):
    disk = qcow2(tmp_path / "ctl01.qcow2")
    dom = FakeDom(DOMAIN_XML.format(disk=disk))
    conn = fake_libvirt(FakeConn(dom))
    return disk, dom, conn, vm_backup.backup("ctl01")


def test_verify_reports_corruption_and_truncation(tmp_path, fake_libvirt):
    _, _, _, made = _backup(tmp_path, fake_libvirt)
    copy = os.path.join(made["path"], "vda.qcow2")
    with open(copy, "r+b") as handle:
        handle.seek(os.path.getsize(copy) - 4096)
        handle.write(b"\xff" * 16)
    with pytest.raises(vm_backup.BackupInvalid) as info:
        vm_backup.verify(made["backup"])
    assert "sha256" in str(info.value)
    os.truncate(copy, 1000)
    with pytest.raises(vm_backup.BackupInvalid) as info:
        vm_backup.verify(made["backup"])
    assert len(info.value.problems) == 2  # qemu-img check and the checksum
    os.unlink(os.path.join(made["path"], "manifest.json"))
    with pytest.raises(vm_backup.BackupInvalid) as info:
        vm_backup.verify(made["path"])
    assert "no manifest.json" in str(info.value)


def test_restore_refuses_a_running_domain_and_a_bad_backup(tmp_path, fake_libvirt):
    disk, dom, conn, made = _backup(tmp_path, fake_libvirt)
    before = vm_backup._sha256(disk)
    dom.active = True
    with pytest.raises(vm_backup.DomainRunning):
        vm_backup.restore("ctl01", made["backup"])
    with open(os.path.join(made["path"], "vda.qcow2"), "r+b") as handle:
        handle.seek(300000)
        handle.write(b"rot")
    with pytest.raises(vm_backup.BackupInvalid):
        vm_backup.restore("ctl01", made["backup"], stop=True)
    assert dom.calls == [] and dom.active  # refused before stopping anything
    assert vm_backup._sha256(disk) == before
    assert not os.path.exists(disk + ".leapfrog-restore")


def test_restore_puts_disk_and_xml_back(tmp_path, fake_libvirt):
    disk, dom, conn, made = _backup(tmp_path, fake_libvirt)
    with open(disk, "r+b") as handle:  # the guest changed its disk since
        handle.seek(200000)
        handle.write(b"new data")
    dom.uuid = "rebuilt0-2222-3333-4444-555555555555"
    dom.active = True
    result = vm_backup.restore("ctl01", "latest", stop=True, start=True)
    assert result["disks"][0]["sha256"] == vm_backup.manifest(made["backup"])["disks"][0]["sha256"]
    assert vm_backup._sha256(disk) == result["disks"][0]["sha256"]
    assert result["replaced"]["uuid"] == "rebuilt0-2222-3333-4444-555555555555"
    assert dom.calls == ["shutdown", "undefine"]
    assert conn.defined and "<name>ctl01</name>" in conn.defined[0]
    assert result["started"] is True


def test_list_and_prune_keep_newest(tmp_path, backup_root):
    for stamp in ("20260101T000000Z", "20260102T000000Z", "20260103T000000Z"):
        folder = os.path.join(backup_root, "vm", "ctl01", stamp)
        os.makedirs(folder)
        with open(os.path.join(folder, "manifest.json"), "w") as handle:
            json.dump({"kind": "vm_backup", "domain": "ctl01", "created": stamp, "disks": []},
                      handle)
    os.makedirs(os.path.join(backup_root, "vm", "ctl01", "20260104T000000Z.partial"))
    assert [b["id"] for b in vm_backup.list_()] == [
        "ctl01/20260103T000000Z", "ctl01/20260102T000000Z", "ctl01/20260101T000000Z"]
    result = vm_backup.prune()  # config keep: 2
    assert result == {"removed": ["ctl01/20260101T000000Z"],
                      "kept": ["ctl01/20260103T000000Z", "ctl01/20260102T000000Z"],
                      "left": []}
    with pytest.raises(leapfrog_errors.LeapfrogError, match="keep must be from 1 "
                       "to 1000, got 0"):
        vm_backup.prune(keep=0)




def read_iso(path, name):
    iso = pycdlib.PyCdlib()
    iso.open(path)
    out = io.BytesIO()
    iso.get_file_from_iso_fp(out, rr_path=f"/{name}")
    label = iso.pvd.volume_identifier.decode().strip()
    iso.close()
    return label, out.getvalue().decode()


@pytest.fixture
def sealed_to_me(tmp_path):
    """A minion pki dir for the module; seals a PEM to its key as leapfrog.rebuild_node does."""
    import leapfrog_rebuild

    hyp_pub, hyp_pem = rsa_pair()
    pki = tmp_path / "pki"
    pki.mkdir()
    (pki / "minion.pem").write_text(hyp_pem)
    vm_backup.__opts__["pki_dir"] = str(pki)
    return lambda pem: leapfrog_rebuild.seal(pem, hyp_pub)


def test_seed_is_a_cidata_iso_readable_only_by_root(tmp_path, sealed_to_me):
    import yaml

    pub, pem = rsa_pair()
    path = str(tmp_path / "seed.iso")
    result = vm_backup.seed(path, "ctl01", "10.0.0.5", pub, sealed_to_me(pem),
                            instance_id="ctl01-1", grains={"roles": ["ctl"]})
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert "PRIVATE" not in json.dumps(result)
    label, user_data = read_iso(path, "user-data")
    assert label == "cidata" and user_data.startswith("#cloud-config\n")
    config = yaml.safe_load(user_data)
    assert config["salt_minion"]["conf"] == {"id": "ctl01", "master": "10.0.0.5"}
    assert config["salt_minion"]["private_key"] == pem
    assert config["salt_minion"]["public_key"] == pub
    assert config["salt_minion"]["grains"] == {"roles": ["ctl"]}
    _, meta = read_iso(path, "meta-data")
    assert yaml.safe_load(meta) == {"instance-id": "ctl01-1", "local-hostname": "ctl01"}
    with pytest.raises(leapfrog_errors.LeapfrogError, match="must be a private key sealed"):
        vm_backup.seed(path, "ctl01", "10.0.0.5", pub, "not a key")
    with pytest.raises(leapfrog_errors.LeapfrogError, match="private key in clear: refused"):
        vm_backup.seed(path, "ctl01", "10.0.0.5", pub, pem)


def test_rebuild_defines_a_new_domain_from_the_image(tmp_path, fake_libvirt, sealed_to_me):
    old_disk = qcow2(tmp_path / "ctl01.qcow2")
    image = qcow2(tmp_path / "trixie.qcow2")
    dom = FakeDom(DOMAIN_XML.format(disk=old_disk))
    conn = fake_libvirt(FakeConn(dom))
    pub, pem = rsa_pair()
    result = vm_backup.rebuild("ctl01", image, minion_pub=pub, minion_pem=sealed_to_me(pem),
                               master="10.0.0.5", os_release="trixie")
    new_disk = str(tmp_path / "ctl01-trixie.qcow2")
    assert result["disk"] == new_disk and os.path.exists(old_disk)
    assert result["replaced"]["uuid"] == dom.uuid and dom.calls == ["undefine"]
    assert "PRIVATE" not in json.dumps(result)
    chain = json.loads(subprocess.run(["qemu-img", "info", "--output=json", new_disk],
                                      capture_output=True, text=True, check=True).stdout)
    assert chain["backing-filename"] == image
    (xml,) = conn.defined
    assert "<uuid>" not in xml
    assert f"<source file=\"{new_disk}\" />" in xml
    assert f"<source file=\"{tmp_path}/ctl01-seed.iso\" />" in xml
    assert vm_backup._metadata(xml) == {"os": "trixie", "image": image}


def test_rebuild_refuses_a_running_domain(tmp_path, fake_libvirt):
    image = qcow2(tmp_path / "trixie.qcow2")
    dom = FakeDom(DOMAIN_XML.format(disk=str(tmp_path / "ctl01.qcow2")), active=True)
    fake_libvirt(FakeConn(dom))
    with pytest.raises(vm_backup.DomainRunning):
        vm_backup.rebuild("ctl01", image, seed_iso="/seed.iso")
    assert dom.calls == []


def test_every_public_function_has_a_cli_example():
    for name in ("info", "list_", "manifest", "start", "stop", "verify", "backup", "restore",
                 "prune", "seed", "rebuild", "detach_seed"):
        assert "CLI Example:" in getattr(vm_backup, name).__doc__, name


def test_rebuild_requires_a_verified_backup_when_named(tmp_path, fake_libvirt):
    disk, dom, conn, made = _backup(tmp_path, fake_libvirt)
    image = qcow2(tmp_path / "trixie.qcow2")
    with open(os.path.join(made["path"], "vda.qcow2"), "r+b") as handle:
        handle.seek(300000)
        handle.write(b"rot")
    with pytest.raises(vm_backup.BackupInvalid):
        vm_backup.rebuild("ctl01", image, seed_iso="/seed.iso", backup=made["backup"])
    assert dom.calls == [] and not conn.defined


def test_backup_rejects_a_tag_that_is_not_a_plain_name(tmp_path, fake_libvirt):
    disk = qcow2(tmp_path / "ctl01.qcow2")
    fake_libvirt(FakeConn(FakeDom(DOMAIN_XML.format(disk=disk))))
    with pytest.raises(leapfrog_errors.LeapfrogError) as info:
        vm_backup.backup("ctl01", tag="../../etc")
    assert "tag must be" in str(info.value)


def test_restore_defines_a_domain_that_no_longer_exists(tmp_path, fake_libvirt):
    disk, dom, conn, made = _backup(tmp_path, fake_libvirt)
    os.unlink(disk)  # e.g. a failed rebuild removed the old VM entirely
    conn.dom = None
    result = vm_backup.restore("ctl01", made["backup"], start=True)
    assert result["replaced"] is None and result["stopped"] is None
    assert vm_backup._sha256(disk) == result["disks"][0]["sha256"]
    assert len(conn.defined) == 1


def test_restore_refuses_a_backup_of_another_domain(tmp_path, fake_libvirt):
    _, _, _, made = _backup(tmp_path, fake_libvirt)
    with pytest.raises(leapfrog_errors.LeapfrogError) as info:
        vm_backup.restore("ctl02", made["backup"])
    assert "is of domain 'ctl01', not 'ctl02'" in str(info.value)


def sparse_file(path):
    """A file with a hole, a block of zeros written as data, data across chunk ends, a tail hole."""
    chunk = vm_backup.CHUNK
    with open(path, "wb") as handle:
        handle.seek(chunk + 4096)  # a hole
        handle.write(os.urandom(chunk))  # data across a chunk boundary
        handle.write(bytes(8 * 4096))  # zeros written as data: become a hole
        handle.write(os.urandom(1000))  # a short, unaligned tail of data
        handle.truncate(4 * chunk + 123)  # a hole to an unaligned end
    os.chmod(path, 0o640)
    return str(path)


def test_copy_hashes_every_byte_and_keeps_holes(tmp_path):
    src = sparse_file(tmp_path / "src.raw")
    dst = str(tmp_path / "dst.raw")
    sha, method = vm_backup._copy(src, dst)
    with open(src, "rb") as a, open(dst, "rb") as b:
        assert a.read() == b.read()
    assert sha == vm_backup._sha256(src) == vm_backup._sha256(dst)  # holes hash as zeros
    assert method == "sparse copy, sha256 in the same pass"  # tmp_path: no reflink
    assert os.stat(dst).st_blocks * 512 <= vm_backup.CHUNK + 2 * 4096  # holes stayed holes
    assert os.stat(dst).st_mode & 0o777 == 0o640
    with pytest.raises(FileExistsError):  # never writes over a file
        vm_backup._copy(src, dst)


def test_copy_of_a_file_that_is_only_a_hole_or_empty(tmp_path):
    for size in (0, 1, 3 * vm_backup.CHUNK + 5):
        src = str(tmp_path / f"hole-{size}")
        with open(src, "wb") as handle:
            handle.truncate(size)
        sha, _ = vm_backup._copy(src, src + ".copy")
        assert sha == vm_backup._sha256(src) and os.path.getsize(src + ".copy") == size
        assert os.stat(src + ".copy").st_blocks == 0


def test_data_runs_skip_whole_blocks_of_zeros():
    block = vm_backup.SPARSE_BLOCK
    buf = bytearray(5 * block + 10)
    buf[1] = 1  # a block that starts with a zero is still data
    buf[3 * block + 7] = 2
    buf[-1] = 3  # the partial last block
    assert vm_backup._data_runs(buf, len(buf)) == [
        (0, block), (3 * block, 4 * block), (5 * block, 5 * block + 10)]
    assert vm_backup._data_runs(bytearray(3 * block), 3 * block) == []
    assert vm_backup._data_runs(buf, 2 * block) == [(0, block)]
    data = bytearray(os.urandom(4 * block))
    data[0] = data[block] = 1  # random data: one run
    assert vm_backup._data_runs(data, len(data)) == [(0, 4 * block)]
    data[2 * block:3 * block] = bytes(block)
    assert vm_backup._data_runs(data, len(data) - 1) == [(0, 2 * block), (3 * block, 4 * block - 1)]


def test_copy_clones_where_the_filesystem_can(tmp_path, monkeypatch):
    src = sparse_file(tmp_path / "src.raw")
    dst = str(tmp_path / "dst.raw")

    def clone(src_fd, dst_fd):  # what FICLONE does: dst shares src's blocks
        with open(src, "rb") as handle:
            os.write(dst_fd, handle.read())
        return True

    monkeypatch.setattr(vm_backup, "_clone", clone)
    sha, method = vm_backup._copy(src, dst)
    assert method == "reflink clone" and sha == vm_backup._sha256(src)


def test_clone_is_refused_cleanly_where_unsupported(tmp_path):
    src = sparse_file(tmp_path / "src.raw")
    with open(src, "rb") as fin, open(tmp_path / "dst", "wb") as fout:
        assert vm_backup._clone(fin.fileno(), fout.fileno()) in (True, False)
    assert vm_backup._reflink_supported(str(tmp_path / "probe")) in (True, False)


def test_backups_written_before_the_one_pass_copy_still_verify_and_restore(tmp_path,
                                                                           fake_libvirt):
    """Manifest format 1 is unchanged: a plain sha256 of each backup file."""
    disk, dom, conn, made = _backup(tmp_path, fake_libvirt)
    manifest_path = os.path.join(made["path"], "manifest.json")
    with open(manifest_path) as handle:
        manifest = json.load(handle)
    assert manifest["format"] == 1
    manifest["disks"][0]["method"] = "cp --sparse=always --reflink=auto"  # the old writer's
    manifest["disks"][0]["sha256"] = subprocess.run(
        ["sha256sum", os.path.join(made["path"], "vda.qcow2")], capture_output=True,
        text=True, check=True).stdout.split()[0]
    with open(manifest_path, "w") as handle:
        json.dump(manifest, handle)
    assert vm_backup.verify(made["backup"])["verified"] is True
    result = vm_backup.restore("ctl01", made["backup"])
    assert vm_backup._sha256(disk) == manifest["disks"][0]["sha256"]
    assert result["disks"][0]["verified"] is True
