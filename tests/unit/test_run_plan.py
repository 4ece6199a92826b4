"""leapfrog.run_plan with loader dunders: a new run's plan is built from the facts once, a
begun run gets its stored plan back even when the cluster changed in between, a run id
resumes only its orchestration and target, and rollback reads step kinds and nodes, so
renaming a step breaks nothing."""
import pytest

import leapfrog_steps
from tests.unit.test_journal_runner import PILLAR, bus, configure_loader_modules, runner  # noqa: F401 pylint: disable=unused-import

DATA_PLANE = "orch.upgrade_data_plane"


def hosts(batches):
    return lambda opts, config, canary=None, batch=None: {"canary": ["cmp01"], "batches": batches,
                                                     "pause": 0}


def test_a_resume_runs_the_stored_plan_though_the_computes_changed(bus, monkeypatch):
    monkeypatch.setattr(runner.leapfrog_facts, "data_plane_hosts", hosts([["cmp02"]]))
    first = runner.run_plan(DATA_PLANE, {"cluster": "lab", "run": "dp1", "to": "2025.1"})
    assert "retcode" not in first, first
    names = [s["name"] for s in first["plan"]["steps"]]
    assert "cmp02_switch" in names
    runner.begin(cluster="lab", run="dp1", steps=names, orch=DATA_PLANE, target="2025.1",
                 plan=first["plan"])
    # meanwhile a compute was added and the pillar's batches changed
    monkeypatch.setattr(runner.leapfrog_facts, "data_plane_hosts", hosts([["cmp02", "cmp03"]]))
    again = runner.run_plan(DATA_PLANE, {"cluster": "lab", "run": "dp1", "batch": 2})
    assert again["plan"] == first["plan"]
    fresh = runner.run_plan(DATA_PLANE, {"cluster": "lab", "to": "2025.1"})
    assert "batch01_switch" in [s["name"] for s in fresh["plan"]["steps"]]


def test_a_run_id_resumes_only_its_orchestration_and_target(bus, monkeypatch):
    monkeypatch.setattr(runner.leapfrog_facts, "data_plane_hosts", hosts([["cmp02"]]))
    first = runner.run_plan(DATA_PLANE, {"cluster": "lab", "run": "dp2", "to": "2025.1"})
    runner.begin(cluster="lab", run="dp2", steps=["x"], orch=DATA_PLANE, target="2025.1",
                 plan=first["plan"])
    other = runner.run_plan(DATA_PLANE, {"cluster": "lab", "run": "dp2", "to": "2026.1"})
    assert other["retcode"] == 1
    assert "was begun with target 2025.1, not 2026.1" in other["refused"]
    other = runner.run_plan("orch.rollback_control_plane", {"cluster": "lab", "run": "dp2"})
    assert "was begun with orch orch.upgrade_data_plane" in other["refused"]
    assert "must be one of" in runner.run_plan("orch.evil", {"cluster": "lab"})["refused"]


def test_renamed_steps_break_no_rollback(bus, monkeypatch):
    """The rollback finds the DB backup, the disk backups and the stopped computes by kind
    and node, whatever the steps were called."""
    monkeypatch.setattr(runner.leapfrog_rebuild, "previous_keys", lambda opts, n, b: [])
    plan = leapfrog_steps.Plan("orch.upgrade_control_plane", "lab", "2025.1", "t")
    for name, kind, node in [("save_everything", "backup_db", None),
                             ("check_it", "verify_backup", None),
                             ("keep_ovn", "backup_ovsdb", None),
                             ("ctl01_keep_a_copy", "backup_disk", "ctl01"),
                             ("halt_cmp07", "stop_compute", "cmp07")]:
        plan.add(name, kind, "x.y", node=node)
    results = {"save_everything": {"dbs01": {"id": "db-1"}},
               "check_it": {"dbs01": {"valid": True}},
               "keep_ovn": {"dbs01": {"id": "ovsdb-1", "databases": {
                   "OVN_Northbound": {"rows": 12}, "OVN_Southbound": {"rows": 30}}}},
               "ctl01_keep_a_copy": {"kvm01": {"backup": "ctl01/disk-1"}},
               "halt_cmp07": {"host": "cmp07", "release_before": "2024.1"}}
    runner.begin(cluster="lab", run="up1", steps=plan.names(), orch=plan.orch,
                 target="2025.1", plan=plan.to_dict())
    for step in plan.steps:
        bus["answer"] = results[step.name]
        runner.step(cluster="lab", run="up1", step=step.name, function="x.y",
                    kind=step.kind, node=step.node)
    sources = runner.rollback_sources(cluster="lab", upgrade_run="up1")
    assert sources["db_backups"] == {"dbs01": "db-1"}
    assert sources["ovsdb_backups"] == {"dbs01": "ovsdb-1"}
    assert sources["disks"] == {"ctl01": "ctl01/disk-1"}
    assert sources["computes"] == {"cmp07": "2024.1"}


