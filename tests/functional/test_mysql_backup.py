"""mysql_backup against a real MariaDB (the session ``mariadb`` fixture), called through
Salt's own loader: backup -> drop -> restore, corruption, clones, pre-checks, bad inputs."""
import json
import logging
import os
import shutil
import sys
from collections import namedtuple

import pytest
import salt.config
import salt.loader
from salt.exceptions import CommandExecutionError

from tests.conftest import REPO

NOVA = "mb_nova"
API = "mb_nova_api"


def q(conn, sql, args=None):
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall()


def seed(conn):
    for db in (NOVA, API):
        q(conn, f"DROP DATABASE IF EXISTS {db}")
    q(conn, f"CREATE DATABASE {NOVA} CHARACTER SET utf8mb4")
    q(conn, f"CREATE DATABASE {API} CHARACTER SET utf8")
    q(conn, f"USE {NOVA}")
    q(conn, """CREATE TABLE services (id INT PRIMARY KEY AUTO_INCREMENT, host VARCHAR(255),
               `binary` VARCHAR(255), version INT, deleted INT NOT NULL DEFAULT 0)""")
    q(conn, """CREATE TABLE compute_nodes (id INT PRIMARY KEY AUTO_INCREMENT,
               service_id INT, host VARCHAR(255) NULL, hypervisor_hostname VARCHAR(255),
               cpu_allocation_ratio FLOAT, stats TEXT, deleted INT NOT NULL DEFAULT 0,
               FOREIGN KEY fk_service (service_id) REFERENCES services (id))""")
    q(conn, """CREATE TABLE instances (id INT PRIMARY KEY AUTO_INCREMENT, uuid CHAR(36),
               display_name VARCHAR(255), user_data MEDIUMTEXT, created_at DATETIME,
               vcpus INT, deleted INT NOT NULL DEFAULT 0)""")
    q(conn, """CREATE TABLE legacy_notes (id INT PRIMARY KEY, note VARCHAR(64))
               CHARACTER SET latin1""")
    q(conn, """CREATE TABLE shadow_blobs (id INT PRIMARY KEY, data BLOB)""")
    q(conn, "INSERT INTO services (host, `binary`, version, deleted) VALUES "
            "('cmp01','nova-compute',67,0),('cmp02','nova-compute',67,0),"
            "('ctl01','nova-conductor',67,0),('old','nova-compute',60,4)")
    q(conn, "INSERT INTO compute_nodes (service_id, host, hypervisor_hostname, "
            "cpu_allocation_ratio, stats, deleted) VALUES "
            "(1,'cmp01','cmp01.lab',16.0,'{}',0),(2,'cmp02','cmp02.lab',4.5,'{}',0),"
            "(NULL,NULL,'ghost1',1.0,NULL,0),(NULL,NULL,'ghost2',1.0,NULL,0),"
            "(NULL,NULL,'gone',1.0,NULL,3)")
    rows = [(f"00000000-0000-0000-0000-{i:012d}", f"vm-{i} \u00e9\u00e8 \U0001f600",
             "#cloud-config\n" + "x" * (i % 50), f"2024-01-{1 + i % 28:02d} 10:00:00",
             1 + i % 8, i if i % 3 == 0 else 0) for i in range(1, 301)]
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO instances (uuid, display_name, user_data, created_at, "
                        "vcpus, deleted) VALUES (%s,%s,%s,%s,%s,%s)", rows)
    q(conn, "INSERT INTO legacy_notes VALUES (1, 'caf\u00e9'), (2, 'na\u00efve')")
    q(conn, "INSERT INTO shadow_blobs VALUES (1, %s), (2, %s)",
      (bytes(range(256)), b"\x00\xff'\"\\\n"))
    q(conn, f"USE {API}")
    q(conn, "CREATE TABLE cell_mappings (id INT PRIMARY KEY AUTO_INCREMENT, name VARCHAR(255),"
            " database_connection TEXT)")
    q(conn, "INSERT INTO cell_mappings (name, database_connection) VALUES ('cell0', 'x'), "
            "('cell1', 'y')")
    q(conn, "CREATE TRIGGER cell_name_upper BEFORE INSERT ON cell_mappings FOR EACH ROW "
            "SET NEW.name = LOWER(NEW.name)")


