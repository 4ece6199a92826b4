"""The runner core on the real master (cfg01): orch.test_core's journal, resume, events,
approval from a second process, expiry, the cluster lock and the test-only fault switch."""
import datetime
import json
import os
import signal
import threading
import time

import pytest

import leapfrog_journal

# The runner core needs the master only (no minion answers in these runs).
pytestmark = pytest.mark.usefixtures("synced_master")

CLUSTER = "lab"


def orch(salt_master, timeout=120, test=False, **pillar):
    pillar = {"cluster": CLUSTER, **pillar}
    args = ["state.orch", "orch.test_core", f"pillar={json.dumps(pillar)}"]
    if test:
        args.append("test=True")
    return salt_master.salt_run_cli(timeout=timeout).run(*args)


def states(ret):
    found = next(iter(ret.data["data"].values()))
    return {value["__id__"]: value for value in found.values()}


def journal(salt_master, run):
    return leapfrog_journal.Journal(os.path.join(salt_master.config["cachedir"], "leapfrog"),
                                    CLUSTER, run).read()


def steps(salt_master, run):
    return {s["name"]: s for s in journal(salt_master, run)["steps"]}


def lock(salt_master):
    return leapfrog_journal.read_json(os.path.join(
        salt_master.config["cachedir"], "leapfrog", CLUSTER, "lock.json"))


def now():
    return datetime.datetime.now(tz=datetime.timezone.utc)


def tags(event_listener, salt_master, run, after):
    found = event_listener.get_events([(salt_master.id, f"leapfrog/{CLUSTER}/{run}/*")],
                                      after_time=after)
    return sorted((e.stamp, e.tag) for e in found)


