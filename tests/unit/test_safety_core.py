"""Safety of the master side at unit speed: parsing of numbers and enums, scrubbing of
secrets, private journal files, run ids bound to their orchestration and target, a lock
never taken from a live holder, the rehearsal's clone suffix, a rollback refused over later
runs, and orchestration values that cannot add a state."""
import json
import os
import stat
import time

import jinja2
import pytest
import yaml

import leapfrog_errors
import leapfrog_journal as lj
import leapfrog_parse
import leapfrog_schema
import leapfrog_scrub
from tests.conftest import REPO
from tests.unit.test_journal_runner import PILLAR, bus, configure_loader_modules, runner  # noqa: F401 pylint: disable=unused-import

SECRET = "Sup3r-S3cret"


# ------------------------------------------------------------------------- parse
@pytest.mark.parametrize("value, error", [
    ("nan", "not finite"), (float("inf"), "not finite"), ("abc", "got 'abc'"),
    (-1, "from 0 to 604800"), (True, "got True"), ("", "got ''"), (None, "got None"),
    (10 ** 9, "from 0 to 604800"),
])
def test_seconds_refuse_what_is_not_a_finite_duration(value, error):
    with pytest.raises(leapfrog_errors.LeapfrogError) as err:
        leapfrog_parse.seconds(value, "timeout")
    assert "timeout (seconds)" in str(err.value) and error in str(err.value)


def test_numbers_booleans_and_choices_parse_what_an_operator_types():
    assert leapfrog_parse.seconds("2.5", "t") == 2.5
    assert leapfrog_parse.number("3", "keep", minimum=1, integer=True) == 3
    with pytest.raises(leapfrog_errors.LeapfrogError, match="whole number"):
        leapfrog_parse.number("2.5", "keep", integer=True)
    assert leapfrog_parse.boolean("yes", "force") is True
    assert leapfrog_parse.boolean(0, "force") is False
    with pytest.raises(leapfrog_errors.LeapfrogError, match="force must be true or false, got 'maybe'"):
        leapfrog_parse.boolean("maybe", "force")
    with pytest.raises(leapfrog_errors.LeapfrogError,
                       match="servers must be one of skip, migrate, force, got 'forse'"):
        leapfrog_parse.choice("forse", "servers", leapfrog_schema.SERVER_POLICIES)


# ------------------------------------------------------------------------- scrub
def test_scrub_masks_every_secret_shape_and_keeps_the_rest():
    pem = f"-----BEGIN RSA PRIVATE KEY-----\nMIIE{SECRET}\n-----END RSA PRIVATE KEY-----"
    data = {
        "db_password": SECRET, "minion_pem": pem, "sealed": {"data": "opaque", "x-token": SECRET},
        "schema": {"console_auth_tokens": {"columns": "abc"}, "tokens_used": 3},
        "diff": f"-connection = mysql+pymysql://nova:{SECRET}@db/nova\n+password = {SECRET}",
        "headers": f"X-Auth-Token: {SECRET}", "cmd": f"mysql --password {SECRET} -u nova",
        "list": [f"token={SECRET}", pem], "rows": 3, "user": "nova",
    }
    out = leapfrog_scrub.scrub(data)
    assert SECRET not in json.dumps(out)
    assert out["rows"] == 3 and out["user"] == "nova"
    assert out["schema"] == data["schema"]  # a schema fingerprint reads back whole
    assert "mysql+pymysql://nova:******@db/nova" in out["diff"]
    assert "BEGIN RSA PRIVATE KEY" in out["list"][1]


# ------------------------------------------------------------------------- journal files
def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_journal_and_lock_are_private_and_hold_no_secret(tmp_path):
    tracker = lj.Tracker(str(tmp_path / "leapfrog"), "lab", "r1")
    tracker.begin(["backup"])
    tracker.run("backup", lambda: {"config_diff": f"password = {SECRET}", "rows": 1})
    assert _mode(tmp_path / "leapfrog" / "lab" / "lock.json") == 0o600
    with pytest.raises(lj.StepFailed) as err:
        tracker.run("fail", lambda: (_ for _ in ()).throw(
            RuntimeError(f"mysql://nova:{SECRET}@db/nova refused")))
    assert SECRET not in str(err.value)
    run_dir = tmp_path / "leapfrog" / "lab" / "r1"
    assert _mode(run_dir) == 0o700 and _mode(run_dir.parent) == 0o700
    assert _mode(run_dir / "journal.json") == 0o600
    assert SECRET not in (run_dir / "journal.json").read_text()


def test_events_and_progress_lines_are_scrubbed(tmp_path):
    fired, lines = [], []
    tracker = lj.Tracker(str(tmp_path), "lab", "r1", fire=lambda t, d: fired.append(d),
                         say=lines.append)
    tracker.begin(["x"])
    with pytest.raises(lj.StepFailed):
        tracker.run("x", lambda: (_ for _ in ()).throw(RuntimeError(f"token={SECRET}")))
    assert fired and SECRET not in json.dumps(fired) and SECRET not in "\n".join(lines)


