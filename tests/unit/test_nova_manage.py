"""nova_manage with loader dunders: fake venvs on disk (real migration-file layout), a fake
cmd.run_all that plays nova-manage against an in-memory database state, SQL getters patched."""
import os
import stat

import pytest

import leapfrog_status

import leapfrog_errors
from tests.loader import load

nova_manage = load("modules", "nova_manage")

API = ["d67eeaabee36", "b30f573d3377", "cdeec0c85668"]
MAIN_29 = ["8f2f1571d55b", "16f1fbcab42b", "13863f4e1612"]
MAIN_31 = MAIN_29 + ["d60bddf7a903", "2903cd72dc14"]
MAIN_33 = MAIN_31
NOVA = {"2024.1": ("29.2.0", MAIN_29), "2025.1": ("31.1.0", MAIN_31), "2026.1": ("33.0.2", MAIN_33)}
SECRET = "s3cr$t/pa ss"

ODM_TABLE = """Running batches of 50 until complete
+-----------------------------------+--------------+-----------+
|             Migration             | Total Needed | Completed |
+-----------------------------------+--------------+-----------+
|    populate_instance_compute_id   |      {n}       |     {n}     |
|        migrate_empty_ratio        |      0       |     0     |
+-----------------------------------+--------------+-----------+
"""

LIST_CELLS = """+-------+--------------------------------------+--------------------------------+-----------------------------------------------------+----------+
|  Name |                 UUID                 |         Transport URL          |                 Database Connection                 | Disabled |
+-------+--------------------------------------+--------------------------------+-----------------------------------------------------+----------+
| cell0 | 00000000-0000-0000-0000-000000000000 |             none:/             | mysql+pymysql://root:****@localhost/nova_cell0      |  False   |
| cell1 | 6c2a9d9e-7b2f-4a59-9d44-1c1e4a1f3b10 | rabbit://guest:****@127.0.0.1/ | mysql+pymysql://root:****@localhost/nova            |  False   |
+-------+--------------------------------------+--------------------------------+-----------------------------------------------------+----------+
"""

UPGRADE_CHECK = """+-------------------------------------------+
| Upgrade Check Results                     |
+-------------------------------------------+
| Check: Cells v2                           |
| Result: Success                           |
| Details: None                             |
+-------------------------------------------+
| Check: Placement API                      |
| Result: Failure                           |
| Details: Placement service credentials do |
|   not work.                               |
+-------------------------------------------+
| Check: Service User Token Configuration   |
| Result: Warning                           |
| Details: Service user token configuration |
|   is required.                            |
+-------------------------------------------+
"""


def make_venv(root, release):
    version, main = NOVA[release]
    venv = root / release
    site = venv / "lib" / "python3.11" / "site-packages"
    (site / f"nova-{version}.dist-info").mkdir(parents=True)
    for schema, chain in (("main", main), ("api", API)):
        versions = site / "nova" / "db" / schema / "migrations" / "versions"
        versions.mkdir(parents=True)
        down = None
        for rev in chain:
            (versions / f"{rev}_x.py").write_text(
                f'"""m"""\nrevision = {rev!r}\ndown_revision = {down!r}\n')
            down = rev
    (venv / "bin").mkdir()
    for tool in ("nova-manage", "nova-status"):
        path = venv / "bin" / tool
        path.write_text("#!/bin/false\n")
        path.chmod(0o755)
    return str(venv)


