"""
qcow2 backups of libvirt domains, their verification and restore, and rebuilding a domain
from a new OS image with a cloud-init NoCloud seed. Runs on the hypervisor minion.

Configuration (``config.get``: minion config, grains or pillar; arguments win):

- ``leapfrog:libvirt:uri`` (else saltext-virt's ``virt:connection:uri``, else
  ``qemu:///system``): the libvirt connection.
- ``leapfrog:backups:dir``: where backups go. Each kind of backup has its own sub-folder
  (the DB backups ``<dir>/mysql``); VM backups are ``<dir>/vm/<domain>/<name>`` (``<name>``
  is ``<YYYYmmddTHHMMSSffffffZ>[-<tag>]``, the backup id ``<domain>/<name>``), each holding
  the disk copies, ``domain.xml`` and ``manifest.json`` (``"kind": "vm_backup"``). A
  backup is written under ``<name>.partial`` and renamed when complete, so a half-written
  backup is never listed or restored. ``list``/``prune``/``restore`` only see folders there
  with a manifest of this kind for that domain; ``prune`` never deletes anything else.
  Backups of the older layout (``<dir>/<domain>/<name>``, before the ``vm`` folder) are
  not read: move each ``<dir>/<domain>`` folder to ``<dir>/vm/<domain>`` to use them.
- Names (domains, tags, backup folders) are plain: letters, digits, ``.``, ``_``, ``-``,
  starting with a letter or digit (``\\A...\\Z``, no trailing newline); a backup id
  resolves only to a folder inside ``<dir>/vm`` (``..``, other absolute paths, symlinks out
  are refused). Numbers and choices are checked: an error names the argument, the value
  and the range.
- ``leapfrog:backups:keep`` (default 3, 1 to 1000): backups ``prune`` keeps per domain.
- ``leapfrog:backups:headroom`` (bytes, default 64 MiB): free space left over after a backup.
- ``leapfrog:vms:shutdown_timeout`` (seconds, default 120, 1 to 86400): graceful ACPI
  shutdown wait before the domain is destroyed.

Offline backups shut the domain down (ACPI power button, then destroy after the timeout),
copy each disk (a reflink clone where the filesystem supports it, else a sparse copy that
hashes the bytes it writes in the same pass) or, for a disk with a backing chain, flatten
it with ``qemu-img convert``; live backups use libvirt's push backup (``backup-begin``),
which is crash-consistent. The free space is checked before anything is stopped.

A restore keeps each disk it replaces (renamed aside) until the restored copy's sha256
equals the backup's and the domain is defined, and puts it back when anything fails. A
rebuild's seed carries the new minion's private key: the module accepts that key only
sealed to the hypervisor's own minion key, and ``detach_seed`` ejects and deletes the seed
once the new minion answers.
"""
import collections
import concurrent.futures
import ctypes
import datetime
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import xml.etree.ElementTree as ET

import leapfrog_cmd
import leapfrog_errors
import leapfrog_parse
import leapfrog_rebuild

try:
    import libvirt

    HAS_LIBVIRT = True
except ImportError:  # pragma: no cover - checked by __virtual__
    libvirt = None
    HAS_LIBVIRT = False

log = logging.getLogger(__name__)

__virtualname__ = "vm_backup"
__func_alias__ = {"list_": "list"}

MANIFEST = "manifest.json"
KIND = "vm_backup"  # a manifest's "kind": what prune and restore accept as a VM backup
VM_SUBDIR = "vm"  # <leapfrog:backups:dir>/vm/<domain>/<backup>: each kind in its own folder
NAME_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
TAG_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
MAX_SHUTDOWN_TIMEOUT = 86400
MAX_KEEP = 1000
DOMAIN_XML = "domain.xml"
FORMAT_VERSION = 1
METADATA_NS = "https://leapfrog.invalid/xmlns/vm/1"
DEFAULT_KEEP = 3
DEFAULT_HEADROOM = 64 * 1024 * 1024
DEFAULT_SHUTDOWN_TIMEOUT = 120
CHUNK = 4 * 1024 * 1024
SPARSE_BLOCK = 4096  # a block of zeros this size becomes a hole in a copy (as cp does)
IN_FLIGHT = 4  # chunks read but not yet hashed
WRITE_MAX = 256 * 1024  # larger writes fill the page cache several times slower (measured)
WRITEBACK_EVERY = 8 * 1024 * 1024  # start writing a copy to disk every this many bytes
FICLONE = 0x40049409  # linux/fs.h: _IOW(0x94, 9, int)
SYNC_FILE_RANGE_WRITE = 2
_ZEROS = bytes(CHUNK)
_ZERO_VIEW = memoryview(_ZEROS)
ACPI_REPEAT = 10  # seconds between power-button presses while waiting

ET.register_namespace("leapfrog", METADATA_NS)


class DomainNotFound(leapfrog_errors.LeapfrogError):
    """No domain of that name on this hypervisor."""


class DomainRunning(leapfrog_errors.LeapfrogError):
    """The domain runs and the operation needs it stopped."""


class NotEnoughSpace(leapfrog_errors.LeapfrogError):
    """The backup directory's filesystem cannot hold the backup."""


class BackupInvalid(leapfrog_errors.LeapfrogError):
    """A backup is missing, incomplete, corrupt or does not match its manifest.

    ``problems`` holds one readable line per problem.
    """

    def __init__(self, backup, problems):
        self.backup = backup
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"backup {backup} failed verification: {len(self.problems)} "
                         f"problem(s)\n{lines}")


def __virtual__():
    if not HAS_LIBVIRT:
        return False, "vm_backup: the libvirt Python bindings (libvirt-python) are not installed"
    if not shutil.which("qemu-img"):
        return False, "vm_backup: qemu-img is not installed (Debian package qemu-utils)"
    return __virtualname__


# -- configuration and arguments ----------------------------------------------------------
def _config(key, default=None):
    value = __salt__["config.get"](key, None)
    return default if value in (None, "") else value


def _uri(uri=None):
    return uri or _config("leapfrog:libvirt:uri") or _config("virt:connection:uri") \
        or "qemu:///system"


def _backup_dir(backup_dir=None):
    """The VM backups' own folder: ``<leapfrog:backups:dir>/vm``."""
    path = backup_dir or _config("leapfrog:backups:dir")
    if not path:
        raise leapfrog_errors.LeapfrogError(
            "no backup directory: set pillar leapfrog:backups:dir (or pass backup_dir=)")
    return os.path.join(os.path.abspath(path), VM_SUBDIR)


def _name(what, value):
    """``value`` if it is a plain name (a domain, a tag, a backup's folder), else an error."""
    if not isinstance(value, str) or not NAME_RE.match(value):
        raise leapfrog_errors.LeapfrogError(
            f"{what} must be 1 to 128 letters, digits, '.', '_' or '-', starting with a letter "
            f"or a digit, got {value!r}")
    return value


def _shutdown_timeout(timeout):
    """The ACPI shutdown wait: the argument, else pillar, checked (seconds)."""
    if timeout is None:
        timeout = _config("leapfrog:vms:shutdown_timeout", DEFAULT_SHUTDOWN_TIMEOUT)
    return leapfrog_parse.seconds(timeout, "timeout", minimum=1, maximum=MAX_SHUTDOWN_TIMEOUT)


def _headroom():
    return leapfrog_parse.number(_config("leapfrog:backups:headroom", DEFAULT_HEADROOM),
                                 "leapfrog:backups:headroom (bytes)", minimum=0,
                                 maximum=2 ** 50, integer=True)


def _cmd(argv, ok_codes=(0,), timeout=None):
    return leapfrog_cmd.run(__salt__["cmd.run_all"], argv, ok_codes=ok_codes, timeout=timeout)


class _Conn:
    """``with _Conn(uri) as conn``: a libvirt connection, closed after use."""

    def __init__(self, uri):
        self.uri = uri
        self.conn = None

    def __enter__(self):
        try:
            self.conn = libvirt.open(self.uri)
        except libvirt.libvirtError as exc:
            raise leapfrog_errors.LeapfrogError(f"cannot connect to libvirt at {self.uri}: {exc}")
        return self.conn

    def __exit__(self, *exc):
        try:
            self.conn.close()
        except libvirt.libvirtError:
            pass
        return False


def _lookup(conn, domain, missing_ok=False):
    try:
        return conn.lookupByName(domain)
    except libvirt.libvirtError:
        if missing_ok:
            return None
        raise DomainNotFound(f"domain {domain!r} is not defined on {conn.getURI()}")


