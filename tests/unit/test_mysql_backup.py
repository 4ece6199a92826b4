"""mysql_backup execution module, with loader dunders (no database server)."""
import gzip
import hashlib
import json
import os
import stat
from collections import namedtuple

import pymysql
import pytest

import leapfrog_errors
from tests.loader import load

mb = load("modules", "mysql_backup")

SECRET = 'pa"ss\\wo rd#;1'
PILLAR = {
    "leapfrog": {
        "database": {"host": "10.0.0.20", "port": 3307, "socket": "", "user": "admin",
                     "password": SECRET, "databases": ["nova", "nova_api"]},
        "backups": {"dir": "/srv/backups", "keep": 2},
    }
}


@pytest.fixture
def calls():
    return []


@pytest.fixture
def configure_loader_modules(calls):
    def run_all(argv, **kwargs):
        # what a CLI would see: the defaults file exists while it runs
        cnf = [a.split("=", 1)[1] for a in argv if a.startswith("--defaults-extra-file=")]
        text = open(cnf[0], encoding="utf-8").read() if cnf else ""
        mode = stat.S_IMODE(os.stat(cnf[0]).st_mode) if cnf else None
        calls.append({"argv": list(argv), "kwargs": kwargs, "cnf": text, "mode": mode})
        return {"retcode": 0, "stdout": "", "stderr": ""}

    return {mb: {"__salt__": {"cmd.run_all": run_all}, "__pillar__": PILLAR, "__opts__": {}}}


# --- __virtual__ ----------------------------------------------------------------------------
def test_virtual_needs_pymysql(monkeypatch):
    monkeypatch.setattr(mb, "HAS_PYMYSQL", False)
    ok, reason = mb.__virtual__()
    assert ok is False and "PyMySQL" in reason


def test_virtual_needs_a_dump_tool(monkeypatch):
    monkeypatch.setattr(mb, "_binary", lambda *names: None)
    ok, reason = mb.__virtual__()
    assert ok is False and "mariadb-dump" in reason


def test_virtual_name():
    assert mb.__virtual__() == "mysql_backup"


# --- connection -----------------------------------------------------------------------------
def test_connection_from_pillar_with_argument_override():
    params = mb._connection({"port": 3310, "__pub_fun": "mysql_backup.backup"})
    assert params == {"host": "10.0.0.20", "port": 3310, "socket": "", "user": "admin",
                      "password": SECRET}


def test_connection_defaults_without_pillar(monkeypatch):
    monkeypatch.setattr(mb, "__pillar__", {}, raising=False)
    params = mb._connection({})
    assert params == {"host": "localhost", "port": 3306, "socket": "", "user": "root",
                      "password": ""}


def test_unknown_argument_is_refused():
    with pytest.raises(leapfrog_errors.LeapfrogError, match="unknown argument.*pasword"):
        mb._connection({"pasword": "x"})


def test_defaults_file_is_private_quoted_and_removed():
    params = mb._connection({})
    with mb._defaults_file(params) as path:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        text = open(path, encoding="utf-8").read()
    assert not os.path.exists(path) and not os.path.exists(os.path.dirname(path))
    assert 'password = "pa\\"ss\\\\wo rd#;1"' in text
    assert "protocol = TCP" in text and "port = 3307" in text


def test_socket_wins_over_host():
    params = mb._connection({"socket": "/run/mysqld/mysqld.sock"})
    with mb._defaults_file(params) as path:
        text = open(path, encoding="utf-8").read()
    assert "protocol = SOCKET" in text and "/run/mysqld/mysqld.sock" in text
    assert mb._where(params) == "socket /run/mysqld/mysqld.sock"


def test_dump_passes_the_password_only_in_the_defaults_file(calls, tmp_path):
    raw = tmp_path / "nova.sql"
    raw.write_text("-- dump")
    mb._dump(mb._connection({}), "nova", str(raw))
    call = calls[0]
    argv = " ".join(call["argv"])
    assert SECRET not in argv and "wo rd" not in argv
    assert call["argv"][1].startswith("--defaults-extra-file=")
    assert "--single-transaction" in call["argv"] and call["argv"][-1] == "nova"
    assert call["kwargs"]["python_shell"] is False
    assert call["mode"] == 0o600 and "pa\\\"ss" in call["cnf"]