class FakeNova:
    """In-memory databases plus a cmd.run_all that behaves like nova-manage on them."""

    def __init__(self, venvs):
        self.venvs = venvs
        self.state = {"api": None, "main": None, "cell0": None, "cells": []}
        self.calls = []
        self.configs = []
        self.dir_modes = []
        self.script = {}  # args tuple -> list of results to return in order
        self.fail = {}    # args prefix tuple -> (rc, stderr) once

    def release(self, binary):
        return os.path.basename(os.path.dirname(os.path.dirname(binary)))

    def run_all(self, argv, **kwargs):
        assert kwargs["python_shell"] is False
        binary, flag, conf, *args = argv
        assert flag == "--config-file"
        mode = stat.S_IMODE(os.stat(conf).st_mode)
        self.dir_modes.append(stat.S_IMODE(os.stat(os.path.dirname(conf)).st_mode))
        with open(conf) as handle:
            self.configs.append((conf, mode, handle.read()))
        self.calls.append(args)
        key = tuple(args)
        for prefix, (rc, err) in list(self.fail.items()):
            if key[: len(prefix)] == prefix:
                del self.fail[prefix]
                return {"retcode": rc, "stdout": "", "stderr": err}
        if key in self.script and self.script[key]:
            return self.script[key].pop(0)
        release = self.release(binary)
        if args[:2] == ["api_db", "sync"]:
            self.state["api"] = args[2]
        elif args[:2] == ["db", "sync"]:
            self.state["main"] = args[-1]
            if any(c["uuid"] == nova_manage.CELL0_UUID for c in self.state["cells"]):
                self.state["cell0"] = args[-1]
        elif args[:2] == ["db", "online_data_migrations"]:
            return {"retcode": 0, "stdout": ODM_TABLE.format(n=0), "stderr": ""}
        elif args[:2] == ["cell_v2", "map_cell0"]:
            self.state["cells"].append({"name": "cell0", "uuid": nova_manage.CELL0_UUID})
        elif args[:2] == ["cell_v2", "create_cell"]:
            self.state["cells"].append({"name": args[3], "uuid": "1111-" + args[3]})
            return {"retcode": 0, "stdout": "1111-" + args[3] + "\n", "stderr": ""}
        return {"retcode": 0, "stdout": "", "stderr": "", "release": release}


@pytest.fixture
def venvs(tmp_path):
    return {release: make_venv(tmp_path, release) for release in NOVA}


@pytest.fixture
def fake(venvs):
    return FakeNova(venvs)


@pytest.fixture
def configure_loader_modules(venvs, fake):
    pillar = {"leapfrog": {
        "releases": {"venvs": venvs, "path": ["2024.1", "2025.1", "2026.1"]},
        "database": {"socket": "/run/mysqld/mysqld.sock", "user": "nova", "password": SECRET},
        "nova": {"transport_url": "rabbit://guest:guest@mq:5672/"},
    }}
    return {nova_manage: {"__salt__": {"cmd.run_all": fake.run_all}, "__pillar__": pillar,
                          "__opts__": {"test": False}}}


@pytest.fixture(autouse=True)
def sql(monkeypatch, fake):
    """The SQL getters read the fake state (the functional tests use the real ones)."""
    def revision(conn, schema, database=None):
        return fake.state["cell0" if database else schema]

    def cell0(conn):
        return "nova_cell0" if any(c["uuid"] == nova_manage.CELL0_UUID
                                   for c in fake.state["cells"]) else None

    def cells(conn):
        return [{"name": c["name"], "uuid": c["uuid"], "transport_url": "",
                 "database_connection": "", "disabled": False} for c in fake.state["cells"]]

    monkeypatch.setattr(nova_manage, "HAS_PYMYSQL", True)
    monkeypatch.setattr(nova_manage, "_sql_revision", revision)
    monkeypatch.setattr(nova_manage, "_cell0_database", cell0)
    monkeypatch.setattr(nova_manage, "_sql_cells", cells)


def at_2024_1(fake):
    fake.state.update(api=API[-1], main=MAIN_29[-1], cell0=MAIN_29[-1],
                      cells=[{"name": "cell0", "uuid": nova_manage.CELL0_UUID},
                             {"name": "cell1", "uuid": "c1"}])


# -- releases, venvs, chains ----------------------------------------------------------------