# -- domain XML ---------------------------------------------------------------------------
def _disks(xml):
    """Split a domain's disks into those leapfrog copies and those it skips (with why)."""
    root = ET.fromstring(xml)
    disks, skipped = [], []
    for disk in root.findall("./devices/disk"):
        target = disk.find("target")
        dev = target.get("dev") if target is not None else "?"
        source = disk.find("source")
        path = source.get("file") if source is not None else None
        driver = disk.find("driver")
        fmt = driver.get("type", "raw") if driver is not None else "raw"
        if disk.get("device", "disk") != "disk":
            skipped.append({"target": dev, "path": path, "reason": disk.get("device")})
        elif disk.find("readonly") is not None:
            skipped.append({"target": dev, "path": path, "reason": "readonly"})
        elif disk.get("type", "file") != "file" or not path:
            skipped.append({"target": dev, "path": path,
                            "reason": f"disk type {disk.get('type')} is not a file"})
        else:
            disks.append({"target": dev, "source": path, "format": fmt})
    return disks, skipped


def _metadata(xml):
    """leapfrog's metadata of a domain: os release and image it was built from."""
    root = ET.fromstring(xml)
    node = root.find(f"./metadata/{{{METADATA_NS}}}vm")
    if node is None:
        return {}
    return {child.tag.split("}", 1)[1]: (child.text or None) for child in node}


def _set_metadata(root, **values):
    metadata = root.find("metadata")
    if metadata is None:
        metadata = ET.Element("metadata")
        root.insert(2, metadata)
    node = metadata.find(f"{{{METADATA_NS}}}vm")
    if node is not None:
        metadata.remove(node)
    node = ET.SubElement(metadata, f"{{{METADATA_NS}}}vm")
    for key, value in values.items():
        ET.SubElement(node, f"{{{METADATA_NS}}}{key}").text = value or ""


# -- files --------------------------------------------------------------------------------
class _Hasher:
    """sha256 computed on another thread, in order, of chunks in a few reused buffers: the
    caller reads (and writes) the next chunk while the last ones are hashed."""

    def __init__(self):
        self.digest = hashlib.sha256()
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)  # one: in order
        self.ring = collections.deque((bytearray(CHUNK), None) for _ in range(IN_FLIGHT))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.pool.shutdown(wait=True)
        return False

    def buffer(self):
        """A buffer of CHUNK bytes whose previous chunk is hashed."""
        buf, pending = self.ring.popleft()
        if pending is not None:
            pending.result()
        return buf

    def update(self, buf, length):
        """Hash ``buf[:length]`` (a buffer from ``buffer``); returns a view of it."""
        view = memoryview(buf)[:length]
        self.ring.append((buf, self.pool.submit(self.digest.update, view)))
        return view

    def zeros(self, count):
        """Hash ``count`` zeros (a hole)."""
        while count > 0:
            step = min(count, CHUNK)
            self.pool.submit(self.digest.update, _ZERO_VIEW[:step])
            count -= step

    def hexdigest(self):
        self.pool.shutdown(wait=True)
        for _, pending in self.ring:
            if pending is not None:
                pending.result()
        return self.digest.hexdigest()


def _sha256(path):
    with open(path, "rb", buffering=0) as handle, _Hasher() as hasher:
        while True:
            buf = hasher.buffer()
            got = handle.readinto(buf)
            if not got:
                return hasher.hexdigest()
            hasher.update(buf, got)


def _image_info(path, chain=False):
    argv = ["qemu-img", "info", "--output=json", "-U"]
    if chain:
        argv.append("--backing-chain")
    return json.loads(_cmd(argv + [path])["stdout"])


def _copy(src, dst):
    """Copy ``src`` to the new file ``dst``, flushed to disk; return (sha256, method).

    A reflink clone where the filesystem can (the source, whose blocks the clone shares, is
    then hashed: it may be in the page cache, the clone is not); otherwise one pass
    that reads each chunk once, hashes it on another thread and writes it, leaving holes
    for the source's holes and for blocks of zeros, and starts writing to disk as it goes
    (the final fsync only waits for the tail). The sha256 is of every byte of ``dst``,
    holes hashed as the zeros they read as, so it is the plain sha256 of the file.
    """
    mode = os.stat(src).st_mode & 0o777
    with open(src, "rb", buffering=0) as fin:
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        try:
            if _clone(fin.fileno(), fd):  # dst shares the quiescent source's blocks
                os.fsync(fd)
                return _sha256(src), "reflink clone"
            sha = _copy_hashed(fin.fileno(), fd, os.fstat(fin.fileno()).st_size, src)
            return sha, "sparse copy, sha256 in the same pass"
        finally:
            os.close(fd)


def _clone(src_fd, dst_fd):
    """A reflink clone of ``src_fd`` into ``dst_fd`` (FICLONE); False where unsupported."""
    try:
        fcntl.ioctl(dst_fd, FICLONE, src_fd)
        return True
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL,
                         errno.EPERM, errno.ENOSYS):
            return False
        raise


def _writeback():
    """sync_file_range(2) from libc (start writing a range to disk, do not wait), or None."""
    try:
        func = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):  # pragma: no cover - not glibc/linux
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    func.restype = ctypes.c_int
    return func


_SYNC_FILE_RANGE = _writeback()


def _extents(fd, size):
    """(start, end) of the data of a file, holes left out (the whole file where the
    filesystem cannot tell)."""
    offset = 0
    while offset < size:
        try:
            start = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # a hole up to the end
                return
            if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP):
                raise
            start, end = offset, size
        else:
            end = os.lseek(fd, start, os.SEEK_HOLE)
        if start >= size:
            return
        yield start, min(end, size)
        offset = end


def _data_runs(buf, length):
    """(start, end) of the runs of ``buf[:length]`` that are not whole blocks of zeros."""
    firsts = bytes(buf[0:length:SPARSE_BLOCK])  # a block of zeros starts with one: few do
    runs = []
    start = 0
    index = firsts.find(0)
    while index != -1:
        block = index * SPARSE_BLOCK
        end = min(block + SPARSE_BLOCK, length)
        if buf[block:end] == _ZEROS[:end - block]:
            if block > start:
                runs.append((start, block))
            start = end
        index = firsts.find(0, index + 1)
    if start < length:
        runs.append((start, length))
    return runs


def _pwrite_all(fd, view, offset):
    while view:
        done = os.pwrite(fd, view[:WRITE_MAX], offset)
        view, offset = view[done:], offset + done


def _copy_hashed(src_fd, dst_fd, size, name):
    """The one-pass sparse copy of ``_copy``; returns the sha256 of the bytes of the copy."""
    flushed = offset = 0
    with _Hasher() as hasher:
        for start, end in _extents(src_fd, size):
            hasher.zeros(start - offset)
            offset = start
            while offset < end:
                buf = hasher.buffer()
                length = min(CHUNK, end - offset)
                _pread_all(src_fd, memoryview(buf)[:length], offset, name, size)
                view = hasher.update(buf, length)
                for run_start, run_end in _data_runs(buf, length):
                    _pwrite_all(dst_fd, view[run_start:run_end], offset + run_start)
                offset += length
                if _SYNC_FILE_RANGE is not None and offset - flushed >= WRITEBACK_EVERY:
                    _SYNC_FILE_RANGE(dst_fd, flushed, offset - flushed, SYNC_FILE_RANGE_WRITE)
                    flushed = offset
        hasher.zeros(size - offset)
        os.ftruncate(dst_fd, size)
        os.fsync(dst_fd)  # while the last chunks are hashed
        sha = hasher.hexdigest()
    if os.fstat(src_fd).st_size != size:
        raise leapfrog_errors.LeapfrogError(f"{name} changed size while it was copied")
    return sha


def _pread_all(fd, view, offset, name, size):
    while view:
        got = os.preadv(fd, [view], offset)
        if not got:
            raise leapfrog_errors.LeapfrogError(
                f"{name} shrank while it was copied ({offset} of {size} bytes read)")
        view, offset = view[got:], offset + got


