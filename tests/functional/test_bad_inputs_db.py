"""Bad inputs to mysql_backup (module and states) against the real MariaDB: each gives ONE
line naming the argument, the value and what is accepted (a LeapfrogError, never a
traceback), and changes nothing: the test databases' checksums, the list of databases and
the backup folder are the same after the call as before.

``BAD_INPUTS`` is the parametrize source (a session-end hook can print ``len(BAD_INPUTS)``).
"""
import os

import pytest

import leapfrog_errors
from tests.functional.test_mysql_backup import API, NOVA, env, fn, q, sums  # noqa: F401

EXISTING = "latest"  # restore/verify calls that reach the backup use the newest one


def _mod(name, *args, **kwargs):
    return ("module", name, args, kwargs)


def _state(name, *args, **kwargs):
    return ("state", name, args, kwargs)


BAD_INPUTS = [
    # (id, call, expected message: the whole line or its start)
    ("port-abc", _mod("checksums", [NOVA], port="abc"),
     "port must be a whole number (from 1 to 65535), got 'abc'"),
    ("port-0", _mod("backup", port=0), "port must be from 1 to 65535, got 0"),
    ("port-70000", _mod("backup", port="70000"),
     "port must be from 1 to 65535, got '70000'"),
    ("port-bool", _mod("precheck", port=True), "port must be a whole number (from 1 to 65535), got True"),
    ("keep-abc", _mod("prune", keep="abc"), "keep must be a whole number (from 1 to 10000), got 'abc'"),
    ("keep-0", _mod("prune", keep=0), "keep must be from 1 to 10000, got 0"),
    ("keep-float", _mod("prune", keep=1.5), "keep must be a whole number (from 1 to 10000), got 1.5"),
    ("clients_timeout-nan", _mod("restore", EXISTING, force=True, clients_timeout="nan"),
     "clients_timeout must be a number (from 0 to 86400), got 'nan' (not finite)"),
    ("clients_timeout-neg", _mod("restore", EXISTING, force=True, clients_timeout=-1),
     "clients_timeout must be from 0 to 86400, got -1"),
    ("clients_timeout-inf", _mod("restore", EXISTING, force=True, clients_timeout=float("inf")),
     "clients_timeout must be a number (from 0 to 86400), got inf (not finite)"),
    ("archive_threshold-abc", _mod("precheck", archive_threshold="abc"),
     "archive_threshold must be a whole number (from 0 to 1000000000000), got 'abc'"),
    ("compression-lz4", _mod("backup", compression="lz4"),
     "compression must be one of zstd, gzip, got 'lz4'"),
    ("kill_clients-maybe", _mod("restore", EXISTING, force=True, kill_clients="maybe"),
     "kill_clients must be true or false, got 'maybe'"),
    ("force-maybe-restore", _mod("restore", EXISTING, force="maybe"),
     "force must be true or false, got 'maybe'"),
    ("force-maybe-clone", _mod("clone", [NOVA], force="maybe"),
     "force must be true or false, got 'maybe'"),
    ("keep_replaced-2", _mod("restore", EXISTING, force=True, keep_replaced=2),
     "keep_replaced must be true or false, got 2"),
    ("database-newline", _mod("backup", databases=f"{NOVA}\n"),
     f"invalid databases name(s) '{NOVA}\\n': use letters, digits, _ $ -"),
    ("database-list-newline", _mod("checksums", [f"{API}\n"]),
     f"invalid databases name(s) '{API}\\n'"),
    ("target-newline", _mod("restore", EXISTING, databases=[NOVA], target="mb_x\n"),
     "invalid target name(s) 'mb_x\\n'"),
    ("suffix-newline", _mod("clone", [NOVA], suffix="_up\n"),
     "invalid suffix='_up\\n': it must start with _ and hold only letters, digits and _"),
    ("suffix-no-underscore", _mod("clone", [NOVA], suffix="upgrade"),
     "invalid suffix='upgrade': it must start with _"),
    ("suffix-sql", _mod("drop_clone", [NOVA], suffix="_a;drop"), "invalid suffix='_a;drop'"),
    ("suffix-empty-drop", _mod("drop_clone", [NOVA], suffix=""), "invalid suffix=''"),
    ("label-newline", _mod("backup", label="x\n"), "invalid label 'x\\n': use letters, digits"),
    ("id-dotdot", _mod("restore", "../x", force=True),
     "invalid backup id '../x': an id is the name of a backup folder directly under "),
    ("id-absolute", _mod("verify", "/etc"), "invalid backup id '/etc'"),
    ("id-slash", _mod("show", "a/b"), "invalid backup id 'a/b'"),
    ("id-parent", _mod("verify", ".."), "invalid backup id '..'"),
    ("user-newline", _mod("checksums", [NOVA], user="root\nhost=evil"),
     "invalid user: 'root\\nhost=evil' holds a line break or control character"),
    ("password-newline", _mod("checksums", [NOVA], password="a\nb"),
     "invalid password: the password holds a line break or control character"),
    ("target-and-suffix", _mod("restore", EXISTING, databases=[NOVA], target="x", suffix="_y"),
     "pass target= or suffix=, not both"),
    ("target-mysql", _mod("restore", EXISTING, databases=[NOVA], target="mysql", force=True),
     "refusing to restore over mysql: it is a MariaDB system schema"),
    ("drop-production", _mod("drop_clone", [NOVA], suffix="_api"),
     f"refusing to drop {API}: it is a production database of the cluster"),
    ("clone-over-production", _mod("clone", [NOVA], suffix="_api", force=True),
     f"refusing to overwrite with a clone {API}: it is a production database"),
    ("state-max_age-nan", _state("present", "pre", databases=[NOVA], max_age="nan"),
     "max_age must be a number (from 0 to 1000000000), got 'nan' (not finite)"),
    ("state-force-maybe", _state("cloned", NOVA, force="maybe"),
     "force must be true or false, got 'maybe'"),
    ("state-clone-absent-production", _state("clone_absent", NOVA, suffix="_api"),
     f"refusing to drop {API}: it is a production database"),
]