@pytest.mark.parametrize("version,release", [("29.2.0", "2024.1"), ("30.0.0", "2024.2"),
                                             ("31.1.0", "2025.1"), ("33.0.2", "2026.1"),
                                             ("34.0.0", "2026.2")])
def test_release_of(version, release):
    assert nova_manage._release_of(version) == release


def test_virtual():
    assert nova_manage.__virtual__() == "nova_manage"


def test_chain_read_from_migration_files():
    assert nova_manage.revisions(release="2025.1") == MAIN_31
    assert nova_manage.revisions(release="2024.1", schema="api") == API


def test_unknown_release_names_known_ones(fake):
    with pytest.raises(leapfrog_errors.LeapfrogError) as info:
        nova_manage.db_sync(release="2023.1")
    assert str(info.value) == ("unknown release 2023.1: not in pillar leapfrog:releases:venvs "
                               "(known: 2024.1, 2025.1, 2026.1)")
    assert fake.calls == []


def test_missing_venv(tmp_path):
    with pytest.raises(leapfrog_errors.LeapfrogError, match="does not exist"):
        nova_manage.db_version(venv=str(tmp_path / "gone"))


def test_venv_holding_another_release(venvs):
    with pytest.raises(leapfrog_errors.LeapfrogError, match=r"holds nova 31.1.0 \(2025.1\), not 2024.1"):
        nova_manage.db_version(release="2024.1", venvs={"2024.1": venvs["2025.1"]})


def test_unknown_option_is_refused():
    with pytest.raises(leapfrog_errors.LeapfrogError, match="unknown option pasword"):
        nova_manage.db_version(release="2024.1", pasword="x")


def test_salt_pub_kwargs_are_ignored(fake):
    at_2024_1(fake)
    assert nova_manage.db_version(release="2024.1", __pub_fun="nova_manage.db_version") == MAIN_29[-1]


# -- the config file and secrets --------------------------------------------------------------


def test_config_file_private_and_removed_and_password_not_on_argv(fake):
    nova_manage.api_db_sync(release="2024.1")
    conf, mode, text = fake.configs[0]
    assert mode == 0o600
    assert fake.dir_modes[0] == 0o700
    assert not os.path.exists(os.path.dirname(conf))
    assert "connection = mysql+pymysql://nova:s3cr%24t%2Fpa%20ss@localhost/nova_api?" in text
    assert "unix_socket=/run/mysqld/mysqld.sock" in text
    assert "[database]\nconnection = mysql+pymysql://nova:" in text
    assert "transport_url = rabbit://guest:guest@mq:5672/" in text
    assert all(SECRET not in " ".join(call) and "s3cr" not in " ".join(call) for call in fake.calls)


def test_tcp_url_when_no_socket():
    conn = nova_manage._Conn({"host": "10.0.0.20", "port": 3307, "socket": "", "user": "root",
                              "password": "pw"})
    # the pillar socket is used when the call gives none
    assert "unix_socket" in conn.urls["main"]
    nova_manage.__pillar__["leapfrog"]["database"]["socket"] = ""
    conn = nova_manage._Conn({"host": "10.0.0.20", "port": 3307, "password": "pw"})
    assert conn.urls["api"] == "mysql+pymysql://nova:pw@10.0.0.20:3307/nova_api?charset=utf8"
    assert conn.urls["cell0"].split("?")[0].endswith("/nova_cell0")


def test_errors_and_outputs_never_show_the_password(fake):
    fake.fail[("api_db", "sync")] = (1, "Traceback...\nOperationalError: mysql+pymysql://nova:"
                                        f"{SECRET}@localhost/nova_api failed, password {SECRET}")
    with pytest.raises(leapfrog_errors.LeapfrogError) as info:
        nova_manage.api_db_sync(release="2024.1")
    text = str(info.value)
    assert SECRET not in text and "****" in text
    assert text.startswith("nova-manage api_db sync cdeec0c85668 exited 1: OperationalError:")


