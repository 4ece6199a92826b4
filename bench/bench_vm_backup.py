"""Benchmark vm_backup's offline backup and restore against ``cp --sparse=always``.

A 2 GiB qcow2 disk holding 500 MiB of random data belongs to a (stopped) domain on a
private libvirtd (lab/libvirt.py). In the same run, with the same warm page cache:

- ``cp --sparse=always`` of the disk, with and without fsync (the baseline: cp + fsync,
  as vm_backup flushes what it writes), and sha256 of the disk alone (the hashing floor),
- ``vm_backup.backup`` (one-pass sparse copy + sha256 + fsync + manifest),
  ``vm_backup.verify`` (qemu-img check + sha256),
- ``vm_backup.restore`` (one-pass copy of the backup + sha256 + fsync, qemu-img check,
  rename into place, define) against cp + fsync of the same backup file,

and prints MiB/s of allocated bytes and the ratio to cp (target >= 0.9). Backup and
restore are each timed next to their cp baseline, in the other order every other round,
and the ratio is the median of those pairs: this VM's disk and the other work on the host
drift within a run. When a reflink-capable filesystem can be made (mkfs.xfs -m reflink=1 on
a loop device), the same backup runs there too (a FICLONE clone instead of a copy; the
sha256 remains to be computed).

    python bench/bench_vm_backup.py [--data-mib 500] [--size 2G] [--repeat 5]
        [--compare CHECKOUT]   # e.g. mkdir /tmp/old && git archive HEAD~1 | tar -x -C /tmp/old
        [--quiet 10]           # on a shared host: pairs wait for CPU pressure under 10 %
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
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


QUIET_PRESSURE = 10  # % CPU pressure under which a round counts as run on a quiet host
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


def cpu_pressure():
    """The host's CPU pressure (share of the last 10 s some task waited for a CPU), or None."""
    try:
        with open("/proc/pressure/cpu") as handle:
            return float(handle.readline().split()[1].split("=")[1])
    except (OSError, IndexError, ValueError):
        return None


