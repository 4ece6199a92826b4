"""openstack_db (keystone, placement, glance schema syncs) against the real MariaDB and the
real *-manage tools of 2024.1 and 2026.1, through Salt's loader. Each tool call costs
3-6 s, so the databases are created by 2024.1 once and upgraded to 2026.1 once."""
import pytest

from tests.loader import minion_modules

DATABASES = {"keystone": "lfkeystone", "placement": "lfplacement", "glance": "lfglance"}


@pytest.fixture(scope="module")
def env(mariadb, openstack_venvs, tmp_path_factory):
    with mariadb.connect() as conn, conn.cursor() as cur:
        for name in DATABASES.values():
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    base = tmp_path_factory.mktemp("openstack_db")
    mods = minion_modules(base / "cache", {"leapfrog": {
        "releases": {"venvs": dict(openstack_venvs)},
        "database": {"socket": mariadb.socket, "user": "root",
                     "password": mariadb.root_password}}}, ["openstack_db"])
    yield {"mods": mods, "db": mariadb}
    with mariadb.connect() as conn, conn.cursor() as cur:
        for name in DATABASES.values():
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")


def call(env, name, *args, **kwargs):
    return env["mods"][f"openstack_db.{name}"](*args, **kwargs)


@pytest.fixture(scope="module")
def created(env):
    """Every service's DB as a 2024.1 deployment leaves it."""
    return {service: call(env, "sync", service, release="2024.1", database=database)
            for service, database in DATABASES.items()}


def test_created_by_2024_1(created):
    for service, ret in created.items():
        assert ret["before"] is None, service
        assert ret["after"], service
        assert ret["changed"] is True
    assert created["glance"]["after"] == ["2024_1_contract01"]


def test_keystone_rolling_upgrade_to_2026_1(env, created):
    before = call(env, "check", "keystone", release="2026.1", database=DATABASES["keystone"])
    assert before["up_to_date"] is False and before["next"] == "expand"
    ret = call(env, "sync", "keystone", stage="rolling", release="2026.1",
               database=DATABASES["keystone"])
    assert [s["stage"] for s in ret["stages"]] == ["expand", "migrate", "contract"]
    assert ret["before"] == created["keystone"]["after"]
    assert ret["changed"] is True
    after = call(env, "check", "keystone", release="2026.1", database=DATABASES["keystone"])
    assert after["up_to_date"] is True and after["next"] is None
    assert after["current"] == ret["after"]


def test_placement_sync_to_2026_1(env, created):
    before = call(env, "check", "placement", release="2026.1", database=DATABASES["placement"])
    ret = call(env, "sync", "placement", release="2026.1", database=DATABASES["placement"])
    assert ret["before"] == created["placement"]["after"]
    assert ret["after"] == before["heads"]
    after = call(env, "check", "placement", release="2026.1", database=DATABASES["placement"])
    assert after["up_to_date"] is True
    assert ret["changed"] is (before["heads"] != before["current"])


def test_glance_sync_to_2026_1(env, created):
    # glance ships no schema migration after 2024.1: the 2026.1 sync is a checked no-op
    ret = call(env, "sync", "glance", release="2026.1", database=DATABASES["glance"])
    assert ret["before"] == ["2024_1_contract01"]
    assert ret["changed"] is False and ret["after"] == ret["before"]
    check = call(env, "check", "glance", release="2026.1", database=DATABASES["glance"])
    assert check["up_to_date"] is True and check["rc"] == 0
    assert call(env, "version", "glance", release="2026.1",
                database=DATABASES["glance"]) == ["2024_1_contract01"]


def test_bad_inputs_one_line(env, tmp_path):
    cases = [
        (dict(service="nova", release="2026.1"), "unknown service nova"),
        (dict(service="keystone", release="2023.1"), "unknown release 2023.1"),
        (dict(service="keystone", venv=str(tmp_path / "nope")), "does not exist"),
        (dict(service="placement", release="2026.1", stage="expand"), "placement has no stage expand"),
        (dict(service="glance", release="2026.1", socket="/nonexistent.sock",
              database=DATABASES["glance"]), "cannot connect to database lfglance at /nonexistent.sock"),
    ]
    for kwargs, expected in cases:
        with pytest.raises(Exception) as info:
            call(env, "sync", **kwargs)
        text = str(info.value)
        assert expected in text and "\n" not in text
        assert env["db"].root_password not in text
