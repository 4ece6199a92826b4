"""openstack_db with loader dunders: fake venvs, a fake cmd.run_all, revisions patched."""
import os
import stat

import pytest

import leapfrog_errors
from tests.loader import load

openstack_db = load("modules", "openstack_db")
SECRET = "pa$$:w@rd"


def make_venv(root):
    venv = root / "2026.1"
    (venv / "bin").mkdir(parents=True)
    for tool in ("keystone-manage", "placement-manage", "glance-manage"):
        (venv / "bin" / tool).write_text("#!/bin/false\n")
        (venv / "bin" / tool).chmod(0o755)
    versions = venv / "lib" / "python3.11" / "site-packages" / "placement" / "db" / "sqlalchemy" / "alembic" / "versions"
    versions.mkdir(parents=True)
    down = None
    for rev in ("b4ed3a175331", "422ece571366", "611cd6dffd7b"):
        (versions / f"{rev}.py").write_text(f"revision = {rev!r}\ndown_revision = {down!r}\n")
        down = rev
    return str(venv)


class Fake:
    def __init__(self):
        self.calls, self.configs, self.rc = [], [], {}

    def run_all(self, argv, **kwargs):
        assert kwargs["python_shell"] is False
        tool, _flag, conf, *args = argv
        with open(conf) as handle:
            self.configs.append((stat.S_IMODE(os.stat(conf).st_mode), handle.read()))
        self.calls.append([os.path.basename(tool), *args])
        rc, err = self.rc.get(tuple(args), (0, ""))
        return {"retcode": rc, "stdout": "", "stderr": err}


@pytest.fixture
def fake():
    return Fake()


@pytest.fixture
def revisions(monkeypatch):
    values = {"now": ["27e647c0fad4", "47147121"]}
    monkeypatch.setattr(openstack_db._Call, "revisions", lambda self: values["now"])
    return values


@pytest.fixture
def configure_loader_modules(tmp_path, fake):
    pillar = {"leapfrog": {"releases": {"venvs": {"2026.1": make_venv(tmp_path)}},
                           "database": {"host": "10.0.0.20", "port": 3306, "user": "root",
                                        "password": SECRET}}}
    return {openstack_db: {"__salt__": {"cmd.run_all": fake.run_all}, "__pillar__": pillar}}


def test_virtual():
    assert openstack_db.__virtual__() == "openstack_db"


def test_rolling_keystone_runs_expand_migrate_contract(fake, revisions):
    ret = openstack_db.sync("keystone", stage="rolling", release="2026.1")
    assert fake.calls == [["keystone-manage", "db_sync", "--expand"],
                          ["keystone-manage", "db_sync", "--migrate"],
                          ["keystone-manage", "db_sync", "--contract"]]
    assert [s["stage"] for s in ret["stages"]] == ["expand", "migrate", "contract"]
    assert ret["changed"] is False


def test_config_holds_the_connection_in_the_service_section(fake, revisions):
    openstack_db.sync("placement", release="2026.1", database="placement_db")
    mode, text = fake.configs[0]
    assert mode == 0o600
    assert text.startswith("[placement_database]\nconnection = mysql+pymysql://root:"
                           "pa%24%24%3Aw%40rd@10.0.0.20:3306/placement_db?charset=utf8\n")
    assert all(SECRET not in " ".join(c) for c in fake.calls)


def test_tool_failure_is_one_line_without_password(fake, revisions):
    fake.rc[("db", "sync")] = (1, f"Traceback\nsqlalchemy.exc.OperationalError: (1045, "
                                  f"\"Access denied for user 'root' with {SECRET}\")")
    with pytest.raises(leapfrog_errors.LeapfrogError) as info:
        openstack_db.sync("glance", release="2026.1")
    text = str(info.value)
    assert text.startswith("glance-manage db sync exited 1: sqlalchemy.exc.OperationalError")
    assert SECRET not in text and "\n" not in text


def test_check_maps_exit_codes_to_the_next_step(fake, revisions):
    fake.rc[("db", "check")] = (4, "")
    ret = openstack_db.check("glance", release="2026.1")
    assert ret["next"] == "migrate" and ret["up_to_date"] is False
    fake.rc[("db_sync", "--check")] = (2, "")
    assert openstack_db.check("keystone", release="2026.1")["next"] == "expand"
    fake.rc[("db_sync", "--check")] = (1, "boom")
    with pytest.raises(leapfrog_errors.LeapfrogError, match="exited 1"):
        openstack_db.check("keystone", release="2026.1")


def test_placement_check_reads_its_migration_files(fake, revisions):
    revisions["now"] = ["422ece571366"]
    ret = openstack_db.check("placement", release="2026.1")
    assert ret == {"service": "placement", "current": ["422ece571366"], "heads": ["611cd6dffd7b"],
                   "up_to_date": False, "next": "sync"}
    assert fake.calls == []


def test_a_rehearsal_suffix_names_the_clone_never_production(fake, revisions):
    openstack_db.sync("keystone", stage="expand", release="2026.1", database="lfos_keystone",
                      suffix="_upgrade")
    assert "3306/lfos_keystone_upgrade?charset" in fake.configs[0][1]


@pytest.mark.parametrize("kwargs,message", [
    (dict(service="keystone", release="2026.1", suffix=""), "suffix '': use '_' then"),
    (dict(service="keystone", release="2026.1", suffix="_x`; DROP DATABASE nova; --"),
     "suffix '_x`; DROP DATABASE nova; --': use '_'"),
    (dict(service="keystone", release="2026.1", suffix="_x", config_file="/etc/k.conf"),
     "suffix and config_file together"),
    (dict(service="swift", release="2026.1"),
     "unknown service swift; known: keystone, glance, placement, neutron, cinder"),
    (dict(service="keystone", release="2023.1"), "unknown release 2023.1: not in pillar"),
    (dict(service="placement", release="2026.1", stage="contract"), "placement has no stage contract; it has: sync"),
    (dict(service="keystone", release="2026.1", stage="shrink"), "keystone has no stage shrink"),
    (dict(service="keystone", release="2026.1", passwd="x"), "unknown option passwd"),
])
def test_bad_inputs(fake, revisions, kwargs, message):
    with pytest.raises(leapfrog_errors.LeapfrogError, match=message.replace("(", r"\(")):
        openstack_db.sync(**kwargs)
    assert fake.calls == []