def test_no_database_configured():
    nova_manage.__pillar__["leapfrog"].pop("database")
    with pytest.raises(leapfrog_errors.LeapfrogError, match="no database: give host or socket"):
        nova_manage.db_version(release="2024.1")


def test_existing_config_file_is_used_as_is(tmp_path, fake):
    conf = tmp_path / "nova.conf"
    conf.write_text("[api_database]\nconnection = mysql+pymysql://n:pw@db/nova_api\n"
                    "[database]\nconnection = mysql+pymysql://n:pw@db/nova\n")
    nova_manage.api_db_sync(release="2024.1", config_file=str(conf))
    assert fake.configs[0][0] == str(conf)
    assert conf.exists()


# -- schema syncs -------------------------------------------------------------------------------


def test_api_db_sync_from_empty(fake):
    step = nova_manage.api_db_sync(release="2024.1")
    assert fake.calls == [["api_db", "sync", "cdeec0c85668"]]
    assert step["before"] == {"api": None} and step["after"] == {"api": API[-1]}
    assert step["pending"] == {"api": API} and step["ran"] is True


def test_db_sync_at_target_runs_nothing(fake):
    at_2024_1(fake)
    step = nova_manage.db_sync(release="2024.1")
    assert fake.calls == [] and step["ran"] is False
    assert step["pending"] == {"main": [], "cell0": []}


def test_db_sync_to_prefix_and_pending_lists(fake):
    at_2024_1(fake)
    step = nova_manage.db_sync(release="2025.1", revision="d60b")
    assert fake.calls == [["db", "sync", "d60bddf7a903"]]
    assert step["pending"] == {"main": ["d60bddf7a903"], "cell0": ["d60bddf7a903"]}
    assert step["after"] == {"main": "d60bddf7a903", "cell0": "d60bddf7a903"}


def test_downgrade_refused_before_running(fake):
    at_2024_1(fake)
    fake.state.update(main=MAIN_31[-1], cell0=MAIN_31[-1])
    with pytest.raises(leapfrog_errors.LeapfrogError) as info:
        nova_manage.db_sync(release="2026.1", revision="13863f4e1612")
    assert str(info.value) == ("target 13863f4e1612 is older than the main database's current "
                               "revision 2903cd72dc14: nova cannot downgrade (restore a backup instead)")
    assert fake.calls == []


def test_revision_from_another_chain_refused(fake):
    with pytest.raises(leapfrog_errors.LeapfrogError, match="not in nova 2025.1's main migrations"):
        nova_manage.db_sync(release="2025.1", revision=API[-1])
    with pytest.raises(leapfrog_errors.LeapfrogError, match="not in nova 2024.1's main migrations"):
        nova_manage.db_sync(release="2024.1", revision="2903cd72dc14")
    with pytest.raises(leapfrog_errors.LeapfrogError, match="sqlalchemy-migrate version"):
        nova_manage.db_sync(release="2024.1", revision="402")
    assert fake.calls == []


def test_older_release_on_newer_db_refused(fake):
    at_2024_1(fake)
    fake.state.update(main=MAIN_31[-1])
    with pytest.raises(leapfrog_errors.LeapfrogError, match="upgraded by a newer release"):
        nova_manage.db_sync(release="2024.1")


def test_sync_that_does_not_move_is_an_error(fake):
    at_2024_1(fake)
    fake.script[("db", "sync", "2903cd72dc14")] = [{"retcode": 0, "stdout": "", "stderr": ""}]
    with pytest.raises(leapfrog_errors.LeapfrogError, match="exited 0 but left"):
        nova_manage.db_sync(release="2025.1")


# -- online data migrations -------------------------------------------------------------------


