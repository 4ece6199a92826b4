"""The pre-check's offline-migration check (a service whose target code has migrations only
stopped servers survive refuses a rolling hop and names the strategy that works) and the
services' own upgrade checks."""
import leapfrog_precheck
import leapfrog_schema
import yaml

from tests.unit.test_journal_runner import PILLAR

SERVICES = ["nova", "keystone", "glance", "placement", "neutron", "cinder"]


def _config():
    config = yaml.safe_load(PILLAR)["leapfrog"]["clusters"]["lab"]
    config["services"] = SERVICES
    config["database"]["databases"] += ["neutron", "cinder"]
    return leapfrog_schema.validate(config, "lab")


def _collect(monkeypatch, pending, strategy, status=None):
    asked = []

    def call(opts, tgt, func, kwargs=None, **_):
        asked.append((func, kwargs))
        if func == "openstack_db.offline_migrations":
            return {"ctl01": {"service": kwargs["service"], "pending": pending}}
        if func == "openstack_db.upgrade_check":
            return {"ctl01": (status or {}).get(kwargs["service"], {"result": "Success"})}
        if func == "nova_manage.versions":
            return {"ctl01": {"at_head": True}}
        return {"ctl01": {}}

    monkeypatch.setattr(leapfrog_precheck.leapfrog_minions, "call", call)
    monkeypatch.setattr(leapfrog_precheck.time, "sleep", lambda seconds: None)
    monkeypatch.setattr(leapfrog_precheck.leapfrog_minions, "first", lambda *a: "ctl01")
    monkeypatch.setattr(leapfrog_precheck.leapfrog_minions, "expected",
                        lambda opts, tgt: ["ctl01", "ctl02"])
    problems, notes = [], []
    config = _config()
    config["vms"]["nodes"]["ctl02"] = {"hypervisor": "kvm01", "domain": "ctl02"}
    leapfrog_precheck.collect({}, config, "2024.1", strategy, problems, notes, "2026.1")
    return asked, problems, notes


def test_neutron_offline_migrations_refuse_a_rolling_hop(monkeypatch):
    asked, problems, _ = _collect(monkeypatch, True, "rolling")
    # only the service whose tool has the check is asked, with the target's code
    assert [k for f, k in asked if f == "openstack_db.offline_migrations"] == [
        {"service": "neutron", "release": "2026.1"}]
    assert problems == [
        "neutron: 2026.1's code has migrations that need every neutron server stopped "
        "(offline migrations pending): a rolling hop cannot run them with servers up; use "
        "strategy=fast_forward (the API is closed meanwhile)"]


def test_a_fast_forward_notes_them_and_none_pending_says_nothing(monkeypatch):
    _, problems, notes = _collect(monkeypatch, True, "fast_forward")
    assert problems == [] and notes[-1].endswith("the fast-forward runs them with the API "
                                                 "closed")
    _, problems, notes = _collect(monkeypatch, False, "rolling")
    assert problems == [] and not [n for n in notes if "offline" in n]


def test_the_services_upgrade_checks_run_with_the_target_code(monkeypatch):
    status = {"neutron": {"result": "Skipped", "comment": "neutron-status of 2024.1 crashes"},
              "cinder": {"result": "Failure", "failed": ["Policy File JSON to YAML "
                                                         "Migration"], "warnings": ["Quota"]}}
    asked, problems, notes = _collect(monkeypatch, False, "rolling", status)
    assert [k for f, k in asked if f == "openstack_db.upgrade_check"] == [
        {"service": "neutron", "release": "2026.1"}, {"service": "cinder", "release": "2026.1"},
        {"service": "cinder", "release": "2026.1"}]  # a failure is asked again
    assert problems == ["cinder-status upgrade check (2026.1): Policy File JSON to YAML "
                        "Migration failed"]
    assert "cinder-status upgrade check (2026.1): Quota warns" in notes
    assert ("neutron-status upgrade check (2026.1): not run: neutron-status of 2024.1 "
            "crashes") in notes


def test_the_database_precheck_is_given_each_services_purge_tool(monkeypatch):
    asked, _, _ = _collect(monkeypatch, False, "rolling")
    purge = [k for f, k in asked if f == "mysql_backup.precheck"][0]["purge"]
    # the soft-deleted rows of each database are advised with its own service's tool
    assert purge["nova_cell0"].startswith("nova-manage db archive_deleted_rows")
    assert purge["cinder"] == "cinder-manage db purge <days>"
    assert purge["glance"] == "glance-manage db purge --age_in_days <days>"
    assert "neutron" not in purge and "keystone" not in purge


def test_a_status_check_failing_once_is_asked_again(monkeypatch):
    """cinder's "Service UUIDs" fails while a volume is being scheduled: a second look."""
    answers = iter([{"result": "Failure", "failed": ["Service UUIDs"]},
                    {"result": "Success", "failed": []}])
    monkeypatch.setattr(leapfrog_precheck.time, "sleep", lambda s: None)
    problems, notes = [], []
    calls = []

    def call(opts, tgt, func, kwargs=None, **_):
        calls.append(kwargs)
        return {"ctl01": next(answers)}

    monkeypatch.setattr(leapfrog_precheck.leapfrog_minions, "call", call)
    monkeypatch.setattr(leapfrog_precheck.leapfrog_minions, "first", lambda *a: "ctl01")
    config = _config()
    config["services"] = ["cinder"]
    leapfrog_precheck._service_status({}, config, "2025.1", problems, notes)
    assert problems == [] and len(calls) == 2
    assert notes == ["cinder-status upgrade check (2025.1): Service UUIDs failed once, passed "
                     "when asked again 15 s later (a transient state)"]
    # seen twice: a problem
    answers = iter([{"result": "Failure", "failed": ["Service UUIDs"]}] * 2)
    leapfrog_precheck._service_status({}, config, "2025.1", problems, notes)
    assert problems == ["cinder-status upgrade check (2025.1): Service UUIDs failed"]