def snapshot(env):
    with env["db"].connect() as conn:
        names = sorted(row[0] for row in q(conn, "SHOW DATABASES"))
    folder = env["backups"]
    return sums(env, NOVA, API), names, sorted(os.listdir(folder)) if folder.exists() else []


@pytest.fixture(scope="module")
def backed_up(env):
    return fn(env, "backup")(label="bad-inputs")


@pytest.mark.parametrize("call, message", [case[1:] for case in BAD_INPUTS],
                         ids=[case[0] for case in BAD_INPUTS])
def test_bad_input_is_one_line_and_changes_nothing(env, backed_up, call, message):
    kind, name, args, kwargs = call
    before = snapshot(env)
    if kind == "module":
        with pytest.raises(leapfrog_errors.LeapfrogError) as info:
            fn(env, name)(*args, **kwargs)
        text = str(info.value)
    else:
        ret = env["states"][f"mysql_backup.{name}"](*args, **kwargs)
        assert ret["result"] is False and ret["changes"] == {}
        text = ret["comment"]
    assert text.startswith(message)
    assert "\n" not in text and "Traceback" not in text
    assert snapshot(env) == before


def test_a_numeric_pillar_password_works(env, monkeypatch):
    with env["db"].connect() as conn:
        q(conn, "CREATE USER IF NOT EXISTS 'lf_num'@'%' IDENTIFIED BY '12345678'")
        q(conn, "CREATE USER IF NOT EXISTS 'lf_num'@'localhost' IDENTIFIED BY '12345678'")
        q(conn, "GRANT SELECT ON *.* TO 'lf_num'@'%'")
        q(conn, "GRANT SELECT ON *.* TO 'lf_num'@'localhost'")
    database = env["opts"]["pillar"]["leapfrog"]["database"]
    monkeypatch.setitem(database, "user", "lf_num")
    monkeypatch.setitem(database, "password", 12345678)  # YAML reads an all-digit password so
    assert fn(env, "checksums")([NOVA]) == sums(env, NOVA)