def _fsync(path):
    """Flush a file (or a directory's entries) to disk: a backup must survive a crash."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _open_if_exists(path):
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None


def _close_later(fds):
    fds = [fd for fd in fds if fd is not None]
    if fds:
        threading.Thread(target=lambda: [os.close(fd) for fd in fds], daemon=True,
                         name="vm_backup-release").start()


def _free_bytes(path):
    probe = path
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    st = os.statvfs(probe)
    return st.f_bavail * st.f_frsize


def _reflink_supported(directory):
    """Whether a reflink clone (FICLONE) works inside ``directory``."""
    os.makedirs(directory, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory, prefix=".reflink-") as tmp:
        src = os.path.join(tmp, "a")
        with open(src, "wb") as handle:
            handle.write(b"x")
        with open(src, "rb") as fin, open(os.path.join(tmp, "b"), "wb") as fout:
            return _clone(fin.fileno(), fout.fileno())


def _write_json(path, data):
    tmp = path + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _resolve(backup, backup_dir=None, domain=None):
    """A backup id (``<domain>/<name>``), ``latest`` (with domain) or the path of a backup
    folder -> its folder, which must be ``<vm backups>/<domain>/<name>`` itself: ``..``,
    another absolute path and symlinks (the domain's folder, the backup's) are refused."""
    if domain is not None:
        _name("domain", domain)
    if backup == "latest":
        if not domain:
            raise leapfrog_errors.LeapfrogError("backup='latest' needs the domain")
        found = list_(domain=domain, backup_dir=backup_dir)
        if not found:
            raise BackupInvalid(f"{domain}/latest", [f"no backup of {domain!r} exists"])
        return found[0]["path"]
    root = _backup_dir(backup_dir)
    real_root = os.path.realpath(root)
    refused = leapfrog_errors.LeapfrogError(
        f"backup {backup!r} is not a backup of this hypervisor: give an id <domain>/<name> "
        f"as vm_backup.list shows it (a folder inside {root}, not a link); nothing was changed")
    if not isinstance(backup, str):
        raise refused
    rel = backup
    if os.path.isabs(backup):
        rel = os.path.relpath(os.path.realpath(backup), real_root)
    parts = rel.split("/")
    if len(parts) != 2 or not all(NAME_RE.match(part) for part in parts):
        raise refused
    path = os.path.join(root, *parts)
    if os.path.realpath(path) != os.path.join(real_root, *parts):
        raise refused
    return path


def _backup_id(path):
    return "/".join(path.rstrip("/").split("/")[-2:])


def _load_manifest(path):
    try:
        with open(os.path.join(path, MANIFEST)) as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise BackupInvalid(_backup_id(path), [f"{path} has no {MANIFEST} (missing or incomplete)"])
    except ValueError as exc:
        raise BackupInvalid(_backup_id(path), [f"{MANIFEST} is not valid JSON: {exc}"])


# -- domain life cycle ----------------------------------------------------------------------
def _shutdown(dom, timeout):
    """ACPI power button, wait up to ``timeout`` s, then destroy. Returns how it stopped."""
    if not dom.isActive():
        return "already stopped"
    try:
        dom.shutdownFlags(libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN)
    except libvirt.libvirtError as exc:
        log.warning("vm_backup: ACPI shutdown of %s failed (%s); destroying it", dom.name(), exc)
    deadline = time.monotonic() + float(timeout)
    press = time.monotonic() + ACPI_REPEAT
    while time.monotonic() < deadline:
        if not dom.isActive():
            return "acpi shutdown"
        if time.monotonic() > press:  # a guest still booting may have missed the press
            press = time.monotonic() + ACPI_REPEAT
            try:
                dom.shutdownFlags(libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN)
            except libvirt.libvirtError:
                pass
        time.sleep(0.2)
    if dom.isActive():
        log.warning("vm_backup: %s ignored ACPI shutdown for %ss; destroying it",
                    dom.name(), timeout)
        dom.destroy()
    return "destroyed after timeout"


def _required_bytes(disks):
    """Upper bound of the space the copies take: the allocated bytes of every chain."""
    return sum(d["chain_actual_size"] for d in disks)


def _describe_disks(disks):
    for disk in disks:
        chain = _image_info(disk["source"], chain=True)
        disk["virtual_size"] = chain[0]["virtual-size"]
        disk["backing_chain"] = [
            {"filename": c["filename"], "format": c.get("format"),
             "actual_size": c.get("actual-size")}
            for c in chain
        ]
        disk["chain_actual_size"] = sum(c.get("actual-size") or 0 for c in chain)
    return disks


# -- public: read-only ----------------------------------------------------------------------
def info(domain, uri=None):
    """
    Describe a domain as leapfrog sees it: state, disks (copied / skipped), the OS release
    and image recorded in its leapfrog metadata.

    CLI Example:

    .. code-block:: bash

        salt kvm01 vm_backup.info ctl01
    """
    _name("domain", domain)
    with _Conn(_uri(uri)) as conn:
        dom = _lookup(conn, domain)
        xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
        disks, skipped = _disks(xml)
        meta = _metadata(xml)
        return {
            "domain": domain,
            "uuid": dom.UUIDString(),
            "active": bool(dom.isActive()),
            "disks": disks,
            "skipped": skipped,
            "os_release": meta.get("os"),
            "image": meta.get("image"),
            "throwaway": meta.get("throwaway"),
        }


def manifest(backup, backup_dir=None, domain=None):
    """
    Return the manifest of a backup (id ``<domain>/<name>``, ``latest`` with ``domain``, or
    a path), without verifying it.

    CLI Example:

    .. code-block:: bash

        salt kvm01 vm_backup.manifest latest domain=ctl01
    """
    return _load_manifest(_resolve(backup, backup_dir, domain))


def start(domain, uri=None):
    """
    Start a defined domain (no-op when it runs). Returns whether it was started.

    CLI Example:

    .. code-block:: bash

        salt kvm01 vm_backup.start ctl01
    """
    _name("domain", domain)
    with _Conn(_uri(uri)) as conn:
        dom = _lookup(conn, domain)
        if dom.isActive():
            return {"domain": domain, "started": False}
        dom.create()
        return {"domain": domain, "started": True}


def stop(domain, timeout=None, uri=None):
    """
    Stop a domain: ACPI shutdown, destroyed after ``timeout`` s (pillar
    ``leapfrog:vms:shutdown_timeout``, default 120; a number from 1 to 86400). Returns how
    it stopped.

    CLI Example:

    .. code-block:: bash

        salt kvm01 vm_backup.stop ctl01 timeout=60
    """
    _name("domain", domain)
    timeout = _shutdown_timeout(timeout)
    with _Conn(_uri(uri)) as conn:
        return {"domain": domain, "stopped": _shutdown(_lookup(conn, domain), timeout)}


def _is_own(manifest, domain):
    """Whether a manifest is a VM backup's (this module's kind) of ``domain``. Manifests
    written before ``kind`` existed count when they carry the domain XML."""
    return (isinstance(manifest, dict) and manifest.get("domain") == domain
            and isinstance(manifest.get("disks"), list)
            and (manifest.get("kind") == KIND
                 or ("kind" not in manifest and "domain_xml" in manifest)))


def _scan(domain=None, backup_dir=None):
    """(backups, others): the complete VM backups (newest first) and the paths of the
    folders beside them that are not (never touched)."""
    root = _backup_dir(backup_dir)
    out, others = [], []
    if not os.path.isdir(root):
        return out, others
    domains = [_name("domain", domain)] if domain else sorted(os.listdir(root))
    for name in domains:
        folder = os.path.join(root, name)
        if not NAME_RE.match(name) or os.path.islink(folder) or not os.path.isdir(folder):
            others.append(folder)
            continue
        for entry in sorted(os.listdir(folder)):
            path = os.path.join(folder, entry)
            if entry.endswith(".partial"):
                continue
            try:
                manifest = None
                if NAME_RE.match(entry) and not os.path.islink(path) and os.path.isdir(path):
                    manifest = _load_manifest(path)
            except BackupInvalid:
                manifest = None
            if not _is_own(manifest, name):
                others.append(path)
                continue
            out.append({
                "id": f"{name}/{entry}",
                "path": path,
                "domain": manifest.get("domain"),
                "created": manifest.get("created"),
                "mode": manifest.get("mode"),
                "tag": manifest.get("tag"),
                "os_release": manifest.get("os_release"),
                "bytes": sum(d.get("actual_size") or 0 for d in manifest["disks"]),
            })
    out.sort(key=lambda b: (b["created"] or "", b["id"]), reverse=True)
    return out, others


def list_(domain=None, backup_dir=None):
    """
    List complete VM backups (folders ``<leapfrog:backups:dir>/vm/<domain>/<name>`` with a
    manifest of this module's kind), newest first, optionally of one domain. Anything else
    there is not listed.

    CLI Example:

    .. code-block:: bash

        salt kvm01 vm_backup.list
        salt kvm01 vm_backup.list domain=ctl01
    """
    return _scan(domain, backup_dir)[0]


def verify(backup, backup_dir=None, domain=None):
    """
    Verify a backup: every disk passes ``qemu-img check`` and its sha256 matches the
    manifest, and the domain XML is present. Raises ``BackupInvalid`` listing every problem;
    returns the manifest's summary when the backup is sound.

    CLI Example:

    .. code-block:: bash

        salt kvm01 vm_backup.verify ctl01/20260101T120000Z
        salt kvm01 vm_backup.verify latest domain=ctl01
    """
    path = _resolve(backup, backup_dir, domain)
    manifest, checked = _verify_path(path)
    return {
        "backup": _backup_id(path),
        "path": path,
        "domain": manifest.get("domain"),
        "created": manifest.get("created"),
        "os_release": manifest.get("os_release"),
        "verified": True,
        "disks": checked,
    }


def _verify_path(path, shas=None):
    """Check a backup folder; ``shas`` may hold sha256s already computed (target -> hex)."""
    ident = _backup_id(path)
    manifest = _load_manifest(path)
    problems = []
    folder = os.path.basename(os.path.dirname(path))
    if not _is_own(manifest, folder):
        problems.append(f"{MANIFEST} is not a VM backup's of domain {folder!r} (kind "
                        f"{manifest.get('kind')!r}, domain {manifest.get('domain')!r})")
    if not manifest.get("disks"):
        problems.append("manifest lists no disk")
    if not os.path.isfile(os.path.join(path, DOMAIN_XML)):
        problems.append(f"{DOMAIN_XML} is missing")
    checked = []
    for disk in manifest.get("disks", []):
        if not NAME_RE.match(str(disk.get("file"))):
            problems.append(f"{disk.get('target')}: file {disk.get('file')!r} is not a file "
                            "name inside the backup")
            continue
        file = os.path.join(path, disk["file"])
        if os.path.islink(file) or not os.path.isfile(file):
            problems.append(f"{disk['target']}: {disk['file']} is missing")
            continue
        fmt = disk.get("backup_format", "qcow2")
        result = {"retcode": 0}
        if fmt == "qcow2":  # raw images have nothing qemu-img can check
            result = _cmd(["qemu-img", "check", "--output=json", "-f", fmt, file],
                          ok_codes=(0, 1, 2, 3))
        if result["retcode"] in (1, 2):
            detail = leapfrog_cmd.tail(result.get("stderr") or result.get("stdout"), 3)
            problems.append(f"{disk['target']}: qemu-img check found "
                            f"{'corruption' if result['retcode'] == 2 else 'an error'}: {detail}")
        sha = (shas or {}).get(disk["target"]) or _sha256(file)
        if sha != disk.get("sha256"):
            problems.append(f"{disk['target']}: sha256 {sha} differs from the manifest's "
                            f"{disk.get('sha256')}")
        checked.append({"target": disk["target"], "sha256": sha})
    if problems:
        raise BackupInvalid(ident, problems)
    return manifest, checked


# -- public: backup ---------------------------------------------------------------------------
def backup(domain, mode="offline", tag=None, restart=True, timeout=None, os_release=None,
           uri=None, backup_dir=None):
    """
    Back up every disk of ``domain`` plus its XML into the backup directory, with a JSON
    manifest (disks, virtual/actual sizes, backing chain, sha256, domain XML, OS release).

    mode
        ``offline`` (default): graceful ACPI shutdown (``timeout`` s, pillar
        ``leapfrog:vms:shutdown_timeout``), then destroy; copy; start the domain again if it
        was running and ``restart`` is true (pass ``restart=False`` when the domain must stay
        down, e.g. before a rebuild). ``live``: libvirt push backup of the running domain
        (crash-consistent); a stopped domain is copied as in offline mode.
    tag
        Free text kept in the manifest and the folder name (e.g. an upgrade run id).
    os_release
        The OS release the guest runs (default: the domain's leapfrog metadata).

    The free space is checked before the domain is stopped; a failure leaves no backup.

    CLI Example:

    .. code-block:: bash

        salt kvm01 vm_backup.backup ctl01
        salt kvm01 vm_backup.backup ctl01 mode=live tag=run42
    """
    _name("domain", domain)
    mode = leapfrog_parse.choice(mode, "mode", ("offline", "live"))
    if tag is not None and not (isinstance(tag, str) and TAG_RE.match(tag)):
        raise leapfrog_errors.LeapfrogError(
            f"tag must be letters, digits, '.', '_' or '-' (at most 64), got {tag!r}")
    restart = leapfrog_parse.boolean(restart, "restart")
    root = _backup_dir(backup_dir)
    timeout = _shutdown_timeout(timeout)
    headroom = _headroom()
    started = time.monotonic()
    with _Conn(_uri(uri)) as conn:
        dom = _lookup(conn, domain)
        xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
        disks, skipped = _disks(xml)
        if not disks:
            raise leapfrog_errors.LeapfrogError(f"domain {domain!r} has no file disk to back up")
        phases = {}
        mark = time.monotonic()
        _describe_disks(disks)
        phases["describe"] = round(time.monotonic() - mark, 3)
        need = _required_bytes(disks) + headroom
        free = _free_bytes(root)
        if free < need:
            raise NotEnoughSpace(
                f"not enough space for a backup of {domain!r} in {root}: {free} bytes free, "
                f"{need} needed (disks' allocated bytes + {headroom} headroom); "
                "nothing was stopped")
        now = datetime.datetime.now(datetime.timezone.utc)
        name = now.strftime("%Y%m%dT%H%M%S%fZ") + (f"-{tag}" if tag else "")
        final = os.path.join(root, domain, name)
        partial = final + ".partial"
        os.makedirs(partial, mode=0o700)
        was_running = bool(dom.isActive())
        live = mode == "live" and was_running
        stopped = None
        try:
            if was_running and not live:
                stopped = _shutdown(dom, timeout)
            copy_started = time.monotonic()
            phases["stop"] = round(copy_started - mark, 3)
            if live:
                _live_copy(dom, disks, skipped, partial)
            else:
                for disk in disks:
                    if len(disk["backing_chain"]) > 1 or disk["format"] == "qcow2":
                        disk["backup_format"] = "qcow2"
                    else:
                        disk["backup_format"] = disk["format"]
                    disk["file"] = f"{disk['target']}.{disk['backup_format']}"
                    dst = os.path.join(partial, disk["file"])
                    if len(disk["backing_chain"]) > 1:
                        disk["method"] = "qemu-img convert (backing chain flattened)"
                        _cmd(["qemu-img", "convert", "-f", disk["format"], "-O", "qcow2",
                              disk["source"], dst])
                    else:  # the source is quiescent: copied, hashed and flushed in one pass
                        disk["sha256"], disk["method"] = _copy(disk["source"], dst)
            for disk in disks:
                if not disk.get("sha256"):
                    _fsync(os.path.join(partial, disk["file"]))
            copy_seconds = time.monotonic() - copy_started
            phases["copy+hash+fsync"] = round(time.monotonic() - mark, 3)
            for disk in disks:
                file = os.path.join(partial, disk["file"])
                disk["actual_size"] = os.stat(file).st_blocks * 512  # qemu-img's actual-size
                if not disk.get("sha256"):
                    disk["sha256"] = _sha256(file)
                disk.pop("chain_actual_size", None)
            with open(os.path.join(partial, DOMAIN_XML), "w") as handle:
                handle.write(xml)
            manifest = {
                "format": FORMAT_VERSION,
                "kind": KIND,
                "domain": domain,
                "uuid": dom.UUIDString(),
                "created": now.isoformat(),
                "mode": "live" if live else "offline",
                "tag": tag,
                "was_running": was_running,
                "stopped": stopped,
                "os_release": os_release or _metadata(xml).get("os"),
                "image": _metadata(xml).get("image"),
                "reflink": False if live else (
                    any(d.get("method") == "reflink clone" for d in disks)
                    or _reflink_supported(partial)),
                "disks": disks,
                "skipped": skipped,
                "domain_xml": xml,
                "copy_seconds": round(copy_seconds, 3),
            }
            _write_json(os.path.join(partial, MANIFEST), manifest)
            _fsync(partial)
            os.rename(partial, final)
            _fsync(os.path.dirname(final))
            phases["manifest"] = round(time.monotonic() - mark, 3)
        except Exception:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        finally:
            if was_running and not live and restart and not dom.isActive():
                dom.create()
    total = sum(d["virtual_size"] for d in disks)
    return {
        "backup": f"{domain}/{name}",
        "path": final,
        "mode": manifest["mode"],
        "stopped": stopped,
        "restarted": bool(was_running and not live and restart),
        "disks": [{k: d.get(k) for k in ("target", "source", "file", "virtual_size",
                                         "actual_size", "sha256", "method")} for d in disks],
        "skipped": skipped,
        "os_release": manifest["os_release"],
        "seconds": round(time.monotonic() - started, 3),
        "phases": phases,
        "virtual_bytes": total,
    }


def _live_copy(dom, disks, skipped, partial):
    """libvirt push backup of every copied disk into ``partial``; waits for the job."""
    root = ET.Element("domainbackup")
    xdisks = ET.SubElement(root, "disks")
    for disk in disks:
        disk["file"] = f"{disk['target']}.qcow2"
        disk["backup_format"] = "qcow2"
        disk["method"] = "libvirt push backup (backup-begin)"
        node = ET.SubElement(xdisks, "disk", name=disk["target"], backup="yes", type="file")
        ET.SubElement(node, "driver", type="qcow2")
        ET.SubElement(node, "target", file=os.path.join(partial, disk["file"]))
    for skip in skipped:
        ET.SubElement(xdisks, "disk", name=skip["target"], backup="no")
    try:
        dom.backupBegin(ET.tostring(root, encoding="unicode"), None, 0)
    except libvirt.libvirtError as exc:
        raise leapfrog_errors.LeapfrogError(f"live backup of {dom.name()} did not start: {exc}")
    while True:
        job = dom.jobInfo()
        if job[0] == libvirt.VIR_DOMAIN_JOB_NONE:
            break
        time.sleep(0.1)
    stats = dom.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
    if stats.get("type") != libvirt.VIR_DOMAIN_JOB_COMPLETED:
        raise leapfrog_errors.LeapfrogError(
            f"live backup of {dom.name()} failed: {stats.get('errmsg') or stats}")


# -- public: restore ---------------------------------------------------------------------------
def restore(domain, backup, stop=False, start=False, timeout=None, keep_old=False, uri=None,
            backup_dir=None):
    """
    Put a backup back: its disks at their original paths and its domain XML, then start the
    domain if ``start``. Refuses a running domain unless ``stop=True`` (graceful shutdown,
    then destroy after ``timeout`` s), a backup that fails ``verify``, and a folder without
    room for the copies (the error says how much is needed and what to do) -- all before
    anything is stopped or changed.

    The disks are first copied beside their targets in one pass that hashes the bytes it
    reads from the backup and writes to the copy, and the backup is verified with those
    sha256s; only then is the domain stopped. Each old disk file is renamed aside
    (``<disk>.leapfrog-old-<time>``) and the copy renamed into place; the file at the disk's
    path must then be that copy (same inode and size), whose sha256, of the bytes written
    to it, equals the backup's (no second read: the downtime stays short). Then the domain XML is
    defined (a domain of the same name with another UUID, e.g. a rebuilt VM, is undefined;
    its disks stay in place) and started. Only after all that are the old disk files
    removed (kept, and listed under ``kept_old``, with ``keep_old=True``). When any of it
    fails, the old disks are renamed back, the old domain definition is defined again and
    started again if it was running: the error says what failed and that nothing changed.

    CLI Example:

    .. code-block:: bash

        salt kvm01 vm_backup.restore ctl01 ctl01/20260101T120000Z start=True
        salt kvm01 vm_backup.restore ctl01 latest stop=True start=True keep_old=True
    """
    started = time.monotonic()
    _name("domain", domain)
    stop, start = leapfrog_parse.boolean(stop, "stop"), leapfrog_parse.boolean(start, "start")
    keep_old = leapfrog_parse.boolean(keep_old, "keep_old")
    timeout = _shutdown_timeout(timeout)
    path = _resolve(backup, backup_dir, domain)
    ident = _backup_id(path)
    manifest = _load_manifest(path)
    if manifest.get("domain") != domain:
        raise leapfrog_errors.LeapfrogError(
            f"backup {ident} is of domain {manifest.get('domain')!r}, not {domain!r}")
    headroom = _headroom()
    with _Conn(_uri(uri)) as conn:
        dom = _lookup(conn, domain, missing_ok=True)
        running = dom is not None and dom.isActive()
        if running and not stop:
            raise DomainRunning(
                f"domain {domain!r} is running: refusing to restore over it; stop it "
                "first or pass stop=True")
        disks = [d for d in manifest.get("disks", [])
                 if os.path.isfile(os.path.join(path, d.get("file", "")))]
        _check_restore_room(path, ident, disks, headroom)
        tmps = {}
        phases = {}
        mark = time.monotonic()
        try:
            # copy beside the targets; the one pass hashes the bytes read from the backup,
            # which are the bytes written to the copy: verify checks them with the rest
            shas = {}
            for disk in disks:
                tmp = f"{disk['source']}.leapfrog-restore"
                if os.path.exists(tmp):
                    os.unlink(tmp)
                tmps[disk["target"]] = tmp
                shas[disk["target"]], _ = _copy(os.path.join(path, disk["file"]), tmp)
            phases["copy+hash+fsync"] = round(time.monotonic() - mark, 3)
            _verify_path(path, shas)
            phases["verify"] = round(time.monotonic() - mark, 3)
            old_xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE) if dom is not None else None
            stopped = _shutdown(dom, timeout) if running else None
            phases["stop"] = round(time.monotonic() - mark, 3)
            swap = _Swap(conn, domain, old_xml, running)
            try:
                replaced = swap.run(path, disks, tmps, shas, start, phases, mark)
            except Exception as exc:  # pylint: disable=broad-except
                raise leapfrog_errors.LeapfrogError(
                    f"restore of {domain!r} from {ident} failed ({exc}); {swap.undo()}"
                ) from None
        finally:
            for tmp in tmps.values():
                if os.path.exists(tmp):
                    os.unlink(tmp)
        kept_old = swap.finish(keep_old)
        return {
            "domain": domain,
            "backup": ident,
            "os_release": manifest.get("os_release"),
            "stopped": stopped,
            "disks": [{"target": d["target"], "path": d["source"], "sha256": d["sha256"],
                       "verified": True} for d in disks],
            "replaced": replaced,
            "kept_old": kept_old,
            "started": bool(start),
            "seconds": round(time.monotonic() - started, 3),
            "phases": phases,
        }


def _check_restore_room(path, ident, disks, headroom):
    """Refuse (before anything changes) when a disk's folder cannot hold its copy."""
    need = {}
    for disk in disks:
        folder = os.path.dirname(disk["source"])
        os.makedirs(folder, exist_ok=True)
        need[folder] = need.get(folder, 0) + os.path.getsize(os.path.join(path, disk["file"]))
    for folder, size in need.items():
        free = _free_bytes(folder)
        if free < size + headroom:
            raise NotEnoughSpace(
                f"not enough space in {folder} to restore {ident}: {free} bytes free, "
                f"{size + headroom} needed ({size} for the copy of the backup's disks, which "
                f"stand beside the old ones until verified, + {headroom} headroom); free "
                f"{size + headroom - free} bytes there (or lower leapfrog:backups:headroom) "
                "and run the restore again; nothing was changed")


class _Swap:
    """The part of a restore that changes things, and its undo: old disks renamed aside,
    verified copies renamed into place, the backup's domain defined and started."""

    def __init__(self, conn, domain, old_xml, was_running):
        self.conn, self.domain = conn, domain
        self.old_xml, self.was_running = old_xml, was_running
        self.aside = {}  # disk path -> where the old file waits
        self.placed = []  # disk paths holding a restored copy

    def run(self, path, disks, tmps, shas, start, phases, mark):
        """``shas``: the sha256 of each copy's bytes, hashed as they were written."""
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        for disk in disks:
            source, tmp = disk["source"], tmps.pop(disk["target"])
            copy = os.stat(tmp)
            if os.path.lexists(source):
                self.aside[source] = f"{source}.leapfrog-old-{stamp}"
                os.rename(source, self.aside[source])
            os.rename(tmp, source)
            self.placed.append(source)
            _fsync(os.path.dirname(source))
            # the file now at the disk's path is that copy, whose sha256 is the backup's
            now = os.stat(source)
            if (now.st_dev, now.st_ino, now.st_size) != (copy.st_dev, copy.st_ino,
                                                         copy.st_size) \
                    or shas[disk["target"]] != disk["sha256"]:
                raise leapfrog_errors.LeapfrogError(
                    f"{source} is not the verified copy of the backup's {disk['file']} "
                    f"(sha256 {shas[disk['target']]}, the backup's {disk['sha256']})")
        phases["replace"] = round(time.monotonic() - mark, 3)
        replaced = None
        old = _lookup(self.conn, self.domain, missing_ok=True)
        with open(os.path.join(path, DOMAIN_XML)) as handle:
            xml = handle.read()
        if old is not None and old.UUIDString() != ET.fromstring(xml).findtext("uuid"):
            replaced = {"uuid": old.UUIDString(),
                        "disks": [d["source"] for d in _disks(self.old_xml)[0]]}
            old.undefine()
        try:
            dom = self.conn.defineXML(xml)
        except libvirt.libvirtError as exc:
            raise leapfrog_errors.LeapfrogError(f"libvirt refused the backup's domain XML: "
                                                f"{exc}") from None
        if start:
            dom.create()
        phases["define"] = round(time.monotonic() - mark, 3)
        return replaced

    def undo(self):
        """Put the old disks and domain back; says what it did (or could not do)."""
        try:
            for source in self.placed:
                os.unlink(source)
            for source, aside in self.aside.items():
                os.rename(aside, source)
                _fsync(os.path.dirname(source))
            current = _lookup(self.conn, self.domain, missing_ok=True)
            if current is not None and current.isActive():
                current.destroy()
            if self.old_xml is None:
                if current is not None:
                    current.undefine()
                return "the old disks were put back and nothing was changed"
            old_uuid = ET.fromstring(self.old_xml).findtext("uuid")
            if current is not None and current.UUIDString() != old_uuid:
                current.undefine()
            dom = self.conn.defineXML(self.old_xml)
            if self.was_running:
                dom.create()
                return "the old disks were put back and the domain started again as it was"
            return "the old disks were put back and nothing was changed"
        except Exception as exc:  # pylint: disable=broad-except
            waiting = ", ".join(f"{a} (for {s})" for s, a in self.aside.items()) or "none"
            return (f"putting the old state back failed too ({exc}): the old disk files are "
                    f"at {waiting}; rename them back by hand")

    def finish(self, keep_old):
        """The restore is verified and defined: the old disk files go (or stay)."""
        if keep_old:
            return sorted(self.aside.values())
        # their blocks are freed when the last descriptor closes (about 0.1 s per 500 MiB on
        # ext4 with discard): on another thread, off the downtime
        fds = [_open_if_exists(aside) for aside in self.aside.values()]
        for aside in self.aside.values():
            os.unlink(aside)
        _close_later(fds)
        return []


def prune(keep=None, domain=None, backup_dir=None):
    """
    Delete all but the newest ``keep`` VM backups of each domain (default: pillar
    ``leapfrog:backups:keep``, else 3; a whole number from 1 to 1000). Only folders
    ``<leapfrog:backups:dir>/vm/<domain>/<name>`` holding a manifest of this module's kind
    for that domain are counted or deleted; any other folder (DB backups under
    ``<dir>/mysql``, a folder that is not a backup, a link) is never deleted and is listed
    under ``left``. Returns what was removed, kept and left.

    CLI Example:

    .. code-block:: bash

        salt kvm01 vm_backup.prune keep=2
        salt kvm01 vm_backup.prune keep=1 domain=ctl01
    """
    keep = leapfrog_parse.number(
        keep if keep is not None else _config("leapfrog:backups:keep", DEFAULT_KEEP), "keep",
        minimum=1, maximum=MAX_KEEP, integer=True)
    removed, kept = [], []
    found, others = _scan(domain, backup_dir)
    by_domain = {}
    for item in found:
        by_domain.setdefault(item["domain"], []).append(item)
    for items in by_domain.values():
        for index, item in enumerate(items):
            if index < keep:
                kept.append(item["id"])
                continue
            # checked again just before: still this module's backup, not a link
            path = _resolve(item["id"], backup_dir)
            if not _is_own(_load_manifest(path), item["domain"]):
                others.append(path)
                continue
            shutil.rmtree(path)
            removed.append(item["id"])
    return {"removed": removed, "kept": kept, "left": others}


# -- public: rebuild on a new OS --------------------------------------------------------------
def _unseal_pem(minion_pem):
    """The clear private key of a value sealed to this minion's key (``leapfrog_rebuild.seal``
    with the hypervisor minion's ``minion.pub``); a key in clear is refused: it would sit in
    salt-call's argv, the job cache and the events."""
    if isinstance(minion_pem, str) and "PRIVATE KEY" in minion_pem:
        raise leapfrog_errors.LeapfrogError(
            "minion_pem is a private key in clear: refused (it would land in the command "
            "line, the job cache and the event bus); pass it sealed to this hypervisor's "
            "minion key with leapfrog_rebuild.seal (leapfrog.rebuild_node does)")
    if not leapfrog_rebuild.is_sealed(minion_pem):
        raise leapfrog_errors.LeapfrogError(
            "minion_pem must be a private key sealed to this hypervisor's minion key "
            f"(leapfrog_rebuild.seal), got {type(minion_pem).__name__}")
    pem = leapfrog_rebuild.unseal(minion_pem, os.path.join(__opts__["pki_dir"], "minion.pem"))
    if "PRIVATE KEY" not in pem:
        raise leapfrog_errors.LeapfrogError("the sealed minion_pem is not a PEM private key")
    return pem


def seed(path, minion_id, master, minion_pub, minion_pem, hostname=None, instance_id=None,
         grains=None):
    """
    Write a cloud-init NoCloud seed ISO (volume label ``cidata``) at ``path`` (mode 0600):
    ``user-data`` configures the salt minion (id, master, the given key pair, optional
    grains) and ``meta-data`` names the instance. ``minion_pem`` is accepted only sealed to
    this hypervisor's minion key (``leapfrog_rebuild.seal``, as ``leapfrog.rebuild_node``
    sends it); a private key in clear is refused. The clear key exists only in the ISO; it
    is never returned or logged. ``vm_backup.detach_seed`` removes the ISO once the VM's
    minion is in.

    CLI Example:

    .. code-block:: bash

        salt kvm01 vm_backup.seed /var/lib/libvirt/images/ctl01-seed.iso ctl01 10.0.0.5 \\
            minion_pub="$(cat ctl01.pub)" minion_pem="$(cat ctl01.pem.sealed.json)"
    """
    return _seed(path, minion_id, master, minion_pub, _unseal_pem(minion_pem),
                 hostname=hostname, instance_id=instance_id, grains=grains)


def _seed(path, minion_id, master, minion_pub, minion_pem, hostname=None, instance_id=None,
          grains=None):
    """``seed`` with the private key in clear (only ever from ``_unseal_pem``)."""
    import yaml

    _name("minion_id", minion_id)
    for name, value in (("master", master), ("minion_pub", minion_pub)):
        if not value or not isinstance(value, str):
            raise leapfrog_errors.LeapfrogError(f"seed needs {name}")
    if "PUBLIC KEY" not in minion_pub:
        raise leapfrog_errors.LeapfrogError("minion_pub is not a PEM public key")
    hostname = hostname or minion_id
    instance_id = instance_id or f"{minion_id}-{int(time.time())}"
    conf = {"id": minion_id, "master": master}
    salt_minion = {"conf": conf, "public_key": minion_pub, "private_key": minion_pem}
    if grains:
        salt_minion["grains"] = dict(grains)
    user_data = "#cloud-config\n" + yaml.safe_dump(
        {"hostname": hostname, "fqdn": hostname, "salt_minion": salt_minion},
        default_flow_style=False, sort_keys=True)
    meta_data = yaml.safe_dump({"instance-id": instance_id, "local-hostname": hostname},
                               default_flow_style=False, sort_keys=True)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".seed-", suffix=".iso")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            _write_iso(handle, {"user-data": user_data.encode(), "meta-data": meta_data.encode()})
        os.replace(tmp, path)
    except Exception:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return {"path": path, "minion_id": minion_id, "master": master, "hostname": hostname,
            "instance_id": instance_id, "sha256": _sha256(path)}


def _write_iso(handle, files):
    """An ISO 9660 image (Joliet + Rock Ridge names) labelled cidata, with ``files``."""
    import io

    import pycdlib

    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident="cidata")
    for name, data in files.items():
        short = name.replace("-", "").upper()[:8]
        iso.add_fp(io.BytesIO(data), len(data), f"/{short}.;1", rr_name=name,
                   joliet_path=f"/{name}")
    iso.write_fp(handle)
    iso.close()


