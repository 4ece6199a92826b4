"""mysql_backup's safety against the real MariaDB: what a destructive call refuses (system
schemas, production databases, databases leapfrog did not create), restores that keep what
they replace until the restored copy is verified, and backups that are one snapshot of all
their databases while a writer inserts and updates rows."""
import json
import os
import shutil
import threading
import time
from collections import namedtuple

import pytest
from salt.exceptions import CommandExecutionError

from tests.functional.test_mysql_backup import API, NOVA, env, fn, q, sums  # noqa: F401

UNMARKED = f"{NOVA}_keep"
Usage = namedtuple("Usage", "total used free")


def databases(env):
    with env["db"].connect() as conn:
        return sorted(row[0] for row in q(conn, "SHOW DATABASES"))


def comment(env, name):
    with env["db"].connect() as conn:
        rows = q(conn, "SELECT SCHEMA_COMMENT FROM information_schema.SCHEMATA WHERE "
                       "SCHEMA_NAME = %s", (name,))
    return rows[0][0] if rows else None


@pytest.fixture
def unchanged(env):
    """Checksums of the production DBs, the unmarked DB and the list of databases (with the
    system schemas) must be the same after the test body as before."""
    with env["db"].connect() as conn:
        q(conn, f"CREATE DATABASE IF NOT EXISTS {UNMARKED}")
        q(conn, f"CREATE TABLE IF NOT EXISTS {UNMARKED}.notes (id INT PRIMARY KEY)")
        q(conn, f"INSERT IGNORE INTO {UNMARKED}.notes VALUES (1), (2)")
    before = (sums(env, NOVA, API, UNMARKED), databases(env))
    assert {"mysql", "information_schema", "performance_schema", "sys"} <= set(before[1])
    yield before
    assert (sums(env, NOVA, API, UNMARKED), databases(env)) == before
    with env["db"].connect() as conn:
        assert q(conn, "SELECT COUNT(*) FROM mysql.user")[0][0] >= 1


@pytest.mark.parametrize("call, kwargs, message", [
    ("clone", {"databases": [NOVA], "suffix": "_api", "force": True},
     f"refusing to overwrite with a clone {NOVA}_api: it is a production database of the "
     "cluster (leapfrog:database:databases or the backup's databases); choose a target or "
     "suffix that names no production database (e.g. suffix=_upgrade)"),
    ("drop_clone", {"databases": [NOVA], "suffix": "_api"},
     f"refusing to drop {NOVA}_api: it is a production database of the cluster"),
    ("clone", {"databases": [NOVA], "suffix": "_keep", "force": True},
     f"refusing to overwrite with a clone {UNMARKED}: it exists and leapfrog did not create "
     "it (no 'leapfrog' mark in its SCHEMA_COMMENT); choose another target/suffix, or drop it "
     "yourself if it really is a leftover"),
    ("clone", {"databases": [NOVA], "suffix": "_keep"},
     f"refusing to overwrite with a clone {UNMARKED}: it exists and leapfrog did not"),
    ("drop_clone", {"databases": [NOVA], "suffix": "_keep"},
     f"refusing to drop {UNMARKED}: it exists and leapfrog did not create it"),
])
def test_clone_and_drop_clone_refuse_production_and_unmarked_databases(env, unchanged, call,
                                                                       kwargs, message):
    with pytest.raises(CommandExecutionError) as info:
        fn(env, call)(**kwargs)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


@pytest.fixture(scope="module")
def nova_backup(env):
    with env["db"].connect() as conn:
        q(conn, "CREATE DATABASE IF NOT EXISTS mb_side")
        q(conn, "CREATE TABLE IF NOT EXISTS mb_side.t (id INT PRIMARY KEY)")
    return fn(env, "backup")(databases=[NOVA, "mb_side"], label="safety")


@pytest.mark.parametrize("kwargs, message", [
    ({"target": "mysql"}, "refusing to restore over mysql: it is a MariaDB system schema; "
                          "name another database (target=/suffix=)"),
    ({"target": "MySQL"}, "refusing to restore over MySQL: it is a MariaDB system schema"),
    ({"target": "information_schema"}, "refusing to restore over information_schema: it is a "
                                       "MariaDB system schema"),
    ({"target": "performance_schema"}, "refusing to restore over performance_schema: it is"),
    ({"target": "sys"}, "refusing to restore over sys: it is a MariaDB system schema"),
    ({"target": API}, f"refusing to restore over {API}: it is a production database"),
    ({"target": "mb_side"}, "refusing to restore over mb_side: it is a production database"),
    ({"target": UNMARKED}, f"refusing to restore over {UNMARKED}: it exists and leapfrog did "
                           "not create it"),
    ({"suffix": "_api"}, f"refusing to restore over {API}: it is a production database"),
])
def test_targeted_restore_refuses_system_production_and_unmarked(env, unchanged, nova_backup,
                                                                  kwargs, message):
    with pytest.raises(CommandExecutionError) as info:
        fn(env, "restore")(nova_backup["id"], databases=[NOVA], force=True, **kwargs)
    assert str(info.value).startswith(message)