def wait_until(check, timeout=60, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def in_background(func):
    out = []
    thread = threading.Thread(target=lambda: out.append(func()), daemon=True)
    thread.start()
    return thread, out


def gate_waiting(salt_master, run):
    def check():
        data = journal(salt_master, run)
        gate = data and {s["name"]: s for s in data["steps"]}.get("gate")
        return gate and gate["status"] == "running"
    return check


def test_failure_stops_the_run_and_a_rerun_resumes(salt_master, event_listener):
    run = "it-fail-resume"
    first_at = now()
    ret = orch(salt_master, run=run, testing={"fail_at": "two"})
    assert ret.returncode == 1, ret.stdout
    found = states(ret)
    assert found["one"]["result"] is True
    assert found["two"]["result"] is False
    assert "failure injected" in found["two"]["changes"]["return"]["error"]
    assert found["finish"]["__state_ran__"] is False
    recorded = steps(salt_master, run)
    assert recorded["one"]["status"] == "done"
    assert recorded["two"]["status"] == "failed"
    assert "failure injected at its start" in recorded["two"]["error"]
    assert journal(salt_master, run)["status"] == "failed"
    assert lock(salt_master) is None  # a failed run lets go of the cluster
    # progress lines with elapsed times on the operator's terminal
    assert f"[{CLUSTER} {run}] step one: done in 0:0" in ret.stderr
    assert f"[{CLUSTER} {run}] run failed after 0:0" in ret.stderr

    ret = salt_master.salt_run_cli(timeout=60).run("leapfrog.status", f"cluster={CLUSTER}",
                                                    f"run={run}")
    assert ret.returncode == 0, ret
    assert ret.data["status"] == "failed"
    assert ret.data["at_step"] == "two"
    assert run in ret.data["resume"]

    second_at = now()
    ret = orch(salt_master, run=run)
    assert ret.returncode == 0, ret.stdout
    found = states(ret)
    assert found["one"]["changes"]["return"]["ran"] is False  # not repeated
    assert found["two"]["changes"]["return"]["ran"] is True
    recorded = steps(salt_master, run)
    assert recorded["one"]["attempts"] == 1
    assert recorded["two"]["attempts"] == 2
    assert recorded["two"]["status"] == "done"
    data = journal(salt_master, run)
    assert data["status"] == "done"
    assert [a["status"] for a in data["attempts"]] == ["failed", "done"]

    prefix = f"leapfrog/{CLUSTER}/{run}/"
    first = [t for stamp, t in tags(event_listener, salt_master, run, first_at)
             if stamp < second_at]
    assert [t[len(prefix):] for t in first] == [
        "run/running", "one/running", "one/done", "two/running", "two/failed", "run/failed"]
    wait_until(lambda: f"{prefix}run/done" in [t for _, t in tags(
        event_listener, salt_master, run, second_at)], timeout=30, what="the run/done event")
    second = [t[len(prefix):] for _, t in tags(event_listener, salt_master, run, second_at)]
    assert second == ["run/running", "one/resumed", "two/running", "two/done", "run/done"]


def test_approval_from_a_second_process_unblocks_the_gate(salt_master, event_listener):
    run = "it-approve"
    thread, out = in_background(lambda: orch(salt_master, run=run, gate=True, expiry=90))
    wait_until(gate_waiting(salt_master, run), what="the gate to wait")
    assert steps(salt_master, run)["two"]["status"] == "pending"
    since = now()
    ret = salt_master.salt_run_cli(timeout=60).run("leapfrog.approve", f"cluster={CLUSTER}",
                                                    f"run={run}")
    assert ret.returncode == 0, ret
    assert ret.data["approved"] == "gate"
    thread.join(90)
    ret = out[0]
    assert ret.returncode == 0, ret.stdout
    recorded = steps(salt_master, run)
    assert recorded["gate"]["status"] == "done"
    assert recorded["two"]["status"] == "done"
    assert journal(salt_master, run)["approvals"]["gate"]["by"]
    seen = wait_until(lambda: [t for _, t in tags(event_listener, salt_master, run, since)
                               if t.endswith("/run/done")] and
                      [t for _, t in tags(event_listener, salt_master, run, since)],
                      timeout=30, what="the run/done event")
    assert f"leapfrog/{CLUSTER}/{run}/approve" in seen
    assert f"leapfrog/{CLUSTER}/{run}/gate/done" in seen


def test_a_short_expiry_aborts_cleanly(salt_master):
    run = "it-expiry"
    started = time.monotonic()
    ret = orch(salt_master, run=run, gate=True, expiry=2)
    assert ret.returncode == 1, ret.stdout
    assert time.monotonic() - started < 60
    found = states(ret)
    error = found["gate"]["changes"]["return"]["error"]
    assert "expired after 2 s: nothing after this step ran" in error
    assert found["two"]["__state_ran__"] is False
    recorded = steps(salt_master, run)
    assert recorded["gate"]["status"] == "failed"
    assert recorded["two"]["status"] == "pending"
    assert journal(salt_master, run)["status"] == "failed"
    assert lock(salt_master) is None


def test_a_second_run_is_refused_with_the_running_ones_id(salt_master):
    first = "it-lock-first"
    thread, out = in_background(lambda: orch(salt_master, run=first, gate=True, expiry=90))
    wait_until(gate_waiting(salt_master, first), what="the first run to hold the lock")
    assert lock(salt_master)["run"] == first
    ret = orch(salt_master, run="it-lock-second")
    assert ret.returncode == 1, ret.stdout
    error = states(ret)["begin"]["changes"]["return"]["error"]
    assert f"cluster {CLUSTER} is busy: run {first} holds the lock" in error
    assert states(ret)["begin"]["changes"]["return"]["running"] == first
    assert states(ret)["one"]["__state_ran__"] is False
    ret = salt_master.salt_run_cli(timeout=60).run("leapfrog.approve", f"cluster={CLUSTER}",
                                                    f"run={first}")
    assert ret.returncode == 0, ret
    thread.join(90)
    assert out[0].returncode == 0, out[0].stdout
    assert lock(salt_master) is None


def test_test_mode_shows_the_steps_and_changes_nothing(salt_master):
    run = "it-test-mode"
    ret = orch(salt_master, run=run, test=True)
    assert ret.returncode == 0, ret.stdout
    text = states(ret)["plan"]["comment"]
    assert "one: would run" in text and "two: would run" in text
    assert journal(salt_master, run) is None


def test_a_killed_run_is_taken_over_and_resumed(salt_master):
    run = "it-killed"
    thread, out = in_background(lambda: orch(
        salt_master, run=run, testing={"stall_at": "two", "stall_seconds": 120}))

    def two_running():
        data = journal(salt_master, run)
        return data and {s["name"]: s for s in data["steps"]}.get("two", {}).get(
            "status") == "running"

    wait_until(two_running, what="step two to stall")
    holder = lock(salt_master)
    assert holder["run"] == run
    os.kill(holder["pid"], signal.SIGKILL)  # the salt-run process dies mid-step
    thread.join(60)
    assert out[0].returncode != 0

    ret = salt_master.salt_run_cli(timeout=60).run("leapfrog.status", f"cluster={CLUSTER}",
                                                    f"run={run}")
    assert ret.data["status"] == "running" and ret.data["at_step"] == "two"
    assert ret.data["lock"]["alive"] is False

    ret = orch(salt_master, run=run)
    assert ret.returncode == 0, ret.stdout
    assert f"[{CLUSTER} {run}] lock taken over from run {run}" in ret.stderr
    data = journal(salt_master, run)
    assert [a["status"] for a in data["attempts"]] == ["interrupted", "done"]
    assert "is gone" in data["attempts"][1]["took_over"]["reason"]
    recorded = steps(salt_master, run)
    assert recorded["one"]["attempts"] == 1
    assert (recorded["two"]["attempts"], recorded["two"]["interrupted"]) == (2, 1)
    assert lock(salt_master) is None


def test_a_resumed_step_waits_for_its_earlier_attempts_job_still_running(salt_master,
                                                                          salt_minions):
    """A minion's job outlives the salt-run that sent it: the step run again waits for it
    to end instead of running the same work twice at once."""
    run, length = "it-earlier-job", 12
    ret = salt_master.salt_run_cli(timeout=60).run(
        "leapfrog.begin", f"cluster={CLUSTER}", f"run={run}", 'steps=["sleeper"]')
    assert ret.returncode == 0, ret
    step = ["leapfrog.step", f"cluster={CLUSTER}", f"run={run}", "step=sleeper",
            "function=leapfrog.call", "function_kwargs=" + json.dumps({
                "func": "test.sleep", "target": "L@ctl01", "cluster": CLUSTER,
                "kwargs": {"length": length}})]
    thread, out = in_background(lambda: salt_master.salt_run_cli(timeout=120).run(*step))
    minion = salt_master.salt_cli(timeout=30)

    def sleeping():
        ret = minion.run("saltutil.running", minion_tgt="ctl01")
        jobs = [j for j in (ret.data or []) if j.get("fun") == "test.sleep"]
        return jobs[0] if jobs else None

    first = wait_until(sleeping, what="the step's job to run on ctl01")
    seen = time.monotonic()  # the first job ends about `length` s after this
    assert first["metadata"] == {"leapfrog_step": f"{CLUSTER}/{run}/sleeper"}
    os.kill(lock(salt_master)["pid"], signal.SIGKILL)  # the job goes on without it
    thread.join(60)
    assert out[0].returncode != 0
    assert sleeping()["jid"] == first["jid"]

    ret = salt_master.salt_run_cli(timeout=120).run(*step)
    assert ret.returncode == 0, ret
    # its own job ran after the first had ended (2 s: the first ran before it was seen)
    assert time.monotonic() - seen >= 2 * length - 2
    record = steps(salt_master, run)["sleeper"]
    assert record["status"] == "done" and record["attempts"] == 2
    assert record["notes"] == [
        f"an earlier attempt's job of this step still ran (ctl01: {first['jid']}): waited for "
        "it to end before running the step again"]
