"""The Galera quorum asked before a step that changes data: a majority in a Primary
component lets the step run (the nodes out noted in its journal record and the report);
without one the step fails naming the nodes and the fix, and its function never runs."""
import pytest
import yaml

import leapfrog_cluster
import leapfrog_errors
import leapfrog_journal
import leapfrog_quorum
from tests.unit.test_journal_runner import PILLAR, bus, configure_loader_modules, runner  # noqa: F401 pylint: disable=unused-import

SYNCED = {"running": True, "primary": True, "state": "Synced", "size": 3, "expected_size": 3}


def _node(**changes):
    return dict(SYNCED, **changes)


def test_a_whole_cluster_has_nothing_to_say():
    assert leapfrog_quorum.verdict({"dbs01": SYNCED, "dbs02": SYNCED, "dbs03": SYNCED},
                                   {}) == (True, None)


def test_two_of_three_is_a_quorum_and_names_the_node_out():
    two = _node(size=2)
    assert leapfrog_quorum.verdict(
        {"dbs01": two, "dbs02": two, "dbs03": {"running": False, "expected_size": 3}}, {}) == (
        True, "the Galera cluster has 2 of its 3 nodes in its Primary component (dbs03: not "
              "running)")


def test_one_of_three_or_a_silent_minority_is_no_quorum():
    ok, text = leapfrog_quorum.verdict(
        {"dbs01": _node(size=1), "dbs02": {"running": False, "expected_size": 3}},
        {"dbs03": "dbs03: no answer to galera.status within 15 s"})
    assert not ok
    assert text == ("the Galera cluster has 1 of its 3 nodes in its Primary component "
                    "(dbs02: not running, dbs03: no answer)")
    non_primary = _node(primary=False, state="Initialized", size=1)
    assert leapfrog_quorum.verdict({m: non_primary for m in ("dbs01", "dbs02", "dbs03")},
                                   {})[0] is False


def _galera_pillar():
    pillar = yaml.safe_load(PILLAR)
    cluster = pillar["leapfrog"]["clusters"]["lab"]
    cluster["roles"]["galera"] = "I@galera:server"
    cluster["database"]["galera"] = {"backup_node": "dbs03", "server": "n3"}
    return pillar


def _guarded_step(bus, monkeypatch, answers, failures=None):
    """A db_sync step of a run on a cluster with roles:galera, its nodes answering so."""
    monkeypatch.setattr(leapfrog_cluster, "master_pillar", lambda opts: _galera_pillar())
    monkeypatch.setattr(leapfrog_quorum.leapfrog_minions, "call_each",
                        lambda opts, tgt, fun, **kw: (answers, failures or {}))
    bus["answer"] = {"ctl01": {"done": True}}
    runner.begin(cluster="lab", run="q1", steps=["dbsync_nova"], orch="orch.x")
    return runner.step(cluster="lab", run="q1", step="dbsync_nova", function="leapfrog.sync_it",
                       kind="db_sync")


def test_a_step_runs_with_two_nodes_of_three_and_says_so(bus, monkeypatch):
    two = _node(size=2)
    out = _guarded_step(bus, monkeypatch, {"dbs01": two, "dbs02": two,
                                           "dbs03": {"running": False, "expected_size": 3}})
    assert bus["calls"] == ["leapfrog.sync_it"] and out["result"] == {"ctl01": {"done": True}}
    journal = leapfrog_journal.Journal(runner._journal_root(), "lab", "q1").read()  # pylint: disable=protected-access
    assert journal["steps"][0]["notes"] == [
        "the Galera cluster has 2 of its 3 nodes in its Primary component (dbs03: not running)"]


def test_without_quorum_the_step_fails_and_changes_nothing(bus, monkeypatch):
    down = {"running": False, "expected_size": 3}
    out = _guarded_step(bus, monkeypatch, {"dbs01": _node(size=1), "dbs02": down,
                                           "dbs03": down})
    assert bus["calls"] == [] and out["retcode"] == 1
    assert "the Galera cluster has 1 of its 3 nodes in its Primary component (dbs02: not " \
        "running, dbs03: not running): no quorum" in out["error"]
    assert "galera.join on each stopped node" in out["error"]
    assert "resume the run with run=<its id>" in out["error"]


def test_without_roles_galera_nothing_is_asked(monkeypatch):
    monkeypatch.setattr(leapfrog_quorum.leapfrog_minions, "call_each",
                        lambda *a, **k: pytest.fail("asked"))
    config = {"roles": {"galera": ""}}
    assert leapfrog_quorum.check({}, config) is None
    config["roles"]["galera"] = "I@galera:server"
    monkeypatch.setattr(leapfrog_quorum.leapfrog_minions, "call_each",
                        lambda *a, **k: ({}, {"dbs01": "x", "dbs02": "y"}))
    with pytest.raises(leapfrog_errors.LeapfrogError, match="has 0 of its 2 nodes.*no quorum"):
        leapfrog_quorum.check({}, config)