def test_clone_is_marked_and_a_marked_clone_can_be_replaced_and_dropped(env, unchanged):
    fn(env, "clone")([NOVA], suffix="_mark")
    assert comment(env, f"{NOVA}_mark") == f"leapfrog clone of {NOVA}"
    again = fn(env, "clone")([NOVA], suffix="_mark", force=True)
    assert again[NOVA]["identical"] is True
    assert fn(env, "drop_clone")([NOVA], suffix="_mark") == {"dropped": [f"{NOVA}_mark"],
                                                             "absent": []}


def tamper(env, backup_id, table):
    path = env["backups"] / backup_id / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["databases"][NOVA]["tables"][table]["checksum"] += 1
    path.write_text(json.dumps(manifest))
    return manifest["databases"][NOVA]["tables"][table]["checksum"]


def test_a_restore_that_does_not_verify_leaves_the_original_untouched(env):
    made = fn(env, "backup")(databases=[NOVA], label="tampered")
    wrong = tamper(env, made["id"], "instances")
    with env["db"].connect() as conn:
        q(conn, f"DELETE FROM {NOVA}.instances WHERE id > 290")  # what the restore replaces
    before = (sums(env, NOVA), databases(env))
    with pytest.raises(CommandExecutionError) as info:
        fn(env, "restore")(made["id"], force=True)
    text = str(info.value)
    assert text.startswith(f"restore of {NOVA} stopped before replacing anything: the restored "
                           f"copy differs from the backup's manifest (instances: rows 300 -> "
                           f"300, checksum {wrong} -> ")
    assert text.endswith(f"{NOVA} is untouched; check the backup (mysql_backup.show) or take a "
                         "new one")
    assert (sums(env, NOVA), databases(env)) == before  # no staging DB left either


def test_restore_over_production_swaps_in_the_verified_copy_and_can_keep_the_old(env):
    made = fn(env, "backup")(databases=[NOVA], label="swap")
    backed_up = sums(env, NOVA)[NOVA]
    with env["db"].connect() as conn:
        q(conn, f"UPDATE {NOVA}.instances SET vcpus = 99 WHERE id < 5")
        q(conn, f"CREATE TABLE {NOVA}.added_later (id INT PRIMARY KEY)")
    changed = sums(env, NOVA)[NOVA]
    listed = databases(env)
    out = fn(env, "restore")(made["id"], force=True, keep_replaced=True)
    kept = out["databases"][NOVA]["kept"]
    assert kept.startswith(f"{NOVA}__lf") and out["matches_manifest"] is True
    assert sums(env, NOVA)[NOVA] == backed_up
    assert sums(env, kept)[kept] == changed  # the replaced tables, intact, where it says
    assert comment(env, kept) == f"leapfrog copy of {NOVA} replaced by restore {made['id']}"
    with env["db"].connect() as conn:  # foreign keys follow the tables they belong to
        assert q(conn, "SELECT COUNT(*) FROM information_schema.REFERENTIAL_CONSTRAINTS "
                       "WHERE CONSTRAINT_SCHEMA = %s", (NOVA,))[0][0] == 1
        q(conn, f"DROP DATABASE {kept}")
    assert databases(env) == listed
    out = fn(env, "restore")(made["id"], force=True)
    assert out["databases"][NOVA]["kept"] is None and databases(env) == listed


def test_restore_over_a_database_with_triggers_is_refused_before_anything_changes(env,
                                                                                  unchanged):
    made = fn(env, "backup")(databases=[API], label="trigger")
    with pytest.raises(CommandExecutionError) as info:
        fn(env, "restore")(made["id"], force=True)
    assert str(info.value) == (
        f"cannot restore over the existing {API} by swapping tables: {API} holds trigger "
        "cell_name_upper, which RENAME TABLE cannot move to another database; restore into "
        f"another name (target=) and compare, or drop {API} after a verified backup and "
        "restore again")


def test_restore_refuses_without_room_for_the_staging_copy(env, unchanged, monkeypatch):
    made = fn(env, "backup")(databases=[NOVA], label="space")
    datadir = env["db"].datadir
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(1, 1, 1024) if str(
        path).startswith(datadir) else real(path))
    with pytest.raises(CommandExecutionError) as info:
        fn(env, "restore")(made["id"], force=True)
    assert str(info.value).startswith(
        f"not enough free space in {os.path.join(datadir, '')} for the staged copy of {NOVA} "
        "(the databases it replaces stay until it is verified): ")
    assert str(info.value).endswith(
        "1.0 KiB free; free space on the database server's disk first")