def _galera_run(run):
    plan = leapfrog_steps.Plan("orch.upgrade_control_plane", "lab", "2025.1", "t")
    plan.add("backup_dbs", "backup_db", "x.y", node="dbs03")
    plan.add("verify_db_backup", "verify_backup", "x.y", node="dbs03")
    runner.begin(cluster="lab", run=run, steps=plan.names(), orch=plan.orch,
                 target="2025.1", plan=plan.to_dict())
    return plan


def test_a_galera_backup_rolls_back_the_whole_cluster(bus, monkeypatch):
    """A physical backup (its result's kind) is a Galera backup: the rollback restores it
    on its node and needs every node of roles:galera; without them it names the fix."""
    import leapfrog_history  # pylint: disable=import-outside-toplevel

    plan = _galera_run("gal1")
    answers = {"backup_dbs": {"dbs03": {"kind": "galera", "id": "gal-1", "seqno": 42}},
               "verify_db_backup": {"dbs03": {"valid": True}}}
    for step in plan.steps:
        bus["answer"] = answers[step.name]
        runner.step(cluster="lab", run="gal1", step=step.name, function="x.y",
                    kind=step.kind, node=step.node)
    ret = runner.rollback_sources(cluster="lab", upgrade_run="gal1")
    assert ret["retcode"] == 1
    assert "the run's DB backup is a Galera cluster's, but roles:galera (unset) matches no " \
        "minion" in ret["error"]
    config = runner._load("lab", None)[1]  # pylint: disable=protected-access
    config["roles"]["galera"] = "I@galera:server"
    monkeypatch.setattr(leapfrog_history.leapfrog_minions, "expected",
                        lambda opts, target: ["dbs02", "dbs01", "dbs03"])
    sources = leapfrog_history.rollback_sources(
        runner.__opts__, runner._journal_root(), "lab", config, "gal1")  # pylint: disable=protected-access
    assert sources["db_backups"] == {} and sources["galera_backups"] == {"dbs03": "gal-1"}
    assert sources["galera_nodes"] == ["dbs01", "dbs02", "dbs03"]


def test_the_gate_names_the_first_point_of_no_return_after_it():
    """The data plane's canary switch is irreversible but already behind its gate."""
    import leapfrog_history  # pylint: disable=import-outside-toplevel
    from tests.unit.test_golden_plans import build  # pylint: disable=import-outside-toplevel

    plan = build("data_plane_canary_batches")
    data = {"meta": {"plan": plan}}
    assert leapfrog_history.next_no_return(data, "approval")["name"] == "batch01_switch"
    assert leapfrog_history.next_no_return(data, "cmp004_switch") is None
    assert leapfrog_history.next_no_return({}, "approval") is None


def test_side_by_side_branches_start_together_and_the_next_step_needs_their_ends():
    plan = leapfrog_steps.Plan("orch.x", "lab", "2025.1", "t")
    plan.add("a", "precheck")
    plan.side_by_side(lambda: (plan.add("b1", "record"), plan.add("b2", "record")),
                      lambda: plan.add("c", "record"))
    plan.side_by_side()  # no branch: nothing changes
    plan.add("d", "verify")
    assert {s.name: s.needs for s in plan.check().steps} == {
        "a": [], "b1": ["a"], "b2": ["b1"], "c": ["a"], "d": ["b2", "c"]}
    assert plan.render().splitlines()[-2:] == [
        "   4. c [record]: nothing [after a]", "   5. d [verify]: nothing [after b2, c]"]


