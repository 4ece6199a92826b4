"""galera_backup against the lab's real three-node cluster: a physical backup from a node
that takes no writes while a writer writes on another (no failed write, the node Synced
again after), verified in a scratch server against the checksums the cluster had at the
backup's position, a corrupt backup found out, and a node serving clients refused."""
import concurrent.futures
import json
import os
import threading
import time

import pytest

from lab import procs
from leapfrog_galera import GaleraError
from tests.loader import minion_modules


def _mods(cluster, node, cache, backups):
    pillar = {"leapfrog": {"galera": {"defaults_file": node.config, "size": 3},
                           "backups": {"dir": str(backups)},
                           "database": {"socket": node.socket, "user": "root",
                                        "password": cluster.root_password}}}
    return minion_modules(cache, pillar, ["galera", "galera_backup"])


@pytest.fixture
def data(galera_cluster):
    with galera_cluster.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE DATABASE IF NOT EXISTS lfgb")
        cur.execute("CREATE OR REPLACE TABLE lfgb.items (id INT AUTO_INCREMENT PRIMARY KEY, "
                    "name VARCHAR(40), n INT)")
        cur.execute("CREATE OR REPLACE TABLE lfgb.writes (id INT AUTO_INCREMENT PRIMARY KEY, "
                    "at DOUBLE)")
        cur.executemany("INSERT INTO lfgb.items (name, n) VALUES (%s, %s)",
                        [(f"item-{i}", i * 7) for i in range(2000)])
    yield
    with galera_cluster.connect() as conn, conn.cursor() as cur:
        cur.execute("DROP DATABASE lfgb")


class Writer(threading.Thread):
    """Autocommit INSERTs on one node until stopped: counts, failures, the longest one."""

    def __init__(self, node):
        super().__init__(daemon=True)
        self.node, self.done, self.failed, self.longest = node, 0, [], 0.0
        self.stop_event = threading.Event()

    def run(self):
        with self.node.connect() as conn, conn.cursor() as cur:
            while not self.stop_event.is_set():
                started = time.monotonic()
                try:
                    cur.execute("INSERT INTO lfgb.writes (at) VALUES (%s)", (time.time(),))
                    self.done += 1
                except Exception as exc:  # pylint: disable=broad-except
                    self.failed.append(str(exc))
                self.longest = max(self.longest, time.monotonic() - started)
                time.sleep(0.005)


def test_backup_from_a_quiet_node_while_another_takes_writes_then_verify(
        galera_cluster, data, tmp_path):
    n1, _, n3 = galera_cluster.nodes
    mods = _mods(galera_cluster, n3, tmp_path / "cache", tmp_path / "backups")
    writer = Writer(n1)
    writer.start()
    time.sleep(1)
    try:
        taken = mods["galera_backup.backup"](label="run-1")
    finally:
        time.sleep(1)
        writer.stop_event.set()
        writer.join()
    print(f"\nwriter during the backup: {writer.done} inserts, {len(writer.failed)} failed, "
          f"longest {writer.longest * 1000:.0f} ms; node paused {taken['paused_seconds']} s, "
          f"resynced in {taken['resync_seconds']} s, backup {taken['seconds']} s")
    assert writer.failed == [] and writer.done > 50
    assert taken["id"].endswith("-run-1") and taken["node"] == "n3" and taken["seqno"] > 0
    assert taken["tables"] >= 2
    assert (mods["galera.status"]()["state"], mods["galera.status"]()["desync"]) == \
        ("Synced", False)
    folder = tmp_path / "backups" / "galera" / taken["id"]
    manifest = json.loads((folder / "manifest.json").read_text())
    with n1.connect() as conn, conn.cursor() as cur:
        cur.execute("CHECKSUM TABLE lfgb.items")
        assert manifest["checksums"]["lfgb.items"] == cur.fetchone()[1]  # unchanged table
    assert mods["galera_backup.list"]()[0]["id"] == taken["id"]

    checked = mods["galera_backup.verify"](label="run-1")
    assert (checked["valid"], checked["problems"], checked["seqno"]) == \
        (True, [], taken["seqno"])
    assert not [p for p in (tmp_path / "backups" / "galera").iterdir()
                if p.name.startswith(".verify")]  # the scratch server's copy is gone

    # the scratch server's checksums really are compared: a manifest that says otherwise
    manifest["checksums"]["lfgb.items"] += 1
    (folder / "manifest.json").write_text(json.dumps(manifest))
    wrong = mods["galera_backup.verify"](taken["id"])
    assert not wrong["valid"]
    assert wrong["problems"] == [f"lfgb.items: checksum {manifest['checksums']['lfgb.items'] - 1}"
                                 f" (the cluster had {manifest['checksums']['lfgb.items']})"]
    # and a damaged file is found before any server starts
    ibdata = folder / "data" / "ibdata1"
    with open(ibdata, "r+b") as handle:
        handle.seek(4096)
        handle.write(b"\xff" * 16)
    damaged = mods["galera_backup.verify"](taken["id"])
    assert damaged == {"id": taken["id"], "valid": False,
                       "problems": ["ibdata1 sha256 differs"]}

    # prune keeps the newest; an older backup goes, a folder that is no backup stays
    older = folder.parent / "20260101T000000Z-run-0"
    older.mkdir()
    (older / "manifest.json").write_text((folder / "manifest.json").read_text())
    (folder.parent / "notes").mkdir()
    with pytest.raises(GaleraError, match=r"keep must be from 1 to 10000, got 0"):
        mods["galera_backup.prune"](keep=0)
    assert older.is_dir()
    assert mods["galera_backup.prune"](keep=1) == {"kept": [taken["id"]],
                                                    "removed": [older.name]}
    assert not older.exists() and folder.is_dir() and (folder.parent / "notes").is_dir()