@pytest.fixture(scope="module")
def env(mariadb, tmp_path_factory):
    """Salt's loader with the repo's _modules/_states and pillar pointing at the lab DB."""
    base = tmp_path_factory.mktemp("mysql_backup")
    backups = base / "backups"
    opts = salt.config.minion_config(None)
    opts.update({
        "file_client": "local",
        "cachedir": str(base / "cache"),
        "module_dirs": [os.path.join(REPO, "_modules")],
        "states_dirs": [os.path.join(REPO, "_states")],
        "grains": {"id": "dbs01"},
        "id": "dbs01",
        "test": False,
        "pillar": {"leapfrog": {
            "database": {**mariadb.pillar(), "databases": [NOVA, API]},
            "backups": {"dir": str(backups), "keep": 2},
        }},
    })
    mods = salt.loader.minion_mods(opts, whitelist=["cmd", "pillar", "config", "mysql_backup"])
    states = salt.loader.states(opts, mods, salt.loader.utils(opts), {},
                                whitelist=["mysql_backup"])
    test_opts = {**opts, "test": True}
    test_states = salt.loader.states(test_opts, mods, salt.loader.utils(test_opts), {},
                                     whitelist=["mysql_backup"])
    with mariadb.connect() as conn:
        seed(conn)
    yield {"mods": mods, "states": states, "test_states": test_states, "opts": opts, "backups": backups / "mysql",
           "db": mariadb}
    with mariadb.connect() as conn:
        for (name,) in q(conn, "SHOW DATABASES LIKE 'mb\\_%'"):
            q(conn, f"DROP DATABASE `{name}`")


def fn(env, name):
    return env["mods"][f"mysql_backup.{name}"]


def sums(env, *names):
    return fn(env, "checksums")(list(names))


def test_backup_drop_restore_gives_identical_rows_and_checksums(env):
    before = sums(env, NOVA, API)
    assert before[NOVA]["instances"]["rows"] == 300
    made = fn(env, "backup")(label="t1")
    assert sorted(made["databases"]) == sorted([API, NOVA])
    assert made["databases"][NOVA]["rows"] == 4 + 5 + 300 + 2 + 2
    manifest = json.loads((env["backups"] / made["id"] / "manifest.json").read_text())
    assert manifest["databases"][NOVA]["tables"] == before[NOVA]
    assert manifest["server_version"].startswith("10.")
    assert manifest["databases"][API]["charset"] in ("utf8", "utf8mb3")
    assert oct(os.stat(env["backups"] / made["id"]).st_mode & 0o777) == "0o700"

    with env["db"].connect() as conn:
        q(conn, f"DROP DATABASE {NOVA}")
        q(conn, f"DROP DATABASE {API}")
    result = fn(env, "restore")(made["id"])
    assert result["databases"][NOVA]["matches_manifest"] is True
    assert result["databases"][API]["matches_manifest"] is True
    assert result["matches_manifest"] is True
    assert sums(env, NOVA, API) == before
    with env["db"].connect() as conn:
        assert q(conn, f"SELECT note FROM {NOVA}.legacy_notes ORDER BY id") == (
            ("caf\u00e9",), ("na\u00efve",))
        assert q(conn, f"SELECT data FROM {NOVA}.shadow_blobs WHERE id = 1")[0][0] == bytes(
            range(256))
        assert q(conn, "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE "
                       "TRIGGER_SCHEMA = %s", (API,)) == (("cell_name_upper",),)
        assert q(conn, "SELECT COUNT(*) FROM information_schema.REFERENTIAL_CONSTRAINTS "
                       "WHERE CONSTRAINT_SCHEMA = %s", (NOVA,))[0][0] == 1


def test_restore_refuses_an_existing_database_unless_forced(env):
    made = fn(env, "backup")(databases=[NOVA], label="t2")
    with pytest.raises(CommandExecutionError) as info:
        fn(env, "restore")(made["id"])
    assert str(info.value) == (
        f"database(s) {NOVA} already exist on {env['db'].address}:{env['db'].port}: pass "
        "force=True to replace them, or choose another target/suffix")
    with env["db"].connect() as conn:
        q(conn, f"DELETE FROM {NOVA}.instances WHERE id > 250")
    result = fn(env, "restore")(made["id"], force=True)
    assert result["databases"][NOVA]["matches_manifest"] is True
    assert sums(env, NOVA)[NOVA]["instances"]["rows"] == 300


def test_restore_into_another_name(env):
    made = fn(env, "backup")(databases=NOVA, compression="gzip")
    assert made["databases"][NOVA]["file"].endswith(".sql.gz")
    fn(env, "restore")(made["id"], databases=NOVA, target="mb_nova_check")
    assert sums(env, "mb_nova_check")["mb_nova_check"] == sums(env, NOVA)[NOVA]