def test_online_migrations_in_batches_until_rc0(fake):
    key = ("db", "online_data_migrations", "--max-count", "2")
    fake.script[key] = [{"retcode": 1, "stdout": ODM_TABLE.format(n=2), "stderr": ""},
                        {"retcode": 1, "stdout": ODM_TABLE.format(n=2), "stderr": ""},
                        {"retcode": 0, "stdout": ODM_TABLE.format(n=1), "stderr": ""}]
    ret = nova_manage.online_data_migrations(release="2025.1", max_count=2)
    assert ret["calls"] == 3
    assert ret["migrations"]["populate_instance_compute_id"] == {"found": 5, "done": 5}
    assert ret["migrations"]["migrate_empty_ratio"] == {"found": 0, "done": 0}
    assert ret["migrated"] == 5


def test_online_migrations_unlimited_is_one_call(fake):
    fake.script[("db", "online_data_migrations")] = [
        {"retcode": 0, "stdout": ODM_TABLE.format(n=3), "stderr": ""}]
    ret = nova_manage.online_data_migrations(release="2025.1")
    assert ret["calls"] == 1 and ret["migrated"] == 3


def test_online_migrations_failure(fake):
    fake.script[("db", "online_data_migrations")] = [
        {"retcode": 2, "stdout": ODM_TABLE.format(n=0) + "Some migrations failed unexpectedly. "
         "Check log for details.\n", "stderr": ""}]
    with pytest.raises(leapfrog_errors.LeapfrogError,
                       match="exited 2: Some migrations failed unexpectedly"):
        nova_manage.online_data_migrations(release="2025.1")


def test_online_migrations_bad_max_count():
    with pytest.raises(leapfrog_errors.LeapfrogError, match="max_count must be from 1 to"):
        nova_manage.online_data_migrations(release="2025.1", max_count=0)


# -- cells ---------------------------------------------------------------------------------------


def test_parse_cells():
    cells = nova_manage._parse_cells(LIST_CELLS)
    assert [(c["name"], c["uuid"], c["disabled"]) for c in cells] == [
        ("cell0", nova_manage.CELL0_UUID, False),
        ("cell1", "6c2a9d9e-7b2f-4a59-9d44-1c1e4a1f3b10", False)]
    assert cells[1]["transport_url"] == "rabbit://guest:****@127.0.0.1/"


def test_list_cells_through_nova_manage(fake):
    fake.script[("cell_v2", "list_cells")] = [{"retcode": 0, "stdout": LIST_CELLS, "stderr": ""}]
    cells = nova_manage.list_cells(release="2026.1", via="nova-manage")
    assert [c["name"] for c in cells] == ["cell0", "cell1"]


def test_create_cell_existing_is_not_an_error(fake):
    at_2024_1(fake)
    assert nova_manage.create_cell("cell1", release="2024.1")["changed"] is False
    assert fake.calls == []


def test_create_cell_new_takes_transport_from_config(fake):
    ret = nova_manage.create_cell("cell2", release="2024.1")
    assert ret == {"step": "create_cell", "name": "cell2", "uuid": "1111-cell2", "changed": True,
                   "seconds": ret["seconds"]}
    assert fake.calls == [["cell_v2", "create_cell", "--name", "cell2", "--verbose"]]


def test_create_cell_duplicate_rc2_is_not_an_error(fake):
    fake.script[("cell_v2", "create_cell", "--name", "cellx", "--verbose")] = [
        {"retcode": 2, "stdout": "The specified transport_url and/or database_connection "
         "combination already exists for another cell", "stderr": ""}]
    assert nova_manage.create_cell("cellx", release="2024.1")["changed"] is False


def test_create_cell_needs_a_transport_url():
    nova_manage.__pillar__["leapfrog"].pop("nova")
    with pytest.raises(leapfrog_errors.LeapfrogError, match="needs a transport_url"):
        nova_manage.create_cell("cell2", release="2024.1")


def test_map_cell0_idempotent(fake):
    assert nova_manage.map_cell0(release="2024.1")["changed"] is True
    assert nova_manage.map_cell0(release="2024.1")["changed"] is False
    assert fake.calls == [["cell_v2", "map_cell0"]]