def test_a_node_serving_clients_or_a_bad_label_is_refused(galera_cluster, data, tmp_path):
    n1 = galera_cluster.nodes[0]
    mods = _mods(galera_cluster, n1, tmp_path / "cache", tmp_path / "backups")
    with n1.connect() as client:  # a client of the cloud on n1
        with pytest.raises(GaleraError, match=r"refusing to back up from n1: it serves 1 "
                                              r"client session\(s\) \(root@.*take it out of "
                                              r"the DB frontend first"):
            mods["galera_backup.backup"](label="run-2")
        client.ping()
    with pytest.raises(GaleraError, match=r"invalid label '\.\./x'"):
        mods["galera_backup.backup"](label="../x")
    assert not (tmp_path / "backups" / "galera").exists() or \
        list((tmp_path / "backups" / "galera").iterdir()) == []
    with pytest.raises(GaleraError, match=r"no Galera backup '\.\./\.\./etc' in .*"
                                          r"galera_backup\.list"):
        mods["galera_backup.verify"]("../../etc")


def _checksum(node, *tables):
    with node.connect() as conn, conn.cursor() as cur:
        cur.execute(f"CHECKSUM TABLE {', '.join(tables)}")
        return {name: value for name, value in cur.fetchall()}


def test_the_whole_cluster_comes_back_to_the_backup(galera_cluster, data, tmp_path):
    n1, n2, n3 = galera_cluster.nodes
    mods = {node.name: _mods(galera_cluster, node, tmp_path / f"cache-{node.name}",
                             tmp_path / "backups") for node in galera_cluster.nodes}
    taken = mods["n3"]["galera_backup.backup"](label="run-3")
    at_backup = _checksum(n1, "lfgb.items", "lfgb.writes")
    # the cloud moves on after the backup: rows changed, a table dropped, a database made
    with n1.connect() as conn, conn.cursor() as cur:
        cur.execute("UPDATE lfgb.items SET n = n + 1 WHERE id < 100")
        cur.execute("DROP TABLE lfgb.writes")
        cur.execute("CREATE DATABASE lfgb_later")
    with pytest.raises(GaleraError, match=r"name the backup to restore: backup_id=ID or "
                                          r"label=RUN"):
        mods["n1"]["galera_backup.restore"]()
    with pytest.raises(GaleraError, match=r"refusing to restore on n1: its server runs; stop "
                                          r"every node of the cluster first"):
        mods["n1"]["galera_backup.restore"](label="run-3")
    assert all(node.running() for node in galera_cluster.nodes)  # nothing was changed

    for name in ("n3", "n2", "n1"):
        mods[name]["galera.stop"](force=True)
    backup_files = tmp_path / "backups" / "galera" / taken["id"] / "data"
    restored = mods["n1"]["galera_backup.restore"](label="run-3")
    assert (restored["restored"], restored["matches_backup"], restored["seqno"],
            restored["kept"]) == (True, True, taken["seqno"], None)
    assert not os.path.exists(n1.datadir + f".before-{taken['id']}")
    # as the rollback's plan does: the others join side by side (one donor: their SSTs
    # queue for it)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        joins = {name: pool.submit(mods[name]["galera.join"], fresh=True, timeout=300)
                 for name in ("n2", "n3")}
    for name, joining in joins.items():
        joined = joining.result()
        assert (joined["state"], joined["fresh"]) == ("Synced", True)
        assert not os.path.exists(galera_cluster.nodes[int(name[1]) - 1].datadir +
                                  ".before-sst")
    for node in galera_cluster.nodes:  # every node holds the backup's data, nothing later
        assert _checksum(node, "lfgb.items", "lfgb.writes") == at_backup
        with node.connect() as conn, conn.cursor() as cur:
            cur.execute("SHOW DATABASES LIKE 'lfgb_later'")
            assert cur.fetchall() == ()
    assert mods["n2"]["galera.status"]()["size"] == 3
    assert backup_files.is_dir()  # copy-back keeps the backup usable

    # a re-run of the rollback's join step: refused on a node that was not being joined,
    # finished (nothing restarted) on one whose fresh join outlived its caller (old copy aside)
    with pytest.raises(GaleraError, match=r"n3 is running: a fresh join replaces its data; "
                                          r"stop it first \(galera.stop\)"):
        mods["n3"]["galera.join"](fresh=True)
    pid = procs.read_pid(n3.pid_file)
    os.makedirs(n3.datadir + ".before-sst/lfgb")
    again = mods["n3"]["galera.join"](fresh=True, timeout=60)
    assert (again["changed"], again["state"], again["fresh"]) == (False, "Synced", True)
    assert "an earlier fresh join had started this node" in again["comment"]
    assert not os.path.exists(n3.datadir + ".before-sst") and procs.read_pid(n3.pid_file) == pid