def test_load_fails_on_an_error_line(configure_loader_modules, monkeypatch, tmp_path):
    def run_all(argv, **kwargs):
        return {"retcode": 0, "stdout": "",
                "stderr": f"ERROR 1064 (42000) at line 3 in file: 'x.sql': syntax {SECRET}"}

    monkeypatch.setitem(mb.__salt__, "cmd.run_all", run_all)
    with pytest.raises(leapfrog_errors.CommandFailed) as info:
        mb._load(mb._connection({}), "nova", str(tmp_path / "x.sql"))
    assert "failed loading nova: ERROR 1064" in str(info.value)
    assert SECRET not in str(info.value)


def test_command_failure_text_is_scrubbed(configure_loader_modules, monkeypatch):
    def run_all(argv, **kwargs):
        return {"retcode": 2, "stdout": "", "stderr": f"mysqldump: oops {SECRET}\nline two"}

    monkeypatch.setitem(mb.__salt__, "cmd.run_all", run_all)
    with pytest.raises(leapfrog_errors.CommandFailed) as info:
        mb._dump(mb._connection({}), "nova", "/nonexistent/nova.sql")
    text = str(info.value)
    assert SECRET not in text and "******" in text and "\n" not in text


def _raise(code, message):
    def connect(**kwargs):
        raise pymysql.OperationalError(code, message)

    return connect


def test_wrong_password_is_one_line_without_the_password(monkeypatch):
    monkeypatch.setattr(mb.pymysql, "connect", _raise(
        1045, "Access denied for user 'admin'@'10.0.0.5' (using password: YES)"))
    with pytest.raises(mb.AccessDenied) as info:
        mb.checksums("nova")
    text = str(info.value)
    assert text == ("MariaDB at 10.0.0.20:3307 refused user 'admin' (wrong user or password; "
                    "the password is not shown): fix leapfrog:database:user/password")
    assert SECRET not in text


def test_unreachable_names_the_address(monkeypatch):
    monkeypatch.setattr(mb.pymysql, "connect", _raise(
        2003, "Can't connect to MySQL server on '10.0.0.20' ([Errno 111] Connection refused)"))
    with pytest.raises(mb.DatabaseUnreachable) as info:
        mb.checksums("nova")
    assert str(info.value).startswith("MariaDB at 10.0.0.20:3307 is unreachable (Can't connect")
    assert "\n" not in str(info.value)


def test_names_are_validated():
    with pytest.raises(leapfrog_errors.LeapfrogError, match="invalid databases name"):
        mb._names("nova; DROP DATABASE x")
    with pytest.raises(leapfrog_errors.LeapfrogError, match="invalid databases name"):
        mb._names(["--all-databases"])
    assert mb._names("nova, nova_api") == ["nova", "nova_api"]


def test_databases_default_to_pillar_and_are_required(monkeypatch):
    assert mb._databases(None) == ["nova", "nova_api"]
    monkeypatch.setattr(mb, "__pillar__", {}, raising=False)
    with pytest.raises(leapfrog_errors.LeapfrogError, match="no databases named"):
        mb._databases(None)


def test_backup_root_from_pillar():
    assert mb._backup_root(None) == "/srv/backups/mysql"
    assert mb._backup_root("/x/y") == "/x/y"


# --- free space -----------------------------------------------------------------------------
Usage = namedtuple("Usage", "total used free")


class FakeConn:
    """Just enough of a PyMySQL connection for backup's pre-checks."""

    def __init__(self, databases, size):
        self.databases = databases
        self.size = size
        self.rows = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def cursor(self):
        return self

    def execute(self, sql, args=None):
        if sql.startswith("SHOW DATABASES"):
            self.rows = [(d,) for d in self.databases]
        elif "VERSION()" in sql:
            self.rows = [("10.11.19-MariaDB",)]
        elif "SCHEMATA" in sql:
            self.rows = [("utf8mb4", "utf8mb4_general_ci")]
        elif "DATA_LENGTH" in sql:
            self.rows = [(self.size,)]
        else:
            raise AssertionError(f"unexpected SQL {sql}")

    def fetchone(self):
        return self.rows[0]

    def fetchall(self):
        return self.rows


def test_backup_refuses_before_starting_without_space(monkeypatch, tmp_path, calls):
    monkeypatch.setattr(mb, "_connect", lambda params, database=None: FakeConn(
        ["nova", "nova_api"], 5 * 1024 ** 3))
    monkeypatch.setattr(mb.shutil, "disk_usage", lambda path: Usage(10, 9, 1024 ** 3))
    with pytest.raises(mb.NotEnoughSpace) as info:
        mb.backup(backup_dir=str(tmp_path / "b"))
    assert str(info.value) == (
        f"not enough free space in {tmp_path / 'b'} for a backup of nova, nova_api: "
        "10.0 GiB needed, 1.0 GiB free; free space there or point leapfrog:backups:dir to a "
        "larger disk")
    assert calls == [] and not (tmp_path / "b").exists()