def test_a_step_runs_a_runner_function_in_process_and_fails_on_its_retcode(
        monkeypatch):
    def failing(**kwargs):
        runner.__context__["retcode"] = 1
        return {"error": f"nothing matched {kwargs['target']}", "retcode": 1}

    monkeypatch.setitem(runner.__salt__, "leapfrog.good", lambda **kwargs: {"got": kwargs})
    monkeypatch.setitem(runner.__salt__, "leapfrog.bad", failing)
    run = runner._master().run_function  # pylint: disable=protected-access
    assert run("leapfrog.good", kwargs={"a": 1}) == {"got": {"a": 1}}
    with pytest.raises(runner.leapfrog_errors.LeapfrogError,
                       match="^leapfrog.bad failed: nothing matched L@x$"):
        run("leapfrog.bad", kwargs={"target": "L@x"})
    assert "retcode" not in runner.__context__  # the step's own failure sets it, not this
    with pytest.raises(runner.leapfrog_errors.LeapfrogError, match="no runner function"):
        run("leapfrog.nothing")


def test_steps_that_overlap_or_join_run_in_a_process_of_their_own():
    plan = leapfrog_steps.Plan("orch.x", "lab", "2025.1", "t")
    plan.add("a", "precheck")
    plan.side_by_side(lambda: (plan.add("b1", "record"), plan.add("b2", "record")),
                      lambda: plan.add("c", "record"))
    plan.add("d", "verify")
    plan.add("e", "record")
    assert plan.side_by_side_steps() == ["b1", "b2", "c"]
    # d joins the branches: in Salt's loop a plain d would wait in place for b2 and c
    # and hold back b2 until c ends; e follows one step only and runs in place
    assert plan.to_dict()["parallel"] == ["b1", "b2", "c", "d"]


def test_the_closing_states_wait_for_the_plans_ends_only():
    """report, finish and the failure stop require the steps no step needs: a plain state
    requiring a running step waits in Salt's loop and holds back every pending one."""
    from tests.unit.test_safety_core import _render  # pylint: disable=import-outside-toplevel

    plan = leapfrog_steps.Plan("orch.x", "lab", "2025.1", "t")
    plan.add("a", "precheck")
    plan.side_by_side(lambda: (plan.add("b1", "record"), plan.add("b2", "record")),
                      lambda: plan.add("c", "record"))
    plan.add("d", "verify")
    plan.add("e", "record", needs=["a"])
    assert plan.ends() == ["d", "e"]
    states = {k: {key: value for item in v["salt.runner"] for key, value in item.items()}
              for k, v in _render(plan.to_dict(), "lab", "r1").items()}
    assert states["report"]["require"] == [{"salt": "d"}, {"salt": "e"}]
    assert states["finish"]["require"] == [{"salt": "d"}, {"salt": "e"}, {"salt": "report"}]
    assert states["stopped_after_a_failure"]["onfail_any"] == [
        {"salt": "d"}, {"salt": "e"}, {"salt": "report"}]
    assert [k for k, v in states.items() if v.get("parallel")] == ["b1", "b2", "c", "d", "e"]


def test_a_cleanup_step_runs_through_leapfrog_cleanup_and_reopens_what_it_undid():
    from tests.unit.test_safety_core import _render  # pylint: disable=import-outside-toplevel

    plan = leapfrog_steps.Plan("orch.x", "lab", "2025.1", "t")
    plan.add("clone", "clone", "leapfrog.call", {"func": "mysql_backup.clone"})
    plan.add("sync", "db_sync", "leapfrog.call", {"func": "nova_manage.staged_sync"})
    plan.on_failure("drop", "drop_clones", "leapfrog.call",
                    {"func": "mysql_backup.drop_clone", "role": "database"},
                    of=["clone", "sync"])
    states = {k: {key: value for item in v["salt.runner"] for key, value in item.items()}
              for k, v in _render(plan.to_dict(), "lab", "r1").items()}
    drop = states["drop"]
    assert drop["name"] == "leapfrog.cleanup" and drop["parallel"] is True
    assert (drop["cluster"], drop["run"], drop["step"]) == ("lab", "r1", "drop")
    assert drop["function"] == "leapfrog.call"
    assert drop["function_kwargs"] == {"func": "mysql_backup.drop_clone", "role": "database"}
    assert drop["reopen"] == ["clone", "sync"]
    assert drop["onfail_any"] == [{"salt": "clone"}, {"salt": "sync"}]
