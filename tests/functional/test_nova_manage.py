"""nova_manage and the nova_db state against a real MariaDB and the real nova-manage of
2024.1 (nova 29), 2025.1 (nova 31) and 2026.1 (nova 33), through Salt's loader.

One module-scoped upgrade does the expensive part once: a nova DB set created by 2024.1's
nova-manage and seeded by SQL, planned with ``nova_db.synced`` under test=True, taken to
2026.1 by ``nova_manage.staged_sync``, then re-applied with the state (no changes). The other
tests read its results or check refusals that stop before nova-manage runs.
"""
import os
import socket
import time
import urllib.parse
import uuid

import pytest
import salt.config
import salt.loader

from tests.conftest import REPO

PATH = ["2024.1", "2025.1", "2026.1"]
API_HEAD = "cdeec0c85668"
MAIN_2024_1 = "13863f4e1612"
MAIN_2025_1 = "2903cd72dc14"
INSTANCES = 3


def seed(db):
    """What a running 2024.1 cloud leaves in its DBs: a compute service and node (ratios
    unset, as old computes wrote them), instances without compute_id, their mappings."""
    uuids = [str(uuid.uuid4()) for _ in range(INSTANCES)]
    with db.connect("main") as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO services (created_at, host, `binary`, topic, report_count, "
                    "disabled, deleted, version, uuid, forced_down) VALUES (NOW(), 'cmp01', "
                    "'nova-compute', 'compute', 1, 0, 0, 66, %s, 0)", (str(uuid.uuid4()),))
        service_id = cur.lastrowid
        cur.execute("INSERT INTO compute_nodes (created_at, service_id, host, vcpus, memory_mb, "
                    "local_gb, vcpus_used, memory_mb_used, local_gb_used, hypervisor_type, "
                    "hypervisor_version, cpu_info, hypervisor_hostname, deleted, mapped, uuid, "
                    "cpu_allocation_ratio, ram_allocation_ratio, disk_allocation_ratio) VALUES "
                    "(NOW(), %s, 'cmp01', 8, 16384, 100, 0, 512, 0, 'fake', 1, '{}', 'cmp01', 0, 0, "
                    "%s, NULL, NULL, NULL)", (service_id, str(uuid.uuid4())))
        for index, instance in enumerate(uuids):
            cur.execute("INSERT INTO instances (created_at, uuid, host, node, project_id, "
                        "user_id, vm_state, power_state, deleted, display_name, hostname, "
                        "availability_zone, cell_name, locked, cleaned, launched_on, "
                        "instance_type_id, memory_mb, vcpus, root_gb, ephemeral_gb) VALUES "
                        "(NOW(), %s, 'cmp01', 'cmp01', 'p1', 'u1', 'active', 1, 0, %s, %s, "
                        "'nova', NULL, 0, 0, 'cmp01', 1, 512, 1, 1, 0)",
                        (instance, f"vm{index}", f"vm{index}"))
            cur.execute("INSERT INTO instance_extra (created_at, instance_uuid, deleted) "
                        "VALUES (NOW(), %s, 0)", (instance,))
        conn.commit()
    with db.connect("api") as conn, conn.cursor() as cur:
        cur.execute("SELECT id FROM cell_mappings WHERE name = 'cell1'")
        cell_id = cur.fetchone()[0]
        for instance in uuids:
            cur.execute("INSERT INTO instance_mappings (created_at, instance_uuid, cell_id, "
                        "project_id, user_id, queued_for_delete) VALUES (NOW(), %s, %s, 'p1', "
                        "'u1', NULL)", (instance, cell_id))
        conn.commit()
    return uuids


def loaders(pillar, base):
    opts = salt.config.minion_config(None)
    opts.update({
        "file_client": "local",
        "cachedir": str(base / "cache"),
        "module_dirs": [os.path.join(REPO, "_modules")],
        "states_dirs": [os.path.join(REPO, "_states")],
        "utils_dirs": [os.path.join(REPO, "_utils")],
        "grains": {"id": "ctl01"},
        "id": "ctl01",
        "test": False,
        "pillar": pillar,
    })
    mods = salt.loader.minion_mods(opts, whitelist=["cmd", "pillar", "config", "nova_manage"])
    states = salt.loader.states(opts, mods, salt.loader.utils(opts), {}, whitelist=["nova_db"])
    test_opts = {**opts, "test": True}
    test_states = salt.loader.states(test_opts, mods, salt.loader.utils(test_opts), {},
                                     whitelist=["nova_db"])
    return mods, states, test_states