def _new_disk_path(images_dir, domain, image, old_source):
    """``<domain>-<image name>.qcow2``, or ``...-2.qcow2`` (``-3``, ...) when the domain
    boots that one already (a second rebuild on the same OS, e.g. the next hop): the disk
    in use is never overwritten, and a restore of it finds it unchanged."""
    stem = os.path.splitext(os.path.basename(image))[0]
    in_use = os.path.abspath(old_source) if old_source else None
    path, generation = os.path.join(images_dir, f"{domain}-{stem}.qcow2"), 1
    while path == in_use:
        generation += 1
        path = os.path.join(images_dir, f"{domain}-{stem}-{generation}.qcow2")
    return path


def rebuild(node, image, minion_pub=None, minion_pem=None, master=None, seed_iso=None,
            domain=None, template=None, method="overlay", images_dir=None, os_release=None,
            grains=None, stop=False, start=True, backup=None, uri=None, backup_dir=None):
    """
    Replace the domain of ``node`` by a new one booting the OS image ``image`` (a qcow2
    base): a new disk (``method=overlay``: a qcow2 overlay on the image; ``copy``: a full
    copy) named ``<domain>-<image name>.qcow2`` beside the old disk (which is kept; when
    the domain boots that very file, ``<domain>-<image name>-2.qcow2``), and a
    NoCloud seed (``seed_iso``, or one built by ``seed`` from ``minion_pub``/``minion_pem``/
    ``master``; ``minion_pem`` only sealed to this hypervisor's minion key, never in clear)
    attached as a CD-ROM; ``vm_backup.detach_seed`` ejects and removes it once the new
    minion answers (``leapfrog.rebuild_node`` does). The domain's other settings come from
    ``template`` (domain XML or a path to one) or from the existing domain. The old domain
    is undefined, never its disks; a running one is refused unless ``stop=True``: back it
    up first. The new domain carries leapfrog metadata (image, OS release) that ``info``
    reports. With ``backup`` (an id, ``latest`` or the path of a folder inside the VM
    backup dir), that backup must be of this domain and pass ``verify`` before anything is
    replaced. ``method``, ``stop`` and ``start`` are checked like every argument.

    CLI Example:

    .. code-block:: bash

        salt kvm01 vm_backup.rebuild ctl01 /var/lib/libvirt/images/trixie.qcow2 \\
            master=10.0.0.5 os_release=trixie minion_pub=... minion_pem='{sealed: ...}'
    """
    return _rebuild(node, image, minion_pub=minion_pub, minion_pem=minion_pem, master=master,
                    seed_iso=seed_iso, domain=domain, template=template, method=method,
                    images_dir=images_dir, os_release=os_release, grains=grains, stop=stop,
                    start=start, backup=backup, uri=uri, backup_dir=backup_dir)