def test_backup_is_one_snapshot_while_a_writer_inserts_and_updates(env):
    """A writer commits op k = (insert wlog k, bump wlog k//2, set nova counter and api
    mirror to k) continuously; the backup restored elsewhere must hold exactly ops 1..n of
    the writer's committed log, in both databases, and match its manifest."""
    with env["db"].connect() as conn:
        q(conn, f"CREATE TABLE {NOVA}.wlog (id INT PRIMARY KEY, v INT NOT NULL)")
        q(conn, f"CREATE TABLE {NOVA}.wcount (id INT PRIMARY KEY, n INT NOT NULL)")
        q(conn, f"INSERT INTO {NOVA}.wcount VALUES (1, 0)")
        q(conn, f"CREATE TABLE {API}.wmirror (id INT PRIMARY KEY)")
        q(conn, f"CREATE TABLE {NOVA}.filler (id INT PRIMARY KEY, x TEXT)")
        q(conn, f"INSERT INTO {NOVA}.filler SELECT seq, REPEAT('x', 1000) FROM {NOVA}.seq_1_to_40000")
    stop = threading.Event()
    committed = []  # (k, started, finished)

    def writer():
        conn = env["db"].connect()
        conn.autocommit(False)
        k = 0
        while not stop.is_set():
            k += 1
            started = time.monotonic()
            q(conn, f"INSERT INTO {NOVA}.wlog VALUES (%s, 0)", (k,))
            q(conn, f"UPDATE {NOVA}.wlog SET v = v + 1 WHERE id = %s", (k // 2,))
            q(conn, f"UPDATE {NOVA}.wcount SET n = %s", (k,))
            q(conn, f"INSERT INTO {API}.wmirror VALUES (%s)", (k,))
            conn.commit()
            committed.append((k, started, time.monotonic()))
        conn.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        time.sleep(0.5)
        began = time.monotonic()
        made = fn(env, "backup")(label="live")
        ended = time.monotonic()
        time.sleep(0.3)
    finally:
        stop.set()
        thread.join()
    during = [c for c in committed if c[2] > began and c[1] < ended]
    stall = max(f - s for _, s, f in during)
    ops_before = max(k for k, _, f in committed if f <= began)
    print(f"\n[snapshot backup] {len(during)} writer commits during a {ended - began:.2f} s "
          f"backup; lock_seconds {made['lock_seconds']:.3f}; longest writer stall "
          f"{stall * 1000:.1f} ms")
    manifest = json.loads((env["backups"] / made["id"] / "manifest.json").read_text())
    assert manifest["lock_seconds"] == made["lock_seconds"] < 5
    assert len(during) > 10 and stall < 5

    out = fn(env, "restore")(made["id"], suffix="_snap")
    assert out["matches_manifest"] is True
    with env["db"].connect() as conn:
        n = q(conn, f"SELECT n FROM {NOVA}_snap.wcount")[0][0]
        rows = dict(q(conn, f"SELECT id, v FROM {NOVA}_snap.wlog"))
        mirror = [r[0] for r in q(conn, f"SELECT id FROM {API}_snap.wmirror ORDER BY id")]
        q(conn, f"DROP DATABASE {NOVA}_snap")
        q(conn, f"DROP DATABASE {API}_snap")
        for table in ("wlog", "wcount", "filler"):
            q(conn, f"DROP TABLE {NOVA}.{table}")
        q(conn, f"DROP TABLE {API}.wmirror")
    assert ops_before <= n <= committed[-1][0]
    expected = {k: 0 for k in range(1, n + 1)}
    for k in range(1, n + 1):
        if k // 2 in expected:
            expected[k // 2] += 1
    assert rows == expected  # exactly the writer's first n commits, inserts and updates
    assert mirror == list(range(1, n + 1))  # the other database: the same instant


def test_a_format_1_backup_is_still_compared_with_checksum_table(env):
    """Backups taken before the row checksums recorded CHECKSUM TABLE: a restore of one
    compares with that method, and still refuses a copy that differs."""
    made = fn(env, "backup")(databases=[NOVA], label="format1")
    path = env["backups"] / made["id"] / "manifest.json"
    manifest = json.loads(path.read_text())
    with env["db"].connect() as conn:
        legacy = {}
        for table in manifest["databases"][NOVA]["tables"]:
            rows = q(conn, f"SELECT COUNT(*) FROM {NOVA}.{table}")[0][0]
            legacy[table] = {"rows": rows,
                             "checksum": q(conn, f"CHECKSUM TABLE {NOVA}.{table}")[0][1]}
    manifest.update(format=1, databases={NOVA: {**manifest["databases"][NOVA],
                                                 "tables": legacy}})
    del manifest["stats_method"]
    path.write_text(json.dumps(manifest))
    out = fn(env, "restore")(made["id"], target=f"{NOVA}_v1")
    assert out["matches_manifest"] is True
    wrong = tamper(env, made["id"], "services")
    with pytest.raises(CommandExecutionError, match=f"services: rows 4 -> 4, checksum {wrong}"):
        fn(env, "restore")(made["id"], target=f"{NOVA}_v1", force=True)
    assert comment(env, f"{NOVA}_v1") == f"leapfrog restore of {NOVA}"
    with env["db"].connect() as conn:
        q(conn, f"DROP DATABASE {NOVA}_v1")