@pytest.fixture(scope="module")
def env(nova_db, openstack_venvs, tmp_path_factory):
    started = time.monotonic()
    db = nova_db("lfnova", release="2024.1")
    created = time.monotonic() - started
    instances = seed(db)
    pillar = {"leapfrog": {"releases": {"venvs": dict(openstack_venvs), "path": PATH},
                           **db.pillar()}}
    mods, states, test_states = loaders(pillar, tmp_path_factory.mktemp("nova_manage"))
    print(f"\n[nova_manage] 2024.1 DB set created in {created:.1f} s")
    return {"db": db, "mods": mods, "states": states, "test_states": test_states,
            "venvs": openstack_venvs, "instances": instances, "created": db.revisions()}


def fn(env, name):
    return env["mods"][f"nova_manage.{name}"]


@pytest.fixture(scope="module")
def upgrade(env):
    """test=True plan, the staged sync, then the state applied again (must change nothing)."""
    plan = env["test_states"]["nova_db.synced"]("nova", path=PATH)
    started = time.monotonic()
    first = fn(env, "staged_sync")(path=PATH)
    first_seconds = time.monotonic() - started
    started = time.monotonic()
    again = env["states"]["nova_db.synced"]("nova", path=PATH)
    again_seconds = time.monotonic() - started
    print(f"\n[nova_manage] staged sync {first_seconds:.1f} s, state re-run {again_seconds:.1f} s")
    return {"plan": plan, "first": first, "again": again, "after": env["db"].revisions()}


def test_created_by_2024_1(env):
    assert env["created"] == {"api": API_HEAD, "main": MAIN_2024_1, "cell0": MAIN_2024_1}


def test_chains_read_from_the_venvs(env):
    main = fn(env, "revisions")(release="2026.1")
    assert main[0] == "8f2f1571d55b" and main[-1] == MAIN_2025_1
    assert fn(env, "revisions")(release="2024.1")[-1] == MAIN_2024_1
    assert fn(env, "revisions")(release="2025.1", schema="api")[-1] == API_HEAD


def test_plan_under_test_lists_the_pending_migrations(env, upgrade):
    plan = upgrade["plan"]
    assert plan["result"] is None
    assert plan["changes"]["pending"] == {
        "2025.1": {"api": [], "main": ["d60bddf7a903", MAIN_2025_1],
                   "cell0": ["d60bddf7a903", MAIN_2025_1]},
    }
    assert "Would apply" in plan["comment"]


def test_plan_is_exactly_what_ran(upgrade):
    applied = {}
    for hop in upgrade["first"]["hops"]:
        for step in hop["steps"]:
            if step["step"] in ("api_db sync", "db sync") and step["ran"]:
                applied.setdefault(hop["release"], {}).update(step["pending"])
    planned = {rel: {db: revs for db, revs in pending.items() if revs}
               for rel, pending in upgrade["plan"]["changes"]["pending"].items()}
    assert applied == planned


def test_staged_sync_revisions_after_each_hop(upgrade):
    first = upgrade["first"]
    assert first["changed"] is True
    after = {}
    for hop in first["hops"]:
        for step in hop["steps"]:
            if "after" in step:
                after.setdefault(hop["release"], {}).update(step["after"])
    assert after == {
        "2024.1": {"api": API_HEAD, "main": MAIN_2024_1, "cell0": MAIN_2024_1},
        "2025.1": {"api": API_HEAD, "main": MAIN_2025_1, "cell0": MAIN_2025_1},
        "2026.1": {"api": API_HEAD, "main": MAIN_2025_1, "cell0": MAIN_2025_1},
    }
    assert first["revisions"] == {"api": API_HEAD, "main": MAIN_2025_1, "cell0": MAIN_2025_1}
    # what the databases themselves say
    assert upgrade["after"] == {"api": API_HEAD, "main": MAIN_2025_1, "cell0": MAIN_2025_1}


def test_online_migrations_reported_and_done(env, upgrade):
    online = {hop["release"]: step for hop in upgrade["first"]["hops"] for step in hop["steps"]
              if step["step"] == "online_data_migrations"}
    assert sorted(online) == PATH
    first = online["2024.1"]["migrations"]
    # "found" sums nova's batches (a row can be counted in more than one), "done" does not
    assert first["populate_instance_compute_id"]["done"] == INSTANCES
    assert first["migrate_empty_ratio"]["done"] == 1
    assert first["populate_queued_for_delete"]["done"] == INSTANCES
    # nothing left for the later hops
    assert online["2025.1"]["migrated"] == 0 and online["2026.1"]["migrated"] == 0
    with env["db"].connect("main") as conn, conn.cursor() as cur:
        # (nova keeps a deleted all-zero "marker" instance for its batches: not ours)
        cur.execute("SELECT uuid, compute_id FROM instances WHERE deleted = 0")
        rows = dict(cur.fetchall())
    assert sorted(rows) == sorted(env["instances"])
    assert all(compute_id is not None for compute_id in rows.values()), rows