def test_corrupted_or_truncated_backup_is_detected_and_not_restored(env):
    made = fn(env, "backup")(databases=[NOVA], label="t3")
    folder = env["backups"] / made["id"]
    victim = folder / f"{NOVA}.sql.zst"
    good = victim.read_bytes()
    flipped = bytearray(good)
    flipped[len(flipped) // 2] ^= 0xFF
    victim.write_bytes(bytes(flipped))
    with pytest.raises(CommandExecutionError) as info:
        fn(env, "verify")(made["id"])
    text = str(info.value)
    assert text.startswith(f"backup {made['id']} is corrupt: {NOVA}.sql.zst: sha256 ")
    assert "\n" not in text

    with env["db"].connect() as conn:
        q(conn, f"INSERT INTO {NOVA}.legacy_notes VALUES (3, 'after backup')")
    before = sums(env, NOVA)
    with pytest.raises(CommandExecutionError, match="is corrupt"):
        fn(env, "restore")(made["id"], force=True)
    assert sums(env, NOVA) == before  # refused before touching the database

    # truncated during the write: the manifest matches the short file, decompression fails
    victim.write_bytes(good[: len(good) // 2])
    manifest = json.loads((folder / "manifest.json").read_text())
    import hashlib  # pylint: disable=import-outside-toplevel
    manifest["databases"][NOVA]["sha256"] = hashlib.sha256(victim.read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CommandExecutionError, match=f"{NOVA}.sql.zst: does not decompress"):
        fn(env, "restore")(made["id"], force=True)
    assert sums(env, NOVA) == before
    with env["db"].connect() as conn:
        q(conn, f"DELETE FROM {NOVA}.legacy_notes WHERE id = 3")


def test_clone_is_independent_of_the_source(env):
    source = sums(env, NOVA)[NOVA]
    result = fn(env, "clone")([NOVA])
    assert result[NOVA]["target"] == f"{NOVA}_upgrade" and result[NOVA]["identical"] is True
    assert sums(env, f"{NOVA}_upgrade")[f"{NOVA}_upgrade"] == source
    with env["db"].connect() as conn:
        q(conn, f"UPDATE {NOVA}_upgrade.instances SET vcpus = vcpus + 1 WHERE id < 10")
        q(conn, f"DELETE FROM {NOVA}_upgrade.compute_nodes WHERE host IS NULL")
        q(conn, f"ALTER TABLE {NOVA}_upgrade.instances ADD COLUMN extra INT")
    assert sums(env, NOVA)[NOVA] == source
    clone = sums(env, f"{NOVA}_upgrade")[f"{NOVA}_upgrade"]
    assert clone["instances"]["checksum"] != source["instances"]["checksum"]
    assert clone["compute_nodes"]["rows"] == 2

    with pytest.raises(CommandExecutionError, match=f"{NOVA}_upgrade already exist.*force=True"):
        fn(env, "clone")([NOVA])
    assert fn(env, "drop_clone")([NOVA]) == {"dropped": [f"{NOVA}_upgrade"], "absent": []}
    assert fn(env, "exists")([NOVA, f"{NOVA}_upgrade"]) == {NOVA: True,
                                                            f"{NOVA}_upgrade": False}


def test_precheck_finds_latin1_null_hosts_and_soft_deleted_rows(env):
    result = fn(env, "precheck")(archive_threshold=50, purge={
        "nova": "nova-manage db purge", "cinder": "cinder-manage db purge <days>"})
    assert result["ok"] is False
    assert [(c["database"], c["table"]) for c in result["charset"]] == [(NOVA, "legacy_notes")]
    assert result["charset"][0]["columns"] == ["note (latin1)"]
    assert result["null_compute_hosts"] == {NOVA: 2}
    assert result["soft_deleted"] == {NOVA: {"instances": 100, "services": 1,
                                             "compute_nodes": 1}}
    assert result["problems"] == [
        f"1 table(s) not in utf8/utf8mb4: {NOVA}.legacy_notes (latin1_swedish_ci); convert them"
        " (ALTER TABLE ... CONVERT TO CHARACTER SET utf8mb4) before the upgrade",
        f"{NOVA}.compute_nodes has 2 row(s) with host NULL: they show up as duplicate "
        "hypervisors; set host from the service record or delete the stale rows before the "
        "upgrade",
    ]
    # soft-deleted rows lengthen a run, they break nothing: a note naming its service's tool
    assert (f"{NOVA} holds 102 soft-deleted row(s) (instances 100, compute_nodes 1, services "
            "1): purging them first (nova-manage db purge) shortens the migrations and the "
            "backup") in result["notes"]
    assert fn(env, "precheck")([API])["ok"] is True


def test_wrong_password_is_refused_without_echoing_it(env, caplog):
    secret = "Wr0ng-But-Secret-42"
    caplog.set_level(logging.DEBUG)
    with pytest.raises(CommandExecutionError) as info:
        fn(env, "backup")(password=secret)
    text = str(info.value)
    assert text == (f"MariaDB at {env['db'].address}:{env['db'].port} refused user 'root' "
                    "(wrong user or password; the password is not shown): fix "
                    "leapfrog:database:user/password")
    assert secret not in caplog.text


def test_unreachable_database(env):
    with pytest.raises(CommandExecutionError) as info:
        fn(env, "precheck")(host="127.0.0.1", port=1)
    text = str(info.value)
    assert text.startswith("MariaDB at 127.0.0.1:1 is unreachable (")
    assert text.endswith("start it or fix leapfrog:database host/port/socket")
    with pytest.raises(CommandExecutionError, match="MariaDB at socket /nonexistent.sock is "
                                                    "unreachable"):
        fn(env, "precheck")(socket="/nonexistent.sock")


def test_unknown_database(env):
    with pytest.raises(CommandExecutionError) as info:
        fn(env, "backup")(databases=[NOVA, "mb_novaa"])
    assert str(info.value).startswith(
        f"unknown database(s) mb_novaa on {env['db'].address}:{env['db'].port} (existing: ")
    assert not any(p.name.endswith(".partial") for p in env["backups"].iterdir())


Usage = namedtuple("Usage", "total used free")


def test_not_enough_space_is_refused_before_starting(env, monkeypatch):
    before = sorted(os.listdir(env["backups"]))
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(1, 1, 1024))
    with pytest.raises(CommandExecutionError) as info:
        fn(env, "backup")()
    assert str(info.value).startswith(
        f"not enough free space in {env['backups']} for a backup of {NOVA}, {API}: ")
    assert str(info.value).endswith(
        "1.0 KiB free; free space there or point leapfrog:backups:dir to a larger disk")
    assert sorted(os.listdir(env["backups"])) == before


def test_socket_connection_and_secrets_stay_out_of_argv_logs_and_returns(env, caplog,
                                                                          monkeypatch):
    cmdmod = sys.modules["salt.loaded.int.module.cmdmod"]
    argvs = []
    real_run = cmdmod._run

    def recording_run(cmd, *args, **kwargs):
        argvs.append(list(cmd))
        return real_run(cmd, *args, **kwargs)

    monkeypatch.setattr(cmdmod, "_run", recording_run)
    caplog.set_level(logging.DEBUG)
    password = env["db"].root_password
    made = fn(env, "backup")(databases=[API], socket=env["db"].socket, label="sock")
    restored = fn(env, "restore")(made["id"], target="mb_api_sock", socket=env["db"].socket)
    assert restored["databases"][API]["matches_manifest"] is True
    dumps = [a for a in argvs if a[0].endswith(("mariadb-dump", "mysqldump"))]
    loads = [a for a in argvs if a[0].endswith(("/mariadb", "/mysql"))]
    assert dumps and loads
    for argv in dumps + loads:
        assert argv[1].startswith("--defaults-extra-file=")
        assert not os.path.exists(argv[1].split("=", 1)[1])  # removed afterwards
    assert password not in json.dumps(argvs)
    assert "Executing command" in caplog.text and password not in caplog.text
    assert password not in json.dumps(made) + json.dumps(restored)
    manifest = (env["backups"] / made["id"] / "manifest.json").read_text()
    assert password not in manifest


def test_list_and_prune(env):
    listed = fn(env, "list")()
    assert len(listed) >= 3 and [b["id"] for b in listed] == sorted(b["id"] for b in listed)
    result = fn(env, "prune")()  # keep 2 from pillar
    assert result["kept"] == [b["id"] for b in listed[-2:]]
    assert [b["id"] for b in fn(env, "list")()] == result["kept"]


def test_states_present_cloned_and_clone_absent(env):
    present = env["states"]["mysql_backup.present"]
    ret = env["test_states"]["mysql_backup.present"]("pre-upgrade", databases=[API])
    assert ret["result"] is None and ret["comment"] == f"Would back up {API} with label pre-upgrade"
    ret = env["test_states"]["mysql_backup.cloned"](API)
    assert ret["result"] is None and ret["comment"] == (
        f"Would create {API}_upgrade as a clone of {API}")
    assert fn(env, "exists")([f"{API}_upgrade"]) == {f"{API}_upgrade": False}
    assert not [b for b in fn(env, "list")() if b["label"] == "pre-upgrade"]
    ret = present("pre-upgrade", databases=[API])
    assert ret["result"] is True and ret["changes"]["new"]["id"].endswith("-pre-upgrade")
    again = present("pre-upgrade", databases=[API])
    assert again["result"] is True and again["changes"] == {}
    assert fn(env, "verify")(label="pre-upgrade")["id"] == ret["changes"]["new"]["id"]

    cloned = env["states"]["mysql_backup.cloned"]
    assert cloned(API)["changes"]["new"]["clone"] == f"{API}_upgrade"
    assert cloned(API)["changes"] == {}
    with env["db"].connect() as conn:
        q(conn, f"INSERT INTO {API}_upgrade.cell_mappings (name) VALUES ('cell2')")
    assert cloned(API)["result"] is False
    assert cloned(API, force=True)["result"] is True
    assert env["states"]["mysql_backup.clone_absent"](API)["changes"] == {
        "old": f"{API}_upgrade", "new": None}


def test_schema_fingerprint_ignores_live_writes_and_sees_migrations(env):
    """The rehearsal's proof on a live cloud: rows written by running services leave the
    fingerprint alone; a migration (DDL or a new alembic revision) changes it."""
    db = "mb_schema"
    with env["db"].connect() as conn:
        q(conn, f"CREATE DATABASE {db}")
        q(conn, f"CREATE TABLE {db}.services (id INT PRIMARY KEY AUTO_INCREMENT, host TEXT)")
        q(conn, f"CREATE TABLE {db}.alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
        q(conn, f"INSERT INTO {db}.alembic_version VALUES ('13863f4e1612')")
        before = fn(env, "schema")([db])
        q(conn, f"INSERT INTO {db}.services (host) VALUES ('cmp01'), ('cmp02')")
        conn.commit()
        assert fn(env, "schema")([db]) == before
        q(conn, f"UPDATE {db}.alembic_version SET version_num = '2903cd72dc14'")
        conn.commit()
        after_sync = fn(env, "schema")([db])
        assert after_sync[db]["alembic_version"]["rows"] == ["('2903cd72dc14',)"]
        assert after_sync != before
        q(conn, f"ALTER TABLE {db}.services ADD COLUMN uuid CHAR(36)")
        assert fn(env, "schema")([db])[db]["services"] != before[db]["services"]


def test_precheck_notes_nova_own_latin1_tables_without_failing(env):
    # nova's initial migrations create its legacy placement tables in latin1: a real
    # deployment has them, so they must not block every upgrade
    with env["db"].connect() as conn:
        q(conn, f"CREATE TABLE {API}.allocations (id INT PRIMARY KEY) CHARACTER SET latin1")
    try:
        result = fn(env, "precheck")([API])
        assert result["ok"] is True and result["charset"] == []
        assert result["notes"] == ["1 table(s) in latin1 created so by nova's own initial "
                                   "migrations (legacy placement tables, unused since "
                                   "placement moved out): left as they are"]
    finally:
        with env["db"].connect() as conn:
            q(conn, f"DROP TABLE {API}.allocations")


def test_restore_waits_for_other_sessions_then_refuses_naming_them(env):
    made = fn(env, "backup")([NOVA])
    writer = env["db"].connect()
    try:
        q(writer, f"USE {NOVA}")
        with pytest.raises(CommandExecutionError,
                           match=rf"1 other session\(s\) still use the databases to restore "
                                 rf"after 1 s \(root@localhost on {NOVA}\): stop the services"):
            fn(env, "restore")(made["id"], force=True, clients_timeout=1)
    finally:
        writer.close()
    assert fn(env, "restore")(made["id"], force=True, clients_timeout=5)["matches_manifest"]


def test_restore_can_kill_leftover_sessions_and_names_them(env):
    made = fn(env, "backup")([NOVA])
    leftover = env["db"].connect()
    try:
        q(leftover, f"USE {NOVA}")
        out = fn(env, "restore")(made["id"], force=True, clients_timeout=1, kill_clients=True)
    finally:
        try:
            leftover.close()
        except Exception:  # pylint: disable=broad-except  (killed by the restore)
            pass
    assert out["killed_sessions"] == [f"root@localhost on {NOVA}"]
    assert out["matches_manifest"] is True
