"""What an operator sees from ``salt-call --local mysql_backup.*`` against the real MariaDB:
pillar ``leapfrog:database`` read on the minion, JSON returns, one-line errors, no password."""
import json
import os
import subprocess
import sys

import pytest
import yaml

from tests.conftest import REPO

SALT_CALL = os.path.join(os.path.dirname(sys.executable), "salt-call")


@pytest.fixture(scope="module")
def minion(mariadb, tmp_path_factory):
    base = tmp_path_factory.mktemp("mb_cli")
    (base / "pillar").mkdir()
    (base / "files").mkdir()
    (base / "pillar" / "top.sls").write_text("base:\n  '*': [db]\n")
    root = base / "root"
    (base / "minion").write_text(yaml.safe_dump({
        "id": "dbs01", "file_client": "local", "root_dir": str(root),
        "cachedir": str(root / "cache"), "pki_dir": str(root / "pki"),
        "log_file": str(root / "minion.log"), "log_level_logfile": "debug",
        "module_dirs": [os.path.join(REPO, "_modules")],
        "states_dirs": [os.path.join(REPO, "_states")],
        "pillar_roots": {"base": [str(base / "pillar")]},
        "file_roots": {"base": [str(base / "files")]},
    }))
    with mariadb.connect() as conn, conn.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS mbcli")
        cur.execute("CREATE DATABASE mbcli")
        cur.execute("CREATE TABLE mbcli.flavors (id INT PRIMARY KEY, name VARCHAR(32))")
        cur.execute("INSERT INTO mbcli.flavors VALUES (1, 'm1.tiny'), (2, 'm1.small')")

    def call(*args, password=None):
        (base / "pillar" / "db.sls").write_text(yaml.safe_dump({"leapfrog": {
            "database": {**mariadb.pillar(), "password": password or mariadb.root_password,
                         "databases": ["mbcli"]},
            "backups": {"dir": str(base / "backups")},
        }}))
        env = dict(os.environ, PYTHONPATH=os.path.join(REPO, "_utils"))
        proc = subprocess.run([SALT_CALL, "-c", str(base), "--local", "--out=json", *args],
                              capture_output=True, text=True, env=env, timeout=120,
                              check=False)
        return proc

    call.log = root / "minion.log"
    yield call
    with mariadb.connect() as conn, conn.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS mbcli")
        cur.execute("DROP DATABASE IF EXISTS mbcli_upgrade")


def test_backup_and_verify_from_salt_call(minion, mariadb):
    proc = minion("mysql_backup.backup", "label=cli")
    assert proc.returncode == 0, proc.stderr
    made = json.loads(proc.stdout)["local"]
    assert made["databases"]["mbcli"]["rows"] == 2
    proc = minion("mysql_backup.verify", made["id"])
    assert proc.returncode == 0 and json.loads(proc.stdout)["local"]["valid"] is True
    text = proc.stdout + proc.stderr + minion.log.read_text()
    assert mariadb.root_password not in text


def test_wrong_password_from_salt_call_is_one_line_without_it(minion, mariadb):
    secret = "Wr0ng-Secret-From-Pillar"
    proc = minion("mysql_backup.backup", password=secret)
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        f"Error running 'mysql_backup.backup': MariaDB at {mariadb.address}:{mariadb.port} refused user 'root' "
                   "(wrong user or password; the password is not shown): fix "
                   "leapfrog:database:user/password")
    assert secret not in proc.stdout + proc.stderr + minion.log.read_text()


def test_existing_clone_is_refused_from_salt_call(minion, mariadb):
    assert minion("mysql_backup.clone").returncode == 0
    proc = minion("mysql_backup.clone")
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        f"Error running 'mysql_backup.clone': database(s) mbcli_upgrade already exist on {mariadb.address}:{mariadb.port}: "
        "pass force=True to replace them, or choose another target/suffix")