def test_second_run_changes_nothing(upgrade):
    again = upgrade["again"]
    assert again["result"] is True, again["comment"]
    assert again["changes"] == {}
    assert "already at 2026.1" in again["comment"]


def test_plan_after_upgrade_is_empty(env, upgrade):
    ret = env["test_states"]["nova_db.synced"]("nova", path=PATH)
    assert ret["result"] is True and ret["changes"] == {}


def test_list_cells_parsed_from_nova_manage_matches_sql(env, upgrade):
    by_tool = fn(env, "list_cells")(release="2026.1", via="nova-manage")
    by_sql = fn(env, "list_cells")(release="2026.1")
    assert [(c["name"], c["uuid"]) for c in by_tool] == [(c["name"], c["uuid"]) for c in by_sql]
    assert [c["name"] for c in by_tool] == ["cell0", "cell1"]
    password = env["db"].server.root_password
    assert all(password not in str(c) for c in by_tool)
    assert "guest:****@" in by_tool[1]["transport_url"]


def test_existing_cell_is_not_an_error(env, upgrade):
    ret = fn(env, "create_cell")("cell1", release="2026.1")
    assert ret["changed"] is False
    ret = env["states"]["nova_db.cells_mapped"]("cell1", release="2026.1")
    assert ret["result"] is True and ret["changes"] == {}


def one_line_error(call, *args, **kwargs):
    with pytest.raises(Exception) as info:
        call(*args, **kwargs)
    text = str(info.value)
    assert "\n" not in text, text
    return text


def test_unknown_release(env):
    text = one_line_error(fn(env, "db_sync"), release="2023.2")
    assert text.startswith("unknown release 2023.2") and "2024.1, 2025.1, 2026.1" in text


def test_revision_from_another_chain(env, upgrade):
    text = one_line_error(fn(env, "db_sync"), release="2026.1", revision=API_HEAD)
    assert f"revision {API_HEAD} is not in nova 2026.1's main migrations" in text


def test_downgrade_target_refused(env, upgrade):
    text = one_line_error(fn(env, "db_sync"), release="2026.1", revision=MAIN_2024_1)
    assert f"target {MAIN_2024_1} is older than" in text and MAIN_2025_1 in text
    assert env["db"].revision("main") == MAIN_2025_1


def test_old_release_on_newer_db_refused(env, upgrade):
    text = one_line_error(fn(env, "db_sync"), release="2024.1")
    assert "upgraded by a newer release" in text


def test_missing_venv(env, tmp_path):
    text = one_line_error(fn(env, "db_version"), venv=str(tmp_path / "nope"))
    assert text == f"venv {tmp_path / 'nope'} does not exist"
    (tmp_path / "empty" / "bin").mkdir(parents=True)
    text = one_line_error(fn(env, "db_version"), venv=str(tmp_path / "empty"))
    assert "has no bin/nova-manage" in text


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_db_unreachable(env):
    port = free_port()
    pillar_db = env["db"].pillar()["database"]
    text = one_line_error(fn(env, "db_version"), release="2026.1", host="127.0.0.1", port=port,
                          socket="/nonexistent/mysqld.sock")
    assert text.startswith("cannot connect to database lfnova at /nonexistent/mysqld.sock")
    assert pillar_db["password"] not in text


def test_db_unreachable_through_nova_manage(env):
    text = one_line_error(fn(env, "db_version"), release="2026.1", via="nova-manage",
                          socket="/nonexistent/mysqld.sock")
    assert text.startswith("nova-manage db version exited 255: ")
    assert "Can't connect to MySQL server" in text
    assert env["db"].server.root_password not in text


def test_wrong_password_not_echoed(env):
    text = one_line_error(fn(env, "api_db_version"), release="2026.1",
                          password="wr0ng-S3cret-xyz")
    assert "Access denied" in text
    assert "wr0ng-S3cret-xyz" not in text


def test_binary_path_instead_of_venv(env):
    binary = os.path.join(env["venvs"]["2025.1"], "bin", "nova-manage")
    assert fn(env, "revisions")(binary=binary)[-1] == MAIN_2025_1
    assert fn(env, "versions")(binary=binary)["release"] == "2025.1"