# ------------------------------------------------------------------------- binding, lock
def test_a_run_id_resumes_only_its_own_orchestration_and_target(tmp_path):
    first = lj.Tracker(str(tmp_path), "lab", "r1")
    first.begin(["approval", "upgrade"], meta={"orch": "orch.upgrade_data_plane",
                                               "target": "2025.1"})
    first.end("failed", error="stopped")
    before = (tmp_path / "lab" / "r1" / "journal.json").read_text()
    other = lj.Tracker(str(tmp_path), "lab", "r1")
    with pytest.raises(lj.RunMismatch) as err:
        other.begin(["x"], meta={"orch": "orch.upgrade_control_plane", "target": "2025.1"})
    assert "was begun with orch orch.upgrade_data_plane, not orch.upgrade_control_plane" in \
        str(err.value) and "start a new run" in str(err.value)
    with pytest.raises(lj.RunMismatch, match="target 2025.1, not 2026.1"):
        other.begin(["x"], meta={"orch": "orch.upgrade_data_plane", "target": "2026.1"})
    assert (tmp_path / "lab" / "r1" / "journal.json").read_text() == before
    assert lj.ClusterLock(str(tmp_path), "lab").read() is None  # nothing locked either
    again = other.begin(["approval"], meta={"orch": "orch.upgrade_data_plane",
                                            "target": "2025.1"})
    assert len(again["attempts"]) == 2
    other.end("done")


def test_a_live_holder_keeps_the_lock_however_old_its_heartbeat(tmp_path):
    clock = [1_000_000.0]
    lock = lj.ClusterLock(str(tmp_path), "lab", stale_after=60, clock=lambda: clock[0])
    lj.write_json(lock.path, dict(lj.me(), run="old", heartbeat=clock[0]))
    lj.write_json(lock.path, dict(lock.read(), pid=os.getppid(),
                                  pid_start=lj.process_start(os.getppid())))
    clock[0] += 10_000
    with pytest.raises(lj.LockBusy, match="run old holds the lock"):
        lock.acquire("new")


def test_the_heartbeat_thread_refreshes_the_lock_until_the_run_ends(tmp_path):
    tracker = lj.Tracker(str(tmp_path), "lab", "r1")
    lj.Heartbeat.stop(tracker.lock, "r1")
    tracker.begin(["x"])
    lj.Heartbeat.stop(tracker.lock, "r1")
    thread = lj.Heartbeat.start(tracker.lock, "r1", every=0.05)
    first = tracker.lock.read()["heartbeat"]
    time.sleep(0.3)
    assert tracker.lock.read()["heartbeat"] > first
    tracker.end("done")
    thread.join(1)
    assert not thread.is_alive() and tracker.lock.read() is None


# ------------------------------------------------------------------------- rehearsal suffix
@pytest.mark.parametrize("suffix, problem", [
    ("_cell0", "would name production database(s) nova_cell0"),
    ("_api", "would name production database(s) nova_api"),
    ("", "use '_' then"), ("upgrade", "use '_' then"), ("_UP", "use '_' then"),
    ("_x\n", "use '_' then"), ("_a;drop", "use '_' then"), (5, "use '_' then"),
])
def test_a_clone_suffix_that_names_production_is_refused(suffix, problem):
    found = leapfrog_schema.clone_suffix(suffix, ["nova", "nova_api", "nova_cell0"])
    assert found and problem in found


def test_the_default_suffix_is_fine():
    assert leapfrog_schema.clone_suffix("_upgrade", ["nova", "nova_api", "nova_cell0"]) is None


# ------------------------------------------------------------------------- runner
def test_begin_refuses_another_orchestrations_run_id_in_test_mode_too(bus):
    assert runner.begin(cluster="lab", run="r1", steps=["one"], orch="orch.a",
                        target="2025.1")["status"] == "running"
    runner.finish(cluster="lab", run="r1")
    ret = runner.begin(cluster="lab", run="r1", steps=["one"], orch="orch.b", test=True)
    assert ret["retcode"] == 1 and "was begun with orch orch.a" in ret["error"]


def test_pause_and_switch_refuse_bad_numbers_and_policies(bus):
    ret = runner.pause(seconds="abc")
    assert ret["retcode"] == 1 and "pause (seconds) must be a number" in ret["error"]
    ret = runner.switch_compute("cmp01", release="2025.1", cluster="lab", servers="forse")
    assert ret["retcode"] == 1 and "servers must be one of skip, migrate, force" in ret["error"]
    ret = runner.switch_compute("cmp01", release="2025.1", cluster="lab", timeout="nan")
    assert ret["retcode"] == 1 and "not finite" in ret["error"]
    ret = runner.switch_compute("cmp01", release="2025.7", cluster="lab")
    assert ret["retcode"] == 1 and "release must be one of" in ret["error"]


def test_wait_approval_refuses_a_nan_expiry(bus):
    runner.begin(cluster="lab", run="r1", steps=["gate"], orch="orch.x")
    ret = runner.wait_approval(cluster="lab", run="r1", step="gate", expiry="nan")
    assert ret["retcode"] == 1 and "expiry (seconds)" in ret["error"]