def test_map_instances_looks_up_the_cell_by_name(fake):
    at_2024_1(fake)
    key = ("cell_v2", "map_instances", "--cell_uuid", "c1", "--max-count", "10")
    fake.script[key] = [{"retcode": 1, "stdout": "", "stderr": ""},
                        {"retcode": 0, "stdout": "", "stderr": ""}]
    ret = nova_manage.map_instances("cell1", release="2024.1", max_count=10)
    assert ret["uuid"] == "c1" and ret["calls"] == 2
    with pytest.raises(leapfrog_errors.LeapfrogError, match=r"no cell named cell9 \(cells: cell0, cell1\)"):
        nova_manage.map_instances("cell9", release="2024.1")


def test_discover_hosts_reports_new_hosts(fake):
    at_2024_1(fake)
    fake.script[("cell_v2", "discover_hosts", "--verbose", "--cell_uuid", "c1")] = [
        {"retcode": 0, "stderr": "", "stdout": "Found 2 cell mappings.\nGetting computes from "
         "cell 'cell1': c1\nChecking host mapping for compute host 'cmp01': u1\nCreating host "
         "mapping for compute host 'cmp01': u1\nFound 1 unmapped computes in cell: c1\n"}]
    assert nova_manage.discover_hosts(release="2024.1", cell="cell1")["hosts"] == ["cmp01"]


# -- staged sync ------------------------------------------------------------------------------


def test_staged_sync_from_empty_then_rerun_changes_nothing(fake):
    ret = nova_manage.staged_sync()
    assert [h["release"] for h in ret["hops"]] == ["2024.1", "2025.1", "2026.1"]
    assert ret["revisions"] == {"api": API[-1], "main": MAIN_31[-1], "cell0": MAIN_31[-1]}
    first = [c for c in fake.calls]
    assert first == [
        ["api_db", "sync", API[-1]], ["cell_v2", "map_cell0"],
        ["cell_v2", "create_cell", "--name", "cell1", "--verbose"],
        ["db", "sync", MAIN_29[-1]], ["db", "online_data_migrations"],
        ["db", "sync", MAIN_31[-1]], ["db", "online_data_migrations"],
        ["db", "online_data_migrations"]]
    hop = ret["hops"][1]["steps"]
    assert hop[2]["before"] == {"main": MAIN_29[-1], "cell0": MAIN_29[-1]}
    assert hop[2]["after"] == {"main": MAIN_31[-1], "cell0": MAIN_31[-1]}
    assert ret["changed"] is True
    fake.calls.clear()
    again = nova_manage.staged_sync()
    assert again["changed"] is False
    assert again["hops"][0]["skipped"].startswith("main database at 2903cd72dc14 is past 2024.1")
    # the later hops only re-check online migrations (nothing to migrate)
    assert fake.calls == [["db", "online_data_migrations"], ["db", "online_data_migrations"]]


def test_staged_sync_rerun_after_failure_continues(fake):
    at_2024_1(fake)
    fake.fail[("db", "sync", MAIN_31[-1])] = (1, "Traceback\noslo_db.exception.DBError: lost connection")
    with pytest.raises(leapfrog_errors.LeapfrogError) as info:
        nova_manage.staged_sync(path=["2024.1", "2025.1", "2026.1"])
    text = str(info.value)
    assert text.startswith("staged sync stopped in hop 2025.1: nova-manage db sync 2903cd72dc14 exited 1: "
                           "oslo_db.exception.DBError: lost connection")
    assert "hops done: 2024.1; re-run to continue" in text
    fake.calls.clear()
    ret = nova_manage.staged_sync(path="2024.1 -> 2025.1 -> 2026.1")
    assert ret["revisions"]["main"] == MAIN_31[-1]
    assert fake.calls[:2] == [["db", "online_data_migrations"], ["db", "sync", MAIN_31[-1]]]


