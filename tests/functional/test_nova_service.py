"""nova_service through Salt's loader against the lab's real OpenStack 2024.1 cloud (the
session ``openstack_cloud``: cmp01 and cmp02 fake computes, three servers ACTIVE): disable
and enable cmp01 with a reason, busy/idle, servers, unknown host, and a compute restarted
from the 2025.1 venv seen up with 2025.1's service version (read from the cell database;
the compute API does not show it).

The cloud is shared by the session: every test leaves it as it found it (cmp01 enabled, and
back on 2024.1 after the restart test: test_openstack_lab.py expects every compute at
2024.1's service version).
"""
import json
import logging
import os
import time

import pytest
import salt.config
import salt.loader
from salt.exceptions import CommandExecutionError

from lab.openstack_cloud import SERVICE_VERSION
from tests.conftest import REPO

REASON = "leapfrog: functional test of nova_service"


@pytest.fixture(scope="module")
def nova(openstack_cloud, tmp_path_factory):
    cloud = openstack_cloud
    opts = salt.config.minion_config(None)
    opts.update({
        "file_client": "local",
        "cachedir": str(tmp_path_factory.mktemp("nova_service") / "cache"),
        "module_dirs": [os.path.join(REPO, "_modules")],
        "grains": {"id": "ctl01"},
        "id": "ctl01",
        "pillar": {"leapfrog": {
            "verify": {**cloud.auth, "timeout": 30},
            "database": {"socket": cloud.mariadb.socket, "user": "root",
                         "password": cloud.mariadb.root_password},
            "nova": {"database": cloud.db_name("nova")}}},
    })
    mods = salt.loader.minion_mods(opts, whitelist=["nova_service"])
    return {name.split(".", 1)[1]: func for name, func in mods.items()
            if name.startswith("nova_service.")}


def _no_secret(cloud, value, caplog, capsys):
    text = json.dumps(value, default=str) + caplog.text
    out = capsys.readouterr()
    text += out.out + out.err
    for secret in (cloud.admin_password, cloud.mariadb.root_password, *cloud.passwords.values()):
        assert secret not in text


def test_list_disable_enable_on_the_lab(openstack_cloud, nova, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    rows = nova["list"]()
    assert [(r["host"], r["status"], r["state"], r["version"]) for r in rows] == [
        ("cmp01", "enabled", "up", SERVICE_VERSION["2024.1"]),
        ("cmp02", "enabled", "up", SERVICE_VERSION["2024.1"])]
    try:
        out = nova["disable"]("cmp01", REASON)
        assert out["changes"] == {"old": {"status": "enabled", "disabled_reason": None},
                                  "new": {"status": "disabled", "disabled_reason": REASON}}
        assert nova["disable"]("cmp01", REASON)["changes"] == {}
        row = nova["list"](host="cmp01")[0]
        assert (row["status"], row["disabled_reason"], row["state"]) == ("disabled", REASON, "up")
        # what an operator sees through the API (the lab's own client)
        seen = openstack_cloud.api("GET", "nova", "/os-services?binary=nova-compute&host=cmp01")
        assert seen["services"][0]["disabled_reason"] == REASON
        assert nova["list"](host="cmp02")[0]["status"] == "enabled"
    finally:
        out = nova["enable"]("cmp01")
    assert out["changes"] == {"old": {"status": "disabled", "disabled_reason": REASON},
                              "new": {"status": "enabled", "disabled_reason": None}}
    assert nova["enable"]("cmp01")["changes"] == {}
    row = nova["list"](host="cmp01")[0]
    assert (row["status"], row["disabled_reason"]) == ("enabled", None)
    _no_secret(openstack_cloud, rows, caplog, capsys)


def test_busy_idle_and_servers_on_the_lab(openstack_cloud, nova):
    assert nova["busy"]("cmp01") == []
    idle = nova["wait_idle"]("cmp01", timeout=30)
    assert idle["idle"] is True and idle["attempts"] == 1
    servers = nova["servers"]()
    assert {s["id"]: {"name": s["name"], "status": s["status"], "host": s["host"]}
            for s in servers} == openstack_cloud.servers()
    assert sorted((s["status"], s["host"]) for s in servers) == [
        ("ACTIVE", "cmp01"), ("ACTIVE", "cmp01"), ("ACTIVE", "cmp02")]
    assert [s["host"] for s in nova["servers"](host="cmp02")] == ["cmp02"]


def test_a_server_deleted_during_a_switch_is_listed_deleted_not_lost(openstack_cloud, nova):
    """What switch_compute asks when a server vanished from its host: nova lists it deleted
    since the switch began (admin's deleted=true with changes-since)."""
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 1))
    server_id = openstack_cloud.create_server("lf-deleted", host="cmp02")
    openstack_cloud.api("DELETE", "nova", f"/servers/{server_id}")
    deadline = time.monotonic() + 120
    while server_id in openstack_cloud.servers() and time.monotonic() < deadline:
        time.sleep(1)
    assert server_id not in {s["id"] for s in nova["servers"](host="cmp02")}
    deleted = nova["servers"](host="cmp02", deleted=True, changes_since=since)
    assert [(s["id"], s["status"]) for s in deleted] == [(server_id, "DELETED")]
    with pytest.raises(Exception, match=r"changes_since 'yesterday' is not an ISO 8601 UTC "
                                        r"time"):
        nova["servers"](host="cmp02", deleted=True, changes_since="yesterday")


