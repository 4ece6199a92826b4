"""openstack_db for neutron and cinder against the real MariaDB and the real
neutron-db-manage / cinder-manage of 2024.1 and 2026.1 (each in a venv of its own, as the
pillar ``leapfrog:<service>:venvs`` names them), through Salt's loader: a 2024.1 database
taken to 2026.1 the way a rolling upgrade does (neutron expand before the new servers,
contract once no old one runs; cinder sync, then its online data migrations), and the
offline-migration check that decides whether a rolling hop is possible."""
import pytest

from tests.loader import minion_modules

DATABASES = {"neutron": "lfneutron", "cinder": "lfcinder", "fresh": "lfneutron_fresh"}
# FACTS.md: neutron's heads per release (contract unchanged since 2024.1), cinder's head
NEUTRON_EXPAND = {"2024.1": "0e6eff810791", "2026.1": "b1bca967e19d"}
NEUTRON_CONTRACT = "5c85685d616d"
CINDER_HEAD = "9c74c1c6971f"


@pytest.fixture(scope="module")
def env(mariadb, service_venvs, tmp_path_factory):
    def recreate(drop_only=False):
        with mariadb.connect() as conn, conn.cursor() as cur:
            for name in DATABASES.values():
                cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
                if not drop_only:
                    cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")

    recreate()
    base = tmp_path_factory.mktemp("neutron_cinder_db")
    mods = minion_modules(base / "cache", {"leapfrog": {
        "neutron": {"venvs": service_venvs["neutron"]},
        "cinder": {"venvs": service_venvs["cinder"]},
        "database": {"socket": mariadb.socket, "user": "root",
                     "password": mariadb.root_password}}}, ["openstack_db"])
    yield mods
    recreate(drop_only=True)


def call(mods, name, *args, **kwargs):
    return mods[f"openstack_db.{name}"](*args, **kwargs)


def test_neutron_2024_1_to_2026_1_expand_then_contract(env):
    db = DATABASES["neutron"]
    created = call(env, "sync", "neutron", release="2024.1", database=db)
    assert created["before"] is None
    assert created["after"] == sorted([NEUTRON_EXPAND["2024.1"], NEUTRON_CONTRACT])
    before = call(env, "check", "neutron", release="2026.1", database=db)
    assert before["up_to_date"] is False and before["next"] == "expand"
    assert before["heads"] == sorted([NEUTRON_EXPAND["2026.1"], NEUTRON_CONTRACT])
    # no contract migration between 2024.1 and 2026.1: a rolling hop is possible
    assert call(env, "offline_migrations", "neutron", release="2026.1",
                database=db)["pending"] is False
    expanded = call(env, "sync", "neutron", stage="expand", release="2026.1", database=db)
    assert expanded["after"] == sorted([NEUTRON_EXPAND["2026.1"], NEUTRON_CONTRACT])
    assert call(env, "check", "neutron", release="2026.1", database=db)["up_to_date"] is True
    contracted = call(env, "sync", "neutron", stage="contract", release="2026.1", database=db)
    assert contracted["changed"] is False and contracted["after"] == expanded["after"]


def test_neutron_contract_pending_means_offline(env):
    """A database whose contract branch lags the code: every neutron server must stop."""
    db = DATABASES["fresh"]
    call(env, "sync", "neutron", stage="expand", release="2026.1", database=db)
    check = call(env, "check", "neutron", release="2026.1", database=db)
    assert check["next"] == "contract" and check["current"] == [NEUTRON_EXPAND["2026.1"]]
    assert call(env, "offline_migrations", "neutron", release="2026.1",
                database=db)["pending"] is True


def test_cinder_sync_and_online_migrations(env):
    db = DATABASES["cinder"]
    created = call(env, "sync", "cinder", release="2024.1", database=db)
    assert created["after"] == [CINDER_HEAD]
    check = call(env, "check", "cinder", release="2026.1", database=db)
    assert check == {"service": "cinder", "current": [CINDER_HEAD], "heads": [CINDER_HEAD],
                     "up_to_date": True, "next": None}
    synced = call(env, "sync", "cinder", release="2026.1", database=db)
    assert synced["changed"] is False
    online = call(env, "sync", "cinder", stage="online", release="2026.1", database=db)
    assert [s["stage"] for s in online["stages"]] == ["online"]
    # a tool without an offline check says so rather than guessing
    assert call(env, "offline_migrations", "cinder", release="2026.1",
                database=db)["pending"] is None


def test_neutron_and_cinder_bad_inputs_name_the_fix(env):
    with pytest.raises(Exception, match="neutron has no stage migrate; it has: sync, "
                                        "expand, contract, rolling"):
        call(env, "sync", "neutron", stage="migrate", release="2026.1",
             database=DATABASES["neutron"])
    with pytest.raises(Exception, match="unknown release 2023.1: not in pillar"):
        call(env, "check", "cinder", release="2023.1", database=DATABASES["cinder"])