def wait_quiet(limit, timeout=900):
    """With ``limit``: wait until the host's CPU pressure is under ``limit`` % (other work on
    a shared host slows the hashing thread, not cp), at most ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while limit is not None and time.monotonic() < deadline:
        pressure = cpu_pressure()
        if pressure is None or pressure < limit:
            return
        time.sleep(5)


def median(values):
    values = sorted(values)
    return values[len(values) // 2]


def loaders_for(uri, backup_dir, work, repo=REPO):
    import salt.config
    from saltfactories.utils.functional import Loaders

    opts = salt.config.minion_config(None)
    opts.update({
        "root_dir": work, "cachedir": os.path.join(work, "cache"),
        "pki_dir": os.path.join(work, "pki"), "file_client": "local",
        "module_dirs": [os.path.join(repo, "_modules")],
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
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--compare", metavar="CHECKOUT",
                        help="also time backup and restore with the _modules/vm_backup.py of "
                             "another checkout (e.g. `git archive` of an older commit), in the "
                             "same rounds against the same baselines")
    parser.add_argument("--quiet", type=float, metavar="PCT",
                        help="before each pair, wait (up to 15 min) until the host's CPU "
                             "pressure is under PCT %%")
    args = parser.parse_args(argv)

    work = tempfile.mkdtemp(prefix="lfb-", dir="/var/tmp")
    lab = Libvirt(tempfile.mkdtemp(prefix="lfbv-", dir="/tmp"))
    paths = guest.ensure()
    rows = []
    rounds = []
    phases = {"backup": [], "restore": []}
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
        others = [("", vm)]
        if args.compare:
            others.append((f" [{args.compare}]", loaders_for(
                lab.uri, os.path.join(work, "backups-compare"), work,
                repo=os.path.abspath(args.compare)).modules.vm_backup))
        warm(disk)
        times = {}
        ratios = {}
        baseline = "cp --sparse=always + fsync"
        restore_baseline = "cp --sparse=always + fsync of the backup"
        cp_path = os.path.join(work, "cp.qcow2")

        def run(name, func, *fargs):
            seconds, result = timed(func, *fargs)
            times.setdefault(name, []).append(seconds)
            if os.path.exists(cp_path):
                os.unlink(cp_path)
            return seconds, result

        def pair(flip, first, second):
            """Two adjacent timings, in the other order every other round (drift cancels)."""
            wait_quiet(args.quiet)
            if flip:
                b = run(*second)
                return run(*first), b
            a = run(*first)
            return a, run(*second)

        for index in range(args.repeat):
            flip = index % 2 == 1
            rounds.append({"cpu pressure": cpu_pressure()})
            run("cp --sparse=always (page cache)", cp_sparse, disk, cp_path)
            run("sha256 of the disk alone (hashlib)", sha256_file, disk)
            for suffix, module in others:
                name = f"vm_backup.backup{suffix}"
                (cp_s, _), (seconds, made) = pair(
                    flip, (baseline, cp_sparse_fsync, disk, cp_path),
                    (name, module.backup, "bench01"))
                ratios.setdefault(name, []).append(cp_s / seconds)
                rounds[-1][name] = cp_s / seconds
                if not suffix:
                    phases["backup"].append(dict(made["phases"],
                                                 method=made["disks"][0]["method"]))
                    seconds, _ = run("vm_backup.verify", vm.verify, made["backup"])
                    ratios.setdefault("vm_backup.verify", []).append(cp_s / seconds)
                name = f"vm_backup.restore{suffix}"
                (cp_s, _), (seconds, put) = pair(
                    flip, (restore_baseline, cp_sparse_fsync, made["path"] + "/vda.qcow2",
                           cp_path),
                    (name, module.restore, "bench01", made["backup"]))
                ratios.setdefault(name, []).append(cp_s / seconds)
                rounds[-1][name] = cp_s / seconds
                if not suffix:
                    phases["restore"].append(put["phases"])
                shutil.rmtree(made["path"])
            pressures = [rounds[-1]["cpu pressure"], cpu_pressure()]
            if None not in pressures:
                rounds[-1]["cpu pressure"] = max(pressures)
        base = median(times[baseline])
        for name, values in times.items():
            seconds = median(values)
            ratio = median(ratios[name]) if name in ratios else base / seconds
            spread = (f"{min(ratios[name]):.2f}-{max(ratios[name]):.2f}" if name in ratios
                      else "")
            rows.append((name, seconds, allocated / MIB / seconds, ratio, spread))

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
                for name, func, fargs in (
                        ("xfs: cp --sparse=always + fsync (reflinks)", cp_sparse_fsync,
                         (rdisk, os.path.join(mnt, "x"))),
                        ("xfs: sha256 of the disk alone (hashlib)", sha256_file, (rdisk,)),
                        ("xfs: vm_backup.backup (reflink clone)", vm2.backup, ("bench02",))):
                    wait_quiet(args.quiet)
                    seconds, made = timed(func, *fargs)
                    rows.append((name, seconds, allocated / MIB / seconds, base / seconds, ""))
                wait_quiet(args.quiet)
                seconds, put = timed(vm2.restore, "bench02", made["backup"])
                rows.append(("xfs: vm_backup.restore (reflink clone)", seconds,
                             allocated / MIB / seconds, base / seconds, ""))
                manifest = vm2.manifest(made["backup"])
                why = (f"reflink supported: {manifest['reflink']}, backup method: "
                       f"{manifest['disks'][0]['method']}")
            finally:
                lab.cleanup_domains()
                for thread in threading.enumerate():  # restore frees replaced disks after it
                    if thread.name == "vm_backup-release":
                        thread.join()
                cleanup()
    finally:
        lab.remove()
        shutil.rmtree(lab.run_dir, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)

    print(f"\nvm_backup bench: {args.size} qcow2, {allocated / MIB:.0f} MiB allocated "
          f"(median of {args.repeat}; vs cp = cp+fsync time / time, for backup and restore "
          "the median of each round's adjacent pair, restore against cp+fsync of the same "
          "backup file; xfs rows against the ext4 cp+fsync)")
    print(f"{'operation':42} {'seconds':>8} {'MiB/s':>8} {'vs cp':>6} {'pairs':>10}")
    for name, seconds, rate, ratio, spread in rows:
        print(f"{name:42} {seconds:8.2f} {rate:8.0f} {ratio:6.2f} {spread:>10}")
    print(f"reflink path: {why}")
    print("each round: the host's CPU pressure (the higher of its start and end: % of the last "
          "10 s some task waited for a CPU, i.e. other work on this host) and its pairs' ratios")
    for index, item in enumerate(rounds, 1):
        print(f"  {index}: " + ", ".join(
            f"{k} {v:.0f}%" if k == "cpu pressure" else f"{k} {v:.2f}"
            for k, v in item.items() if v is not None))
    quiet = [item for item in rounds if (item["cpu pressure"] or 0) < QUIET_PRESSURE]
    if quiet and len(quiet) < len(rounds):
        print(f"median of the {len(quiet)} rounds under {QUIET_PRESSURE}% CPU pressure: "
              + ", ".join(f"{k} {median([item[k] for item in quiet]):.2f}" for k in quiet[0]
                          if k != "cpu pressure"))
    for op, items in phases.items():
        print(f"{op} phases (cumulative seconds, each run):")
        for item in items:
            print("  " + ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k}: {v}"
                                   for k, v in item.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
