"""Benchmark vm_backup's offline backup and restore against ``cp --sparse=always``.

A 2 GiB qcow2 disk holding 500 MiB of random data belongs to a (stopped) domain on a
private libvirtd (lab/libvirt.py). In the same run, with the same warm page cache:

- ``cp --sparse=always`` of the disk (the baseline),
- ``vm_backup.backup`` (copy + sha256 + manifest), ``vm_backup.verify``,
- ``vm_backup.restore`` (verify + copy + sha256 of the copy + define),

and prints MiB/s of allocated bytes and the ratio to cp (target >= 0.9). When a
reflink-capable filesystem can be made (mkfs.xfs -m reflink=1 on a loop device), the same
backup runs there too (``cp --reflink=auto`` clones instead of copying).

    python -m bench.bench_vm_backup [--data-mib 500] [--size 2G] [--repeat 2]
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(REPO, "_utils"), REPO]

from lab import guest  # noqa: E402
from lab.libvirt import Libvirt  # noqa: E402

MIB = 1024 * 1024


def make_disk(path, size, data_mib, work):
    raw = os.path.join(work, "data.raw")
    with open(raw, "wb") as handle:
        for _ in range(data_mib):
            handle.write(os.urandom(MIB))
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", path, size], check=True)
    subprocess.run(["qemu-img", "convert", "-n", "-f", "raw", "-O", "qcow2", raw, path],
                   check=True)
    os.unlink(raw)


def warm(path):
    with open(path, "rb") as handle:
        while handle.read(8 * MIB):
            pass


SETTLE = 3.0  # seconds after a sync: this VM's disk absorbs a burst, then writes slowly


def timed(func, *args, **kwargs):
    """Time one operation from a settled state (everything flushed, disk idle)."""
    os.sync()
    time.sleep(SETTLE)
    start = time.monotonic()
    result = func(*args, **kwargs)
    return time.monotonic() - start, result


def cp_sparse(src, dst):
    subprocess.run(["cp", "--sparse=always", src, dst], check=True)


def cp_sparse_fsync(src, dst):
    cp_sparse(src, dst)
    subprocess.run(["sync", dst], check=True)  # coreutils sync FILE: fsync that file


def sha256_file(path):
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(4 * MIB), b""):
            digest.update(chunk)
    return digest.hexdigest()


def median(values):
    values = sorted(values)
    return values[len(values) // 2]


def loaders_for(uri, backup_dir, work):
    import salt.config
    from saltfactories.utils.functional import Loaders

    opts = salt.config.minion_config(None)
    opts.update({
        "root_dir": work, "cachedir": os.path.join(work, "cache"),
        "pki_dir": os.path.join(work, "pki"), "file_client": "local",
        "module_dirs": [os.path.join(REPO, "_modules")],
        "log_level": "error", "log_level_logfile": "error",
        "pillar": {"leapfrog": {"libvirt": {"uri": uri}, "backups": {"dir": backup_dir}}},
    })
    return Loaders(opts)


def reflink_fs(work):
    """Mount a small XFS with reflink on a loop device; return (mountpoint, cleanup) or None."""
    if not shutil.which("mkfs.xfs"):
        return None, "mkfs.xfs not installed (xfsprogs)"
    image = os.path.join(work, "xfs.img")
    mnt = os.path.join(work, "xfs")
    os.makedirs(mnt)
    subprocess.run(["truncate", "-s", "4G", image], check=True)
    made = subprocess.run(["mkfs.xfs", "-q", "-m", "reflink=1", image], capture_output=True)
    if made.returncode:
        return None, f"mkfs.xfs failed: {made.stderr.decode().strip()}"
    mounted = subprocess.run(["mount", "-o", "loop", image, mnt], capture_output=True)
    if mounted.returncode:
        return None, f"loop mount failed: {mounted.stderr.decode().strip()}"

    def cleanup():
        subprocess.run(["umount", mnt], check=False)

    return (mnt, cleanup), None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-mib", type=int, default=500)
    parser.add_argument("--size", default="2G")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    work = tempfile.mkdtemp(prefix="lfb-", dir="/var/tmp")
    lab = Libvirt(tempfile.mkdtemp(prefix="lfbv-", dir="/tmp"))
    paths = guest.ensure()
    rows = []
    phases = []
    try:
        lab.up()
        images = os.path.join(work, "images")
        os.makedirs(images)
        disk = os.path.join(images, "bench01.qcow2")
        make_disk(disk, args.size, args.data_mib, work)
        allocated = os.stat(disk).st_blocks * 512
        conn = lab.connect()
        conn.defineXML(guest.domain_xml("bench01", disk, os.path.join(work, "console.log"),
                                        paths["kernel"], paths["initrd"]))
        conn.close()
        backups = os.path.join(work, "backups")
        vm = loaders_for(lab.uri, backups, work).modules.vm_backup
        warm(disk)
        times = {}
        baseline = "cp --sparse=always + fsync"
        for _ in range(args.repeat):
            for name, func in (("cp --sparse=always (page cache)", cp_sparse),
                               (baseline, cp_sparse_fsync)):
                seconds, _ = timed(func, disk, os.path.join(work, "cp.qcow2"))
                os.unlink(os.path.join(work, "cp.qcow2"))
                times.setdefault(name, []).append(seconds)
            seconds, _ = timed(sha256_file, disk)
            times.setdefault("sha256 of the disk alone (hashlib)", []).append(seconds)
            seconds, made = timed(vm.backup, "bench01")
            times.setdefault("vm_backup.backup", []).append(seconds)
            phases.append(made["phases"])
            seconds, _ = timed(vm.verify, made["backup"])
            times.setdefault("vm_backup.verify", []).append(seconds)
            seconds, _ = timed(cp_sparse_fsync, made["path"] + "/vda.qcow2",
                               os.path.join(work, "cp2.qcow2"))
            os.unlink(os.path.join(work, "cp2.qcow2"))
            times.setdefault("cp --sparse=always + fsync of the backup", []).append(seconds)
            seconds, _ = timed(vm.restore, "bench01", made["backup"])
            times.setdefault("vm_backup.restore", []).append(seconds)
            shutil.rmtree(made["path"])
        base = median(times[baseline])
        restore_base = median(times["cp --sparse=always + fsync of the backup"])
        for name, values in times.items():
            seconds = median(values)
            ref = restore_base if name == "vm_backup.restore" else base
            rows.append((name, seconds, allocated / MIB / seconds, ref / seconds))

        mount, why = reflink_fs(work)
        if mount:
            mnt, cleanup = mount
            try:
                vm2 = loaders_for(lab.uri, os.path.join(mnt, "backups"), work).modules.vm_backup
                rdisk = os.path.join(mnt, "bench02.qcow2")
                shutil.copy(disk, rdisk)
                conn = lab.connect()
                conn.defineXML(guest.domain_xml("bench02", rdisk, os.path.join(work, "c2.log"),
                                                paths["kernel"], paths["initrd"]))
                conn.close()
                seconds, _ = timed(cp_sparse_fsync, rdisk, os.path.join(mnt, "x"))
                rows.append(("xfs: cp --sparse=always + fsync (reflinks)", seconds,
                             allocated / MIB / seconds, base / seconds))
                seconds, made = timed(vm2.backup, "bench02")
                rows.append(("xfs: vm_backup.backup (reflink clone)", seconds,
                             allocated / MIB / seconds, base / seconds))
                seconds, _ = timed(vm2.restore, "bench02", made["backup"])
                rows.append(("xfs: vm_backup.restore (reflink clone)", seconds,
                             allocated / MIB / seconds, base / seconds))
                manifest = vm2.manifest(made["backup"])
                why = f"reflink supported: {manifest['reflink']}"
            finally:
                lab.cleanup_domains()
                cleanup()
    finally:
        lab.remove()
        shutil.rmtree(lab.run_dir, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)

    print(f"\nvm_backup bench: {args.size} qcow2, {allocated / MIB:.0f} MiB allocated "
          f"(median of {args.repeat}; ratio = cp+fsync time / time, restore against "
          "cp+fsync of the same backup file)")
    print(f"{'operation':42} {'seconds':>8} {'MiB/s':>8} {'vs cp':>6}")
    for name, seconds, rate, ratio in rows:
        print(f"{name:42} {seconds:8.2f} {rate:8.0f} {ratio:6.2f}")
    print(f"reflink path: {why}")
    print("backup phases (cumulative seconds, each run):")
    for item in phases:
        print("  " + ", ".join(f"{k} {v:.2f}" for k, v in item.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