def test_upgrade_check_parsed_per_check(env, upgrade):
    """nova-status of 2026.1 on the upgraded DB: every check parsed. The seeded 2024.1
    compute (service version 66) is older than 2026.1's minimum (Epoxy, 68): a Failure the
    pre-checks must surface; placement is not running here: a Failure too."""
    try:
        ret = fn(env, "upgrade_check")(release="2026.1")
    except Exception as exc:  # exit 255: one summary line, then the traceback's tail
        text = str(exc)
        assert text.startswith("nova-status upgrade check crashed (exit 255): ")
        assert env["db"].server.root_password not in text
        pytest.skip(f"nova-status crashed here: {text.splitlines()[0]}")
    names = {c["name"]: c for c in ret["checks"]}
    print(f"\n[nova_manage] upgrade check: {ret['result']} {[(c['name'], c['result']) for c in ret['checks']]}")
    print(f"[nova_manage] details: {[(c['name'], c['details']) for c in ret['checks'] if c['result'] != 'Success']}")
    assert names["Older than N-1 computes"]["result"] == "Failure"
    assert names["Placement API"]["result"] == "Failure"
    assert "Older than N-1 computes" in ret["failed"]
    assert ret["code"] == 2 and ret["result"] == "Failure"
    assert all(c["details"] for c in ret["checks"] if c["result"] == "Failure")
    assert all(c["result"] in ("Success", "Warning", "Failure") for c in ret["checks"])
    assert "older than Epoxy" in names["Older than N-1 computes"]["details"]
    assert "is 66 and the oldest supported service level is 68" in names["Older than N-1 computes"]["details"]


def test_discover_hosts_maps_the_seeded_compute(env, upgrade):
    ret = fn(env, "discover_hosts")(release="2026.1", cell="cell1")
    assert ret["hosts"] == ["cmp01"] and ret["changed"] is True, ret
    with env["db"].connect("api") as conn, conn.cursor() as cur:
        cur.execute("SELECT host FROM host_mappings")
        assert [r[0] for r in cur.fetchall()] == ["cmp01"]
    again = fn(env, "discover_hosts")(release="2026.1", host="cmp01", timeout=0)
    assert again["hosts"] == [] and again["changed"] is False  # mapped already: no wait
    with pytest.raises(Exception, match="compute host upg99 not found in any cell after 0 s: "
                                        "is its nova-compute running and reporting"):
        fn(env, "discover_hosts")(release="2026.1", host="upg99", timeout=0)


def test_isolate_cells_moves_a_clones_cells_to_its_databases_and_vhost(env):
    """A rehearsal's clone of nova_api (here its cell_mappings, copied): each cell to the
    clone of its database and (transport_vhost) to the throwaway controller's vhost, the
    broker and user kept; production's mappings untouched; no URL in the answer."""
    db, clone = env["db"], f"{env['db'].api}_upgrade"
    with db.connect("api") as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{clone}`")
        cur.execute(f"CREATE DATABASE `{clone}`")
        cur.execute(f"CREATE TABLE `{clone}`.cell_mappings LIKE cell_mappings")
        cur.execute(f"INSERT INTO `{clone}`.cell_mappings SELECT * FROM cell_mappings")
        cur.execute("SELECT name, database_connection, transport_url FROM cell_mappings")
        production = sorted(cur.fetchall())
        conn.commit()
    try:
        with pytest.raises(Exception, match="transport_vhost: expected 1-64 letters"):
            fn(env, "isolate_cells")(suffix="_upgrade", transport_vhost="a/b")
        got = fn(env, "isolate_cells")(suffix="_upgrade", transport_vhost="leapfrog_rehearsal")
        assert db.server.root_password not in str(got) and "://" not in str(got)
        assert {c["cell"] for c in got["changed"] if "transport_vhost" in c} == {"cell1"}
        assert fn(env, "isolate_cells")(suffix="_upgrade", transport_vhost="leapfrog_rehearsal")[
            "changed"] == []
        with db.connect("api") as conn, conn.cursor() as cur:
            cur.execute("SELECT name, database_connection, transport_url FROM cell_mappings")
            assert sorted(cur.fetchall()) == production
            cur.execute(f"SELECT name, database_connection, transport_url "
                        f"FROM `{clone}`.cell_mappings")
            isolated = {row[0]: row[1:] for row in cur.fetchall()}
        for name, url, transport in production:
            new_url, new_transport = map(urllib.parse.urlsplit, isolated[name])
            url, transport = urllib.parse.urlsplit(url), urllib.parse.urlsplit(transport)
            assert new_url == url._replace(path=url.path + "_upgrade")
            assert new_transport == (transport if not transport.netloc
                                     else transport._replace(path="/leapfrog_rehearsal"))
    finally:
        with db.connect("api") as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{clone}`")