def test_backup_refuses_an_unknown_database(monkeypatch, tmp_path, calls):
    monkeypatch.setattr(mb, "_connect", lambda params, database=None: FakeConn(
        ["information_schema", "mysql", "nova"], 1))
    with pytest.raises(mb.UnknownDatabase) as info:
        mb.backup(databases="nova,novaa", backup_dir=str(tmp_path))
    assert str(info.value) == ("unknown database(s) novaa on 10.0.0.20:3307 (existing: nova): "
                               "fix the names or leapfrog:database:databases")
    assert calls == []


# --- verify / list / prune on hand-made backups ---------------------------------------------
def make_backup(root, backup_id, label=None, databases=("nova",), content=b"-- dump\n"):
    folder = root / backup_id
    folder.mkdir(parents=True)
    manifest = {"format": 1, "id": backup_id, "label": label, "compression": "gzip",
                "created": "2026-11-22T00:00:00+00:00", "server_version": "10.11",
                "databases": {}}
    for db in databases:
        path = folder / f"{db}.sql.gz"
        path.write_bytes(gzip.compress(content))
        manifest["databases"][db] = {
            "file": path.name, "bytes": path.stat().st_size, "raw_bytes": len(content),
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "charset": "utf8mb4", "collation": "utf8mb4_general_ci", "size_bytes": 1,
            "tables": {"t": {"rows": 1, "checksum": 1}}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_verify_ok(tmp_path):
    make_backup(tmp_path, "20261122T000000.000Z", databases=("nova", "nova_api"))
    result = mb.verify(backup_dir=str(tmp_path))
    assert result["valid"] is True and sorted(result["databases"]) == ["nova", "nova_api"]


def test_verify_detects_a_changed_file(tmp_path):
    folder = make_backup(tmp_path, "20261122T000000.000Z")
    with open(folder / "nova.sql.gz", "ab") as handle:
        handle.write(b"x")
    with pytest.raises(mb.BackupCorrupt) as info:
        mb.verify("20261122T000000.000Z", backup_dir=str(tmp_path))
    text = str(info.value)
    assert text.startswith("backup 20261122T000000.000Z is corrupt: nova.sql.gz: sha256 ")
    assert text.endswith("do not restore it, take a new backup (mysql_backup.backup)")


def test_verify_detects_a_file_that_does_not_decompress(tmp_path):
    folder = make_backup(tmp_path, "20261122T000000.000Z", content=b"x" * 100000)
    path = folder / "nova.sql.gz"
    path.write_bytes(path.read_bytes()[:-20])
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["databases"]["nova"]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(mb.BackupCorrupt, match="nova.sql.gz: does not decompress"):
        mb.verify(backup_dir=str(tmp_path))


def test_verify_unknown_backup_lists_known_ones(tmp_path):
    make_backup(tmp_path, "20261122T000000.000Z")
    with pytest.raises(mb.BackupNotFound) as info:
        mb.verify("nope", backup_dir=str(tmp_path))
    assert str(info.value) == f"no backup nope in {tmp_path} (have: 20261122T000000.000Z)"


def test_list_and_prune_keep_newest_and_skip_partial(tmp_path):
    for second in range(4):
        make_backup(tmp_path, f"20261122T00000{second}.000Z")
    (tmp_path / "20261122T000009.000Z.partial").mkdir()
    (tmp_path / "lost+found").mkdir()
    assert [b["id"] for b in mb.list_(backup_dir=str(tmp_path))] == [
        f"20261122T00000{s}.000Z" for s in range(4)]
    result = mb.prune(backup_dir=str(tmp_path))  # keep 2 from pillar
    assert result == {"kept": ["20261122T000002.000Z", "20261122T000003.000Z"],
                      "removed": ["20261122T000000.000Z", "20261122T000001.000Z"]}
    assert sorted(os.listdir(tmp_path)) == [
        "20261122T000002.000Z", "20261122T000003.000Z", "20261122T000009.000Z.partial",
        "lost+found"]


def test_prune_refuses_keep_zero(tmp_path):
    with pytest.raises(leapfrog_errors.LeapfrogError, match=r"\Akeep must be from 1 to 10000, got 0\Z"):
        mb.prune(keep=0, backup_dir=str(tmp_path))


def test_restore_refuses_a_database_not_in_the_backup(tmp_path):
    make_backup(tmp_path, "20261122T000000.000Z", databases=("nova",))
    with pytest.raises(mb.UnknownDatabase) as info:
        mb.restore(databases="glance", backup_dir=str(tmp_path))
    assert str(info.value) == ("database(s) glance not in backup 20261122T000000.000Z "
                               "(it holds: nova)")


def test_restore_target_needs_a_single_database(tmp_path):
    make_backup(tmp_path, "20261122T000000.000Z", databases=("nova", "nova_api"))
    with pytest.raises(leapfrog_errors.LeapfrogError, match="target names one database"):
        mb.restore(target="x", backup_dir=str(tmp_path))


def test_restore_refuses_a_corrupt_backup_before_connecting(tmp_path, monkeypatch):
    folder = make_backup(tmp_path, "20261122T000000.000Z")
    (folder / "nova.sql.gz").write_bytes(b"garbage")
    monkeypatch.setattr(mb, "_connect", lambda *a, **k: pytest.fail("connected"))
    with pytest.raises(mb.BackupCorrupt, match="is corrupt: nova.sql.gz: sha256"):
        mb.restore(backup_dir=str(tmp_path))


def test_no_backup_at_all(tmp_path):
    with pytest.raises(mb.BackupNotFound, match="no backup in .*take one with"):
        mb.restore(backup_dir=str(tmp_path / "empty"))


def test_differences_are_readable():
    expected = {"a": {"rows": 1, "checksum": 5}, "b": {"rows": 2, "checksum": 6}}
    found = {"a": {"rows": 1, "checksum": 5}, "b": {"rows": 3, "checksum": 7},
             "c": {"rows": 0, "checksum": 0}}
    assert mb._differences(expected, found) == ["b: rows 2 -> 3, checksum 6 -> 7",
                                                "c: not expected"]


def test_drop_clone_needs_an_underscore_suffix():
    with pytest.raises(leapfrog_errors.LeapfrogError, match=r"invalid suffix='': it must start with _"):
        mb.drop_clone("nova", suffix="")


def test_every_public_function_has_a_cli_example():
    public = [n for n in dir(mb) if callable(getattr(mb, n)) and not n.startswith("_")
              and getattr(getattr(mb, n), "__module__", None) == mb.__name__
              and not isinstance(getattr(mb, n), type)]
    assert "backup" in public and "list_" in public
    for name in public:
        assert "CLI Example:" in (getattr(mb, name).__doc__ or ""), name


def test_masked_pillar_of_salt_3008_gives_plain_values(monkeypatch):
    secret = pytest.importorskip("salt.utils.secret")
    monkeypatch.setattr(mb, "__pillar__", secret.hide(PILLAR), raising=False)
    params = mb._connection({})
    assert params["password"] == SECRET and params["port"] == 3307
    assert mb._databases(None) == ["nova", "nova_api"]


def test_latest_with_a_label_picks_the_newest_of_that_label(tmp_path):
    make_backup(tmp_path, "20261122T000000.000Z-run1", label="run1")
    make_backup(tmp_path, "20261122T000001.000Z-run1", label="run1")
    make_backup(tmp_path, "20261122T000002.000Z-run2", label="run2")
    assert mb.verify(label="run1", backup_dir=str(tmp_path))["id"] == "20261122T000001.000Z-run1"
    assert [b["id"] for b in mb.list_(backup_dir=str(tmp_path), label="run2")] == [
        "20261122T000002.000Z-run2"]
    with pytest.raises(mb.BackupNotFound, match="no backup labelled run3 in .*label=run3"):
        mb.show(label="run3", backup_dir=str(tmp_path))


def test_restore_targets():
    assert mb._targets(["nova", "nova_api"], None, "_check") == {
        "nova": "nova_check", "nova_api": "nova_api_check"}
    assert mb._targets(["nova"], "nova_old", None) == {"nova": "nova_old"}
    assert mb._targets(["nova"], None, None) == {"nova": "nova"}
    with pytest.raises(leapfrog_errors.LeapfrogError, match="invalid suffix"):
        mb._targets(["nova"], None, "; drop")


def test_a_prefixed_database_gets_its_services_purge_tool():
    purge = {"nova": "nova-manage", "nova_api": "nova-manage api", "cinder": "cinder-manage"}
    assert mb._purge_tool("lab_nova_api", purge) == "nova-manage api"
    assert mb._purge_tool("nova", purge) == "nova-manage"
    assert mb._purge_tool("lab_cinder", purge) == "cinder-manage"
    assert mb._purge_tool("novacinder", purge) is None
    with pytest.raises(leapfrog_errors.LeapfrogError, match="purge must map database names"):
        mb.precheck(purge=["nova-manage"])