def _rebuild(node, image, minion_pub=None, minion_pem=None, master=None, seed_iso=None,
             domain=None, template=None, method="overlay", images_dir=None, os_release=None,
             grains=None, stop=False, start=True, backup=None, uri=None, backup_dir=None,
             marks=None):
    """``rebuild``; ``marks`` are more leapfrog metadata for the new domain."""
    _name("node", node)
    domain = _name("domain", domain or node)
    method = leapfrog_parse.choice(method, "method", ("overlay", "copy"))
    stop, start = leapfrog_parse.boolean(stop, "stop"), leapfrog_parse.boolean(start, "start")
    if minion_pem is not None:  # sealed to this minion's key by leapfrog.rebuild_node
        minion_pem = _unseal_pem(minion_pem)
    if not isinstance(image, str) or not image:
        raise leapfrog_errors.LeapfrogError(f"image must be the path of a qcow2, got {image!r}")
    image = os.path.abspath(image)
    if not os.path.isfile(image):
        raise leapfrog_errors.LeapfrogError(f"image {image} does not exist")
    if backup is not None:
        checked = verify(backup, backup_dir=backup_dir, domain=domain)
        if checked["domain"] != domain:
            raise leapfrog_errors.LeapfrogError(
                f"backup {checked['backup']} is of domain {checked['domain']!r}, not {domain!r}")
    with _Conn(_uri(uri)) as conn:
        old = _lookup(conn, domain, missing_ok=True)
        if template:
            if not template.lstrip().startswith("<"):
                with open(template) as handle:
                    template = handle.read()
            xml = template
        elif old is not None:
            xml = old.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
        else:
            raise DomainNotFound(f"domain {domain!r} is not defined and no template was given")
        if old is not None and old.isActive() and not stop:
            raise DomainRunning(f"domain {domain!r} is running: back it up and stop it first, "
                                "or pass stop=True")
        root = ET.fromstring(xml)
        disk_nodes = [d for d in root.findall("./devices/disk")
                      if d.get("device", "disk") == "disk"]
        if not disk_nodes:
            raise leapfrog_errors.LeapfrogError(f"the template of {domain!r} has no disk")
        first = disk_nodes[0]
        old_source = first.find("source").get("file") if first.find("source") is not None else None
        images_dir = images_dir or (os.path.dirname(old_source) if old_source else None)
        if not images_dir:
            raise leapfrog_errors.LeapfrogError("pass images_dir: the template's disk has no file")
        os.makedirs(images_dir, exist_ok=True)
        disk_path = _new_disk_path(images_dir, domain, image, old_source)
        if seed_iso is None:
            if not (minion_pub and minion_pem and master):
                raise leapfrog_errors.LeapfrogError(
                    "rebuild needs seed_iso, or minion_pub + minion_pem + master to build one")
            seed_iso = os.path.join(images_dir, f"{domain}-seed.iso")
            seeded = _seed(seed_iso, node, master, minion_pub, minion_pem, grains=grains)
        else:
            seeded = {"path": seed_iso}
        base_format = _image_info(image).get("format", "qcow2")
        if os.path.exists(disk_path):
            os.unlink(disk_path)
        if method == "overlay":
            _cmd(["qemu-img", "create", "-q", "-f", "qcow2", "-F", base_format, "-b", image,
                  disk_path])
        else:
            _cmd(["qemu-img", "convert", "-f", base_format, "-O", "qcow2", image, disk_path])
        # the new domain: same settings, new identity, new disk, seed CD-ROM, metadata
        root.find("name").text = domain
        for tag in ("uuid",):
            node_ = root.find(tag)
            if node_ is not None:
                root.remove(node_)
        for child in list(first):
            if child.tag in ("source", "backingStore"):
                first.remove(child)
        driver = first.find("driver")
        if driver is None:
            driver = ET.SubElement(first, "driver", name="qemu")
        driver.set("type", "qcow2")
        first.insert(1, ET.Element("source", file=disk_path))
        _attach_seed(root, seed_iso)
        _set_metadata(root, os=os_release or "", image=image, **(marks or {}))
        new_xml = ET.tostring(root, encoding="unicode")
        replaced = None
        if old is not None:
            if old.isActive():
                _shutdown(old, _shutdown_timeout(None))
            replaced = {"uuid": old.UUIDString(), "disks": [
                d["source"] for d in _disks(old.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))[0]]}
            old.undefine()
        try:
            dom = conn.defineXML(new_xml)
        except libvirt.libvirtError as exc:
            raise leapfrog_errors.LeapfrogError(f"defining the rebuilt {domain!r} failed: {exc}")
        if start:
            dom.create()
        return {
            "domain": domain,
            "node": node,
            "uuid": dom.UUIDString(),
            "image": image,
            "method": method,
            "disk": disk_path,
            "seed": seeded,
            "os_release": os_release,
            "replaced": replaced,
            "started": bool(start),
        }