def _migrations(cloud, server_id):
    """The server's migration records as nova keeps them: (status, source, dest), oldest
    first."""
    found = cloud.api("GET", "nova", f"/os-migrations?instance_uuid={server_id}")
    return [(m["status"], m["source_compute"], m["dest_compute"])
            for m in sorted(found["migrations"], key=lambda m: m["id"])]


def _moved_back(cloud, nova, server_id, host, timeout=300, attempts=2):
    """Live-migrate one server to ``host`` (the lab's own client) and wait until nova has
    closed its migration: the session's layout restored. A live migration nova closes in
    error (an RPC timeout on a loaded 2-core machine) is asked again, once."""
    import time  # pylint: disable=import-outside-toplevel

    def there():
        return cloud.servers()[server_id]["host"] == host and not nova["busy"](host)

    for _ in range(attempts):
        if there():  # never moved (the test failed before), or moved back already
            return
        records = len(_migrations(cloud, server_id))
        cloud.api("POST", "nova", f"/servers/{server_id}/action",
                  json={"os-migrateLive": {"host": host, "block_migration": "auto"}})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if there():
                return
            ours = _migrations(cloud, server_id)[records:]
            if ours and ours[-1][0] in ("error", "failed", "cancelled"):
                break
            time.sleep(1)
    raise AssertionError(f"server {server_id} not back on {host} after {attempts} live "
                         f"migrations: nova's records {_migrations(cloud, server_id)}")


def test_migrate_away_empties_a_disabled_host_and_leaves_no_migration_open(
        openstack_cloud, nova):
    """The scheduler picks cmp01 for cmp02's server; once migrate_away returns, nova has
    closed the migration record, so neither host looks busy (a record left "running" made
    the destination look busy until wait_idle's timeout)."""
    cloud = openstack_cloud
    before = cloud.servers()
    on_cmp02 = [i for i, s in before.items() if s["host"] == "cmp02"]
    nova["disable"]("cmp02", REASON)
    try:
        out = nova["migrate_away"]("cmp02", timeout=300)
        assert [(m["id"], m["to"]) for m in out["migrated"]] == [(i, "cmp01") for i in on_cmp02]
        assert nova["busy"]("cmp01") == [] and nova["busy"]("cmp02") == []
        assert nova["wait_idle"]("cmp01", timeout=5)["idle"] is True
        assert nova["servers"](host="cmp02") == []
        assert {s["status"] for s in cloud.servers().values()} == {"ACTIVE"}
    finally:
        nova["enable"]("cmp02", reason=REASON)
        for server_id in on_cmp02:
            _moved_back(cloud, nova, server_id, "cmp02")
    assert cloud.servers() == before


def test_unknown_host_is_a_clear_error(nova):
    for name, args in (("disable", ("cmp99", REASON)), ("enable", ("cmp99",)),
                       ("busy", ("cmp99",)), ("wait_up", ("cmp99",))):
        with pytest.raises(CommandExecutionError) as err:
            nova[name](*args)
        assert str(err.value).startswith(
            "no nova-compute service on host 'cmp99'; known hosts: cmp01, cmp02"), name


def test_wait_up_sees_a_compute_restarted_at_2025_1(openstack_cloud, nova):
    """cmp01 restarted from the 2025.1 venv (the lab waits for it itself), then wait_up with
    2025.1's service version passes and with 2026.1's times out naming host and versions.
    Back to 2024.1 with the product's own protocol: stop, note the last heartbeat, start,
    wait_up(version=2024.1, since=that heartbeat)."""
    cloud = openstack_cloud
    servers = nova["servers"]()
    try:
        cloud.restart_compute("cmp01", release="2025.1")
        up = nova["wait_up"]("cmp01", version="2025.1", timeout=120)
        assert (up["state"], up["version"]) == ("up", SERVICE_VERSION["2025.1"])
        assert nova["wait_up"]("cmp01", version=68, timeout=10)["version"] == 68

        with pytest.raises(CommandExecutionError) as err:
            nova["wait_up"]("cmp01", version="2026.1", timeout=4, interval=1)
        assert str(err.value).startswith(
            "nova-compute on cmp01 not up with service version 72 (release 2026.1) after ")
        assert str(err.value).endswith(
            "s: service version 68, want 72; service versions seen: 68")
    finally:
        compute = cloud.computes["cmp01"]
        compute.stop()
        last = nova["list"](host="cmp01")[0]["updated_at"]
        compute.start(release="2024.1")
        back = nova["wait_up"]("cmp01", version="2024.1", since=last, timeout=180)
        cloud.save()
    assert back["version"] == SERVICE_VERSION["2024.1"] and back["updated_at"] > last
    assert {r["host"]: r["version"] for r in nova["list"]()} == {
        "cmp01": SERVICE_VERSION["2024.1"], "cmp02": SERVICE_VERSION["2024.1"]}
    assert nova["servers"]() == servers