def test_staged_sync_checks_every_hop_before_running(fake):
    with pytest.raises(leapfrog_errors.LeapfrogError, match="unknown release 2027.1"):
        nova_manage.staged_sync(path=["2024.1", "2027.1"])
    with pytest.raises(leapfrog_errors.LeapfrogError, match="goes backwards"):
        nova_manage.staged_sync(path=["2025.1", "2024.1"])
    assert fake.calls == []


def test_staged_pending_matches_what_staged_sync_runs(fake):
    at_2024_1(fake)
    plan = nova_manage.staged_pending()
    assert plan["hops"] == [
        {"release": "2024.1", "pending": {"api": [], "main": [], "cell0": []}},
        {"release": "2025.1", "pending": {"api": [], "main": MAIN_31[3:], "cell0": MAIN_31[3:]}},
        {"release": "2026.1", "pending": {"api": [], "main": [], "cell0": []}},
    ]
    assert plan["cells_to_map"] == []
    ret = nova_manage.staged_sync()
    ran = {h["release"]: s["pending"] for h in ret["hops"] for s in h["steps"]
           if s["step"] == "db sync" and s["ran"]}
    assert ran == {"2025.1": {"main": MAIN_31[3:], "cell0": MAIN_31[3:]}}


# -- nova-status ------------------------------------------------------------------------------


def test_parse_upgrade_check():
    assert leapfrog_status.parse(UPGRADE_CHECK) == [
        {"name": "Cells v2", "result": "Success", "details": "None"},
        {"name": "Placement API", "result": "Failure",
         "details": "Placement service credentials do not work."},
        {"name": "Service User Token Configuration", "result": "Warning",
         "details": "Service user token configuration is required."},
    ]


def test_upgrade_check_failure_is_data_not_an_error(fake):
    fake.script[("upgrade", "check")] = [{"retcode": 2, "stdout": UPGRADE_CHECK, "stderr": ""}]
    ret = nova_manage.upgrade_check(release="2026.1")
    assert ret["code"] == 2 and ret["result"] == "Failure"
    assert ret["failed"] == ["Placement API"]
    assert ret["warnings"] == ["Service User Token Configuration"]


def test_upgrade_check_crash_raises_with_traceback_tail(fake):
    stderr = "Traceback (most recent call last):\n  File \"x\", line 1\n" \
             "keystoneauth1.exceptions.discovery.DiscoveryFailure: Could not find versioned identity endpoints"
    fake.script[("upgrade", "check")] = [{"retcode": 255, "stdout": "", "stderr": stderr}]
    with pytest.raises(leapfrog_errors.LeapfrogError) as info:
        nova_manage.upgrade_check(release="2026.1")
    first, *rest = str(info.value).splitlines()
    assert first == ("nova-status upgrade check crashed (exit 255): keystoneauth1.exceptions."
                     "discovery.DiscoveryFailure: Could not find versioned identity endpoints")
    assert rest[0] == "Traceback (most recent call last):"


def test_parse_upgrade_check_joins_wrapped_urls():
    text = ("| Check: hw_machine_type unset             |\n"
            "| Result: Warning                           |\n"
            "| Details: see https://docs.openstack.org/n |\n"
            "|   ova/latest/admin/hw-machine-            |\n"
            "|   type.html and https://docs              |\n"
            "|   .openstack.org/x                        |\n")
    assert leapfrog_status.parse(text)[0]["details"] == (
        "see https://docs.openstack.org/n ova/latest/admin/hw-machine-type.html and "
        "https://docs.openstack.org/x")


def test_every_public_function_has_a_cli_example():
    import inspect  # pylint: disable=import-outside-toplevel

    openstack_db = load("modules", "openstack_db")
    nova_db = load("states", "nova_db")
    for module in (nova_manage, openstack_db, nova_db):
        for name, func in inspect.getmembers(module, inspect.isfunction):
            if not name.startswith("_") and func.__module__ == module.__name__:
                assert "CLI Example:" in (func.__doc__ or ""), f"{module.__name__}.{name}"