def detach_seed(domain, path, uri=None):
    """
    Eject the cloud-init seed ISO ``path`` from ``domain``'s CD-ROM (the running domain and
    its persistent definition) and delete the file: once the rebuilt VM's minion is in, the
    seed's private key has no use left. Only a file the domain's CD-ROM holds and that reads
    as a NoCloud seed (volume label ``cidata``) is deleted; anything else is refused.
    Returns whether it was detached and removed (an already detached, removed seed: both
    False).

    CLI Example:

    .. code-block:: bash

        salt kvm01 vm_backup.detach_seed ctl01 /var/lib/libvirt/images/ctl01-seed.iso
    """
    _name("domain", domain)
    if not isinstance(path, str) or not os.path.isabs(path):
        raise leapfrog_errors.LeapfrogError(f"path must be the seed's absolute path, got {path!r}")
    with _Conn(_uri(uri)) as conn:
        dom = _lookup(conn, domain)
        holding = []
        for flags in (0, libvirt.VIR_DOMAIN_XML_INACTIVE):
            root = ET.fromstring(dom.XMLDesc(flags))
            holding += [(flags, disk) for disk in root.findall("./devices/disk")
                        if disk.get("device") == "cdrom" and disk.find("source") is not None
                        and disk.find("source").get("file") == path]
        if not holding and os.path.exists(path):
            raise leapfrog_errors.LeapfrogError(
                f"{path} is not in a CD-ROM of domain {domain!r}: not removed")
        if os.path.exists(path) and _iso_label(path) != "cidata":
            raise leapfrog_errors.LeapfrogError(
                f"{path} is not a NoCloud seed (volume label cidata): not detached or removed")
        for flags, disk in holding:
            disk.remove(disk.find("source"))
            affect = libvirt.VIR_DOMAIN_AFFECT_CONFIG if flags else \
                libvirt.VIR_DOMAIN_AFFECT_LIVE | libvirt.VIR_DOMAIN_DEVICE_MODIFY_FORCE
            if not flags and not dom.isActive():
                continue
            try:
                dom.updateDeviceFlags(ET.tostring(disk, encoding="unicode"), affect)
            except libvirt.libvirtError as exc:
                raise leapfrog_errors.LeapfrogError(
                    f"ejecting {path} from {domain!r} failed: {exc}") from None
        removed = os.path.exists(path)
        if removed:
            os.unlink(path)
            _fsync(os.path.dirname(path))
        return {"domain": domain, "path": path, "detached": bool(holding), "removed": removed}


