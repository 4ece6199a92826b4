"""Benchmark: does a Galera backup stall the cloud's writes?

    python bench/bench_galera_backup.py [--rows 300000] [--seconds 20]

Starts a three-node Galera cluster (lab.galera), seeds ``--rows`` rows, then runs the same
writer (autocommit INSERTs on node 1, as the node the DB frontend sends clients to) twice
for the same time: once alone (the baseline) and once while ``galera_backup.backup`` runs
on node 3 (FTWRL there: desynced and paused, the copy, resync). Prints each run's inserts,
failed writes, p50/p99/max latency, the longest gap between two committed writes, the ratio
of the backup run's figures to the baseline's, and the backup's own figures (paused
seconds, resync, total, size). Goal: no failed write, no stall over 1 s. Then verifies the
backup (scratch server) and stops everything.
"""
import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(REPO, "_utils"), REPO]

from lab.galera import GaleraCluster  # noqa: E402
from tests.loader import minion_modules  # noqa: E402


def seed(node, rows):
    with node.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE DATABASE bench_gal")
        cur.execute("CREATE TABLE bench_gal.instances (id INT AUTO_INCREMENT PRIMARY KEY, "
                    "uuid CHAR(36), display_name VARCHAR(255), user_data TEXT, vcpus INT)")
        cur.execute("CREATE TABLE bench_gal.writes (id INT AUTO_INCREMENT PRIMARY KEY, "
                    "at DOUBLE, payload VARCHAR(200))")
        for start in range(0, rows, 5000):
            cur.executemany(
                "INSERT INTO bench_gal.instances (uuid, display_name, user_data, vcpus) "
                "VALUES (%s, %s, %s, %s)",
                [(f"{i:08d}-0000-0000-0000-000000000000", f"vm-{i}",
                  "#cloud-config\n" * (1 + i % 5), 1 + i % 8)
                 for i in range(start, min(rows, start + 5000))])


def write_for(node, seconds, during=None):
    """INSERTs on ``node`` for ``seconds`` (``during`` runs in a thread meanwhile): the
    latencies, the failures, the longest gap between committed writes, during's result."""
    latencies, failures, commits = [], [], []
    result = {}
    worker = None
    if during:
        worker = threading.Thread(target=lambda: result.update(value=during()), daemon=True)
    with node.connect() as conn, conn.cursor() as cur:
        deadline = time.monotonic() + seconds
        started_worker = False
        while time.monotonic() < deadline or (worker and worker.is_alive()):
            if worker and not started_worker and time.monotonic() > deadline - seconds + 2:
                worker.start()
                started_worker = True
            begun = time.monotonic()
            try:
                cur.execute("INSERT INTO bench_gal.writes (at, payload) VALUES (%s, %s)",
                            (time.time(), "x" * 150))
                commits.append(time.monotonic())
            except Exception as exc:  # pylint: disable=broad-except
                failures.append(str(exc))
            latencies.append(time.monotonic() - begun)
            time.sleep(0.005)
    gaps = [b - a for a, b in zip(commits, commits[1:])] or [0.0]
    return {"inserts": len(commits), "failed": len(failures),
            "p50_ms": statistics.median(latencies) * 1000,
            "p99_ms": sorted(latencies)[int(len(latencies) * 0.99) - 1] * 1000,
            "max_ms": max(latencies) * 1000, "gap_ms": max(gaps) * 1000,
            "errors": failures[:3], "during": result.get("value")}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300000)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    run_dir = tempfile.mkdtemp(prefix="lf-bgal-", dir="/tmp")
    cluster = GaleraCluster(os.path.join(run_dir, "c"), size=3)
    try:
        started = time.monotonic()
        cluster.start()
        print(f"cluster of 3 Synced in {time.monotonic() - started:.1f} s")
        n1, _, n3 = cluster.nodes
        started = time.monotonic()
        seed(n1, args.rows)
        print(f"seeded {args.rows} rows in {time.monotonic() - started:.1f} s")
        mods = minion_modules(os.path.join(run_dir, "cache"), {"leapfrog": {
            "galera": {"defaults_file": n3.config, "size": 3},
            "backups": {"dir": os.path.join(run_dir, "backups")},
            "database": {"socket": n3.socket, "user": "root",
                         "password": cluster.root_password}}}, ["galera_backup"])
        base = write_for(n1, args.seconds)
        with_backup = write_for(n1, args.seconds,
                                lambda: mods["galera_backup.backup"](label="bench"))
        print(f"\n{'writer on n1':<22}{'inserts':>8}{'failed':>8}{'p50 ms':>9}{'p99 ms':>9}"
              f"{'max ms':>9}{'gap ms':>9}")
        for name, row in (("baseline", base), ("during the backup", with_backup)):
            print(f"{name:<22}{row['inserts']:>8}{row['failed']:>8}{row['p50_ms']:>9.2f}"
                  f"{row['p99_ms']:>9.2f}{row['max_ms']:>9.1f}{row['gap_ms']:>9.1f}")
        print(f"{'ratio backup/baseline':<22}{'':>16}"
              + "".join(f"{with_backup[k] / max(base[k], 1e-9):>9.2f}"
                        for k in ("p50_ms", "p99_ms", "max_ms", "gap_ms")))
        taken = with_backup["during"]
        print(f"\nbackup from n3: {taken['bytes'] / 1e6:.0f} MB, {taken['tables']} tables, "
              f"seqno {taken['seqno']}, node paused {taken['paused_seconds']} s, resynced "
              f"{taken['resync_seconds']} s, total {taken['seconds']} s")
        if with_backup["errors"]:
            print("failed writes:", with_backup["errors"])
        checked = mods["galera_backup.verify"](taken["id"])
        print(f"verify: valid={checked['valid']} in {checked['seconds']} s "
              f"{checked['problems'] or ''}")
        stall = with_backup["max_ms"] > 1000 or with_backup["gap_ms"] > 1000
        print(f"goal (no failed write, no stall > 1 s): "
              f"{'MET' if not with_backup['failed'] and not stall else 'NOT MET'}")
    finally:
        cluster.stop()
        shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
