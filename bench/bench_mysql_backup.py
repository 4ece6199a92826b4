"""Benchmark: mysql_backup.backup/restore/clone against the raw CLI pipelines they wrap.

    python bench/bench_mysql_backup.py [--rows 200000]

Starts a private MariaDB (lab.mariadb), seeds a nova-like database, then times in the same
run: the raw ``mariadb-dump --single-transaction | zstd`` and ``zstd -dc | mariadb``
pipelines, and mysql_backup's backup (adds row counts, CHECKSUM TABLE, sha256, manifest),
verify, restore (adds verify, decompression to a file, checksums after) and clone. Prints
seconds and the overhead ratio module/raw. Stops the server and removes everything.
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

import salt.config  # noqa: E402
import salt.loader  # noqa: E402

from lab.mariadb import MariaDB  # noqa: E402


def seed(conn, rows):
    with conn.cursor() as cur:
        cur.execute("CREATE DATABASE bench_nova CHARACTER SET utf8mb4")
        cur.execute("USE bench_nova")
        cur.execute("CREATE TABLE instances (id INT PRIMARY KEY AUTO_INCREMENT, uuid CHAR(36), "
                    "display_name VARCHAR(255), user_data MEDIUMTEXT, vcpus INT, "
                    "deleted INT NOT NULL DEFAULT 0, KEY (uuid))")
        cur.execute("CREATE TABLE instance_faults (id INT PRIMARY KEY AUTO_INCREMENT, "
                    "instance_uuid CHAR(36), message VARCHAR(255), details MEDIUMTEXT)")
        batch = 5000
        for start in range(0, rows, batch):
            values = [(f"{i:08d}-0000-0000-0000-000000000000", f"vm-{i}",
                       "#cloud-config\n" + "packages: [a, b, c]\n" * (i % 7), 1 + i % 8,
                       i if i % 5 == 0 else 0) for i in range(start, min(rows, start + batch))]
            cur.executemany("INSERT INTO instances (uuid, display_name, user_data, vcpus, "
                            "deleted) VALUES (%s,%s,%s,%s,%s)", values)
            cur.executemany("INSERT INTO instance_faults (instance_uuid, message, details) "
                            "VALUES (%s,%s,%s)", [(v[0], "NoValidHost", "trace " * 20)
                                                  for v in values[::4]])


def timed(label, func, results):
    started = time.monotonic()
    value = func()
    results[label] = time.monotonic() - started
    return value


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200000)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="lf-bench-", dir="/tmp")
    db = MariaDB(os.path.join(work, "db"))
    try:
        db.start()
        with db.connect() as conn:
            seed(conn, args.rows)
        opts = salt.config.minion_config(None)
        opts.update({"file_client": "local", "cachedir": os.path.join(work, "cache"),
                     "module_dirs": [os.path.join(REPO, "_modules")],
                     "pillar": {"leapfrog": {"database": db.pillar(),
                                             "backups": {"dir": os.path.join(work, "b")}}}})
        mods = salt.loader.minion_mods(opts, whitelist=["cmd", "mysql_backup"])
        cnf = db.client_cnf
        raw_file = os.path.join(work, "raw.sql.zst")
        t = {}
        timed("raw dump|zstd", lambda: subprocess.run(
            f"mariadb-dump --defaults-file={cnf} --single-transaction --quick --routines "
            f"--triggers --hex-blob bench_nova | zstd -q -3 -T0 -o {raw_file}",
            shell=True, check=True), t)
        made = timed("mysql_backup.backup", lambda: mods["mysql_backup.backup"](
            databases="bench_nova"), t)
        timed("mysql_backup.verify", lambda: mods["mysql_backup.verify"](made["id"]), t)
        with db.connect() as conn, conn.cursor() as cur:
            cur.execute("CREATE DATABASE bench_raw")
        timed("raw zstd -dc|mariadb", lambda: subprocess.run(
            f"zstd -dc {raw_file} | mariadb --defaults-file={cnf} bench_raw",
            shell=True, check=True), t)
        timed("mysql_backup.restore", lambda: mods["mysql_backup.restore"](
            made["id"], target="bench_restored"), t)
        timed("mysql_backup.clone", lambda: mods["mysql_backup.clone"]("bench_nova"), t)
        size = sum(i["bytes"] for i in made["databases"].values())
        print(f"rows: {args.rows} instances + {args.rows // 4} faults; backup file "
              f"{size / 1e6:.1f} MB")
        for label, seconds in t.items():
            print(f"  {label:<24} {seconds:7.2f} s")
        print(f"backup overhead  (backup / raw dump|zstd):        "
              f"{t['mysql_backup.backup'] / t['raw dump|zstd']:.2f}x")
        print(f"restore overhead (restore / raw zstd -dc|mariadb): "
              f"{t['mysql_backup.restore'] / t['raw zstd -dc|mariadb']:.2f}x")
        print(f"clone vs raw dump + raw load:                      "
              f"{t['mysql_backup.clone'] / (t['raw dump|zstd'] + t['raw zstd -dc|mariadb']):.2f}x")
    finally:
        db.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