def _iso_label(path):
    import pycdlib

    iso = pycdlib.PyCdlib()
    try:
        iso.open(path)
        return iso.pvd.volume_identifier.decode().strip().lower()
    except Exception:  # pylint: disable=broad-except  # not an ISO 9660 image
        return None
    finally:
        try:
            iso.close()
        except Exception:  # pylint: disable=broad-except
            pass


def _attach_seed(root, seed_iso):
    devices = root.find("devices")
    for disk in devices.findall("disk"):
        if disk.get("device") == "cdrom":
            for child in list(disk):
                if child.tag == "source":
                    disk.remove(child)
            disk.insert(1, ET.Element("source", file=seed_iso))
            return
    machine = (root.find("./os/type").get("machine") or "") if root.find("./os/type") is not None \
        else ""
    bus = "sata" if "q35" in machine else "ide"
    used = {t.get("dev") for t in root.findall("./devices/disk/target")}
    prefix = "sd" if bus == "sata" else "hd"
    dev = next(f"{prefix}{c}" for c in "cdefghij" if f"{prefix}{c}" not in used)
    cdrom = ET.Element("disk", type="file", device="cdrom")
    ET.SubElement(cdrom, "driver", name="qemu", type="raw")
    ET.SubElement(cdrom, "source", file=seed_iso)
    ET.SubElement(cdrom, "target", dev=dev, bus=bus)
    ET.SubElement(cdrom, "readonly")
    index = list(devices).index(devices.findall("disk")[-1]) + 1
    devices.insert(index, cdrom)