def _finished_run(root, run, orch, created, contracted=False):
    journal = lj.Journal(root, "lab", run)
    with journal.edit() as data:
        plan = {"steps": [{"name": "backup_dbs", "kind": "backup_db"},
                          {"name": "verify_db_backup", "kind": "verify_backup"},
                          {"name": "finish_keystone", "kind": "db_finish", "irreversible": True,
                           "changes": "keystone DB: contract"}]}
        data.update(status="done", created=created, meta={"orch": orch, "plan": plan})
        data["steps"] = [{"name": "backup_dbs", "kind": "backup_db", "status": "done",
                          "result": {"dbs01": {"id": f"backup-{run}"}}},
                         {"name": "verify_db_backup", "kind": "verify_backup", "status": "done",
                          "result": {"dbs01": {"valid": True}}},
                         {"name": "finish_keystone", "kind": "db_finish",
                          "status": "done" if contracted else "pending",
                          "ended": "2026-01-01T01:00:00.000Z"}]


def test_rollback_past_the_point_of_no_return_is_refused_unless_forced(bus):
    root = runner._journal_root()  # pylint: disable=protected-access
    _finished_run(root, "r5", "orch.upgrade_control_plane", "2026-01-05T00:00:00.000Z",
                  contracted=True)
    ret = runner.rollback_sources(cluster="lab", upgrade_run="r5")
    assert ret["retcode"] == 1
    assert ("run r5 passed its point of no return at step finish_keystone (keystone DB: "
            "contract; done 2026-01-01T01:00:00.000Z)") in ret["error"]
    assert "Go forward instead" in ret["error"] and "force=True" in ret["error"]
    assert runner.rollback_sources(cluster="lab", upgrade_run="r5",
                                   force=True)["db_backups"] == {"dbs01": "backup-r5"}


def test_rollback_of_a_run_that_a_later_run_built_on_is_refused_unless_forced(bus):
    root = runner._journal_root()  # pylint: disable=protected-access
    _finished_run(root, "r1", "orch.upgrade_control_plane", "2026-01-01T00:00:00.000Z")
    _finished_run(root, "r2", "orch.upgrade_data_plane", "2026-01-02T00:00:00.000Z")
    ret = runner.rollback_sources(cluster="lab", upgrade_run="r1")
    assert ret["retcode"] == 1
    assert "followed by finished upgrade run(s) r2" in ret["error"] and "force=True" in \
        ret["error"]
    ret = runner.rollback_sources(cluster="lab", upgrade_run="r1", force=True)
    assert ret["db_backups"] == {"dbs01": "backup-r1"} and ret["later_runs"] == ["r2"]
    assert runner.rollback_sources(cluster="lab", upgrade_run="r2")["later_runs"] == []


# ------------------------------------------------------------------------- rendering
INJECT = "x\nevil:\n  cmd.run:\n    - name: touch /tmp/pwned\n    - tgt: '*'"


def _render(plan, cluster, run):
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(REPO),
                             extensions=["jinja2.ext.do"])
    env.filters["json"] = json.dumps
    template = env.from_string(
        '{%- from "orch/run.jinja" import run_plan with context %}'
        "{{ run_plan(got, rollback='orch.r') }}")
    got = {"plan": plan, "cluster": cluster, "run": run, "overrides": {}}
    return yaml.safe_load(template.render(got=got))


def test_no_rendered_value_can_add_a_state():
    import leapfrog_steps  # pylint: disable=import-outside-toplevel

    plan = leapfrog_steps.Plan("orch.x", INJECT, INJECT, INJECT, expiry=INJECT)
    plan.add("approval", "approval")
    plan.add("step2", "verify", "leapfrog.call", {"kwargs": {"x": INJECT}}, node=INJECT,
             where=INJECT, changes=INJECT)
    plan = plan.to_dict()
    plan["steps"][1]["name"] = INJECT  # as if a host name had got through
    states = _render(plan, cluster=INJECT, run=INJECT)
    assert "evil" not in states
    assert sorted(states) == sorted(["begin", "probe", "approval", INJECT, "report", "finish",
                                     "stopped_after_a_failure"])
    assert {"expiry": INJECT} in states["approval"]["salt.runner"]
    assert {"salt": "begin"} in states["stopped_after_a_failure"]["salt.runner"][-2]["require"]


def test_a_schema_fingerprint_survives_the_scrub_with_tables_named_like_secrets():
    """keystone's access_token and credential tables: the journal keeps their fingerprints
    (the rehearsal compares them), only real secrets are masked."""
    fingerprint = {"dbs01": {"keystone": {"access_token": {"ddl": "ab12"},
                                          "credential": {"ddl": "cd34"},
                                          "alembic_version": {"ddl": "ef56", "rows": ["x"]}}}}
    assert leapfrog_scrub.scrub(fingerprint) == fingerprint
    assert leapfrog_scrub.scrub({"token": "abc"}) != {"token": "abc"}

