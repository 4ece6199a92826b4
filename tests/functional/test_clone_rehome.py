"""clone_rehome against the real MariaDB and keystone's real schema (2024.1's
keystone-manage db_sync): a rehearsal's keystone clone sends its clients to the throwaway
controller; production's catalog, an unmarked database and bad input are refused with
nothing changed."""
import pytest

import leapfrog_errors
from tests.loader import minion_modules

PRODUCTION = "lfrhkeystone"
CLONE = f"{PRODUCTION}_upgrade"
VIP, THROWAWAY = "127.0.1.10", "127.0.1.41"
ENDPOINTS = [  # (interface, url): the VIP's, and one elsewhere (left alone)
    ("public", f"http://{VIP}:5000/v3"), ("internal", f"http://{VIP}:5000/v3"),
    ("admin", f"http://{VIP}:5000/v3"), ("public", f"http://{VIP}:8774/v2.1/%(tenant_id)s"),
    ("public", "https://images.example.org:9292"),
]


@pytest.fixture(scope="module")
def env(mariadb, openstack_venvs, tmp_path_factory):
    def drop():
        with mariadb.connect() as conn, conn.cursor() as cur:
            for name in (PRODUCTION, CLONE, "lfrhstranger_upgrade"):
                cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    drop()
    with mariadb.connect() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{PRODUCTION}` CHARACTER SET utf8mb4")
    mods = minion_modules(tmp_path_factory.mktemp("clone_rehome") / "cache", {"leapfrog": {
        "releases": {"venvs": dict(openstack_venvs)},
        "keystone": {"database": PRODUCTION},
        "database": {"socket": mariadb.socket, "user": "root",
                     "password": mariadb.root_password, "databases": [PRODUCTION]}}},
        ["openstack_db", "mysql_backup", "clone_rehome"])
    mods["openstack_db.sync"]("keystone", release="2024.1")  # keystone's real tables
    with mariadb.connect() as conn, conn.cursor() as cur:
        cur.execute(f"INSERT INTO `{PRODUCTION}`.region (id, description, extra) "
                    "VALUES ('RegionOne', '', '{}')")
        for number, kind in enumerate(("identity", "compute", "image")):
            cur.execute(f"INSERT INTO `{PRODUCTION}`.service (id, type, enabled, extra) "
                        "VALUES (%s, %s, 1, '{}')", (f"s{number}", kind))
        for number, (interface, url) in enumerate(ENDPOINTS):
            service = "s2" if "9292" in url else "s1" if "8774" in url else "s0"
            cur.execute(f"INSERT INTO `{PRODUCTION}`.endpoint (id, interface, service_id, url, "
                        "extra, enabled, region_id) VALUES (%s, %s, %s, %s, '{}', 1, "
                        "'RegionOne')", (f"e{number}", interface, service, url))
    mods["mysql_backup.clone"](PRODUCTION)
    yield {"mods": mods, "db": mariadb}
    drop()


def urls(env, database):
    with env["db"].connect() as conn, conn.cursor() as cur:
        cur.execute(f"SELECT url FROM `{database}`.endpoint ORDER BY id")
        return [row[0] for row in cur.fetchall()]


def test_the_clone_sends_its_clients_to_the_throwaway_and_production_is_untouched(env):
    rehome = env["mods"]["clone_rehome.catalog"]
    before = urls(env, PRODUCTION)
    assert urls(env, CLONE) == before == [url for _, url in ENDPOINTS]
    done = rehome(THROWAWAY, VIP)
    assert done == {"database": CLONE, "address": THROWAWAY,
                    "rewritten": {"public": 2, "internal": 1, "admin": 1},
                    "left": {"public": 1}}
    assert urls(env, CLONE) == [
        f"http://{THROWAWAY}:5000/v3", f"http://{THROWAWAY}:5000/v3",
        f"http://{THROWAWAY}:5000/v3", f"http://{THROWAWAY}:8774/v2.1/%(tenant_id)s",
        "https://images.example.org:9292"]
    assert urls(env, PRODUCTION) == before
    assert rehome(THROWAWAY, VIP)["rewritten"] == {}  # a re-run changes nothing more


def test_production_an_unmarked_database_and_bad_input_are_refused(env):
    rehome = env["mods"]["clone_rehome.catalog"]
    with env["db"].connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE DATABASE `lfrhstranger_upgrade` COMMENT 'not ours'")
    before = (urls(env, PRODUCTION), urls(env, CLONE))
    cases = [
        ({"suffix": ""}, "suffix '': use '_' then 1-32 lower-case letters"),
        ({"suffix": "; DROP DATABASE x"}, "suffix '; DROP DATABASE x'"),
        ({"suffix": "_none"}, f"no database {PRODUCTION}_none: clone {PRODUCTION} first"),
        ({"database": "lfrhstranger"}, "refusing to rewrite lfrhstranger_upgrade: it is not "
                                       "leapfrog's clone of lfrhstranger"),
        ({"address": "http://x:1/"}, "address must be a host name or an IP address"),
        ({"address": VIP}, f"address and vip are both {VIP}"),
    ]
    for override, text in cases:
        args = {"address": THROWAWAY, "vip": VIP, **override}
        with pytest.raises(leapfrog_errors.LeapfrogError) as info:
            rehome(args.pop("address"), args.pop("vip"), **args)
        assert text in str(info.value), (override, info.value)
        assert (urls(env, PRODUCTION), urls(env, CLONE)) == before