# -- throwaway domains (a rehearsal's controller) --------------------------------------------
def _throwaway_template(xml, node, images_dir):
    """Domain XML of ``node`` from another domain's (``like``): no uuid, MAC addresses or
    disks but the first (its source is replaced), a console file of its own."""
    root = ET.fromstring(xml)
    root.find("name").text = node
    devices = root.find("devices")
    for interface in devices.findall("interface"):
        for mac in interface.findall("mac"):
            interface.remove(mac)
    disks = [d for d in devices.findall("disk") if d.get("device", "disk") == "disk"]
    for extra in disks[1:]:
        devices.remove(extra)
    for kind in ("serial", "console"):
        for device in devices.findall(kind):
            source = device.find("source")
            if device.get("type") == "file" and source is not None:
                source.set("path", os.path.join(images_dir, f"{node}-console.log"))
    return ET.tostring(root, encoding="unicode")


def _throwaway_of(xml):
    return _metadata(xml).get("throwaway")


def _owner_text(owner):
    return f"the throwaway of run {owner}" if owner else "not a throwaway"


def throwaway(node, image, like, run, minion_pub=None, minion_pem=None, master=None,
              os_release=None, grains=None, images_dir=None, start=True, uri=None):
    """
    Define a new, throwaway domain ``node`` (a rehearsal's controller) booting the OS image
    ``image``, with the settings (CPU, memory, networks) of the existing domain ``like``:
    a new uuid and new MAC addresses, its own disk (an overlay on the image, named
    ``<node>-<image name>.qcow2`` in ``images_dir``, default the folder of ``like``'s disk;
    ``like``'s other disks are left out) and console file, and a NoCloud seed built as a
    rebuild's (``minion_pem`` sealed). Its leapfrog metadata names it the throwaway of run
    ``run``: ``discard`` removes such a domain and nothing else. A domain ``node`` that
    exists is refused unless it is ``run``'s own throwaway (a re-run), which is discarded
    first. Started unless ``start=False``.

    CLI Example:

    .. code-block:: bash

        salt kvm01 vm_backup.throwaway upg01 /var/lib/libvirt/images/trixie.qcow2 ctl01 \
            20261207-120000-ab12 master=10.0.0.5 os_release=trixie minion_pub=... \
            minion_pem='{sealed: ...}'
    """
    _name("node", node)
    _name("like", like)
    _name("run", run)
    if node == like:
        raise leapfrog_errors.LeapfrogError(
            f"node and like are both {node!r}: a throwaway never replaces the domain it copies")
    with _Conn(_uri(uri)) as conn:
        existing = _lookup(conn, node, missing_ok=True)
        if existing is not None:
            owner = _throwaway_of(existing.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
            if owner != run:
                raise leapfrog_errors.LeapfrogError(
                    f"domain {node!r} exists and is {_owner_text(owner)}: leapfrog never "
                    "replaces it with a throwaway; name another node (pillar rehearsal:node)"
                    + (f" or discard it: salt <hypervisor> vm_backup.discard {node} {owner}"
                       if owner else ""))
        source = _lookup(conn, like).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    if existing is not None:
        discard(node, run, uri=uri)
    first = _disks(source)[0]
    images_dir = images_dir or (os.path.dirname(first[0]["source"]) if first else None)
    if not images_dir:
        raise leapfrog_errors.LeapfrogError(f"pass images_dir: {like!r} has no disk file")
    out = _rebuild(node, image, minion_pub=minion_pub, minion_pem=minion_pem, master=master,
                   template=_throwaway_template(source, node, images_dir),
                   images_dir=images_dir, os_release=os_release, grains=grains, start=start,
                   uri=uri, marks={"throwaway": run})
    out["throwaway"] = run
    return out


def _file_sources(root):
    """Paths of a domain's file disks, CD-ROMs and file consoles."""
    paths = [s.get("file") for s in root.findall("./devices/disk/source")]
    paths += [s.get("path") for kind in ("serial", "console")
              for d in root.findall(f"./devices/{kind}") if d.get("type") == "file"
              for s in d.findall("source")]
    return [p for p in paths if p]


def discard(domain, run, uri=None):
    """
    Remove the throwaway domain ``domain`` of run ``run`` (made by ``throwaway``): stopped
    at once (destroyed: nothing on it is kept), undefined, and the files it was given
    deleted (its disk, seed and console file: those named ``<domain>-...`` in its disk's
    folder that no other domain uses; the OS image under its disk is never touched).
    Refused, changing nothing, for any domain not marked as ``run``'s throwaway: every
    controller, a rebuilt node, another run's throwaway. A domain that does not exist is
    nothing to do (a re-run).

    CLI Example:

    .. code-block:: bash

        salt kvm01 vm_backup.discard upg01 20261207-120000-ab12
    """
    _name("domain", domain)
    _name("run", run)
    with _Conn(_uri(uri)) as conn:
        dom = _lookup(conn, domain, missing_ok=True)
        if dom is None:
            return {"domain": domain, "discarded": False, "removed": []}
        xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
        owner = _throwaway_of(xml)
        if owner != run:
            raise leapfrog_errors.LeapfrogError(
                f"domain {domain!r} is {_owner_text(owner)}: discard removes only run {run}'s "
                "throwaway domain; nothing was changed")
        root = ET.fromstring(xml)
        disks = _disks(xml)[0]
        folder = os.path.dirname(os.path.abspath(disks[0]["source"])) if disks else None
        others = set()
        for other in conn.listAllDomains():
            if other.name() != domain:
                others.update(os.path.abspath(p) for p in _file_sources(
                    ET.fromstring(other.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))))
        mine = [os.path.abspath(p) for p in _file_sources(root)]
        doomed = [p for p in mine if folder and os.path.dirname(p) == folder
                  and os.path.basename(p).startswith(f"{domain}-") and p not in others]
        if dom.isActive():
            dom.destroy()
        dom.undefine()
    removed = []
    for path in doomed:
        try:
            os.unlink(path)
            removed.append(path)
        except FileNotFoundError:
            pass
    return {"domain": domain, "discarded": True, "removed": removed,
            "kept": sorted(set(mine) - set(doomed))}