def _galera_config(backup_node="dbs01", server="n1"):
    """A cluster on Galera: its physical backup taken on ``backup_node`` (``server`` in
    haproxy's DB frontend)."""
    config = _config()
    config["roles"]["galera"] = "I@galera:server"
    config["database"]["galera"] = {"backup_node": backup_node, "frontend": "galera",
                                    "server": server}
    return config


def _galera_collect(monkeypatch, answers, failures=None, backup_node="dbs01"):
    """The precheck of a cluster with ``roles:galera``: each node's galera.precheck answer."""
    monkeypatch.setattr(leapfrog_precheck.leapfrog_minions, "call_each",
                        lambda opts, tgt, func, kwargs=None, **_: (
                            (answers, failures or {}) if func == "galera.precheck" else ({}, {})))
    monkeypatch.setattr(leapfrog_precheck.leapfrog_minions, "call",
                        lambda *a, **k: {"ctl01": {"at_head": True}})
    problems = []
    leapfrog_precheck._galera({}, _galera_config(backup_node), problems)  # pylint: disable=protected-access
    return problems


def test_each_galera_nodes_problems_are_named_with_the_node(monkeypatch):
    ok = {"ok": True, "problems": [], "status": {"running": True, "uuid": "u1"}}
    problems = _galera_collect(monkeypatch, {
        "dbs01": ok, "dbs02": ok,
        "dbs03": {"ok": False, "problems": ["n3 was left desynced (wsrep_desync=ON, ...): "
                                            "run galera.resync on n3"],
                  "status": {"running": True, "uuid": "u1"}}},
        failures={"dbs04": "dbs04 did not answer"})
    assert problems == ["galera on dbs04: dbs04 did not answer",
                        "galera on dbs03: n3 was left desynced (wsrep_desync=ON, ...): run "
                        "galera.resync on n3"]


def test_galera_nodes_of_two_clusters_are_refused(monkeypatch):
    problems = _galera_collect(monkeypatch, {
        "dbs01": {"ok": True, "problems": [], "status": {"running": True, "uuid": "u1"}},
        "dbs02": {"ok": True, "problems": [], "status": {"running": True, "uuid": "u2"}}})
    assert problems == ["galera: the nodes are in different clusters (dbs01: u1; dbs02: u2): "
                        "roles:galera must target one cluster's nodes"]


def test_without_roles_galera_no_node_is_asked(monkeypatch):
    asked = []
    monkeypatch.setattr(leapfrog_precheck.leapfrog_minions, "call_each",
                        lambda *a, **k: asked.append(a) or ({}, {}))
    problems = []
    leapfrog_precheck._galera({}, _config(), problems)  # pylint: disable=protected-access
    assert (asked, problems) == ([], [])


def test_an_optional_role_left_unset_is_no_role_of_the_cluster():
    """The inventory, the lock's minions and leapfrog.call see roles:galera only when set."""
    config = _config()
    assert "galera" not in leapfrog_schema.roles(config)
    config["roles"]["galera"] = "I@galera:server"
    assert leapfrog_schema.roles(config)["galera"] == "I@galera:server"


def test_the_backup_node_must_be_a_galera_node(monkeypatch):
    ok = {"ok": True, "problems": [], "status": {"running": True, "uuid": "u1"}}
    problems = _galera_collect(monkeypatch, {"dbs01": ok, "dbs02": ok}, backup_node="dbs09")
    assert problems == ["database:galera:backup_node: dbs09 is not a node of roles:galera "
                        "(I@galera:server: dbs01, dbs02); name one of them"]


def test_the_backup_node_must_be_a_standby_of_the_db_frontend(monkeypatch):
    """haproxy's view: the backup's node is a server marked backup in the DB frontend."""
    servers = [{"backend": "galera", "server": "n1", "status": "UP", "bck": 0},
               {"backend": "galera", "server": "n3", "status": "UP", "bck": 1}]
    monkeypatch.setattr(leapfrog_precheck.leapfrog_minions, "call",
                        lambda *a, **k: {"prx01": servers})

    def problems_with(node, server):
        problems = []
        leapfrog_precheck._haproxy({}, _galera_config(node, server), problems)  # pylint: disable=protected-access
        return problems

    assert problems_with("dbs03", "n3") == []
    assert problems_with("dbs01", "n1") == [
        "haproxy on prx01: galera/n1, the backup's node, is the DB frontend's active server "
        "(it takes the writes); back up from a standby (a server marked backup): set "
        "database:galera:backup_node and database:galera:server to one"]
    assert problems_with("dbs03", "") == [
        "haproxy on prx01: the DB frontend galera has no server dbs03 (the backup's node "
        "dbs03); set database:galera:frontend and database:galera:server to its haproxy names"]
