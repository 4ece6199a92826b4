"""The run journal, the cluster lock, step tracking, approval waits and the fault switch."""
import functools
import json
import os
import re
import socket
import subprocess
import sys

import pytest

import leapfrog_fault
import leapfrog_journal as lj


class Clock:
    """A fake clock: time moves only when told."""

    def __init__(self, now=1_790_000_000.0):
        self.now = now

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def seen():
    return {"events": [], "lines": []}


def tracker(tmp_path, seen, clock, run="r1", **kwargs):
    return lj.Tracker(str(tmp_path), "lab", run, clock=clock,
                      fire=lambda tag, data: seen["events"].append((tag, data)),
                      say=seen["lines"].append, **kwargs)


def suffixes(seen, run="r1"):
    prefix = f"leapfrog/lab/{run}/"
    return [tag[len(prefix):] for tag, _ in seen["events"]]


def _work(calls, name, fail=False):
    """A step's work: records its name in ``calls``, fails when told."""
    def run():
        calls.append(name)
        if fail:
            raise RuntimeError(f"{name} broke")
        return {"summary": f"{name} ok"}
    return run


def dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ------------------------------------------------------------------------- ids and files
def test_run_ids_sort_by_time_and_differ():
    first = lj.new_run_id(1_790_000_000)
    assert re.match(r"^\d{8}-\d{6}-[0-9a-f]{4}$", first)
    assert first.startswith("20260921-")
    assert lj.new_run_id(1_790_000_060) > first
    assert len({lj.new_run_id(1_790_000_000) for _ in range(50)}) > 40


def test_names_that_would_escape_the_folder_are_refused(tmp_path):
    for bad in ("../x", "a/b", "", ".hidden", "x" * 65):
        with pytest.raises(lj.leapfrog_errors.LeapfrogError):
            lj.Journal(str(tmp_path), "lab", bad)


def test_writes_are_atomic_and_leave_no_temporary_file(tmp_path):
    path = str(tmp_path / "a" / "journal.json")
    lj.write_json(path, {"x": 1})
    lj.write_json(path, {"x": 2})
    assert json.load(open(path)) == {"x": 2}
    assert os.listdir(tmp_path / "a") == ["journal.json"]


# ------------------------------------------------------------------------- steps, resume
def test_a_run_records_each_step_with_times_results_and_events(tmp_path, seen, clock):
    t = tracker(tmp_path, seen, clock)
    t.begin(["one", "two"], meta={"orch": "orch.test_core"})

    def one():
        clock.advance(2.5)
        return {"comment": "did one", "rows": 3}

    assert t.run("one", one) == ({"comment": "did one", "rows": 3}, True)
    t.end("done")
    data = json.load(open(tmp_path / "lab" / "r1" / "journal.json"))
    assert data["status"] == "done"
    one_rec, two_rec = data["steps"]
    assert one_rec["status"] == "done" and one_rec["elapsed"] == 2.5
    assert one_rec["summary"] == "did one"
    assert one_rec["started"].endswith("Z") and one_rec["ended"] > one_rec["started"]
    assert two_rec["status"] == "pending"
    assert suffixes(seen) == ["run/running", "one/running", "one/done", "run/done"]
    assert all(d["cluster"] == "lab" and d["run"] == "r1" for _, d in seen["events"])
    assert "[lab r1] step one: done in 0:02.5 [run 0:02.5]" in seen["lines"]
    assert not os.path.exists(tmp_path / "lab" / "lock.json")


def test_steps_whose_work_a_cleanup_undid_run_again_on_the_resume(tmp_path, seen, clock):
    """The rehearsal's clones are dropped after its failure: the steps that made and used
    them are pending again, so a resume makes them again instead of failing on no clone."""
    calls = []
    work = functools.partial(_work, calls)

    first = tracker(tmp_path, seen, clock)
    first.begin(["snapshot", "clone", "sync", "verify"])
    first.run("snapshot", work("snapshot"))
    first.run("clone", work("clone"))
    with pytest.raises(lj.StepFailed):
        first.run("sync", work("sync", fail=True))
    assert first.reopen(["clone", "sync", "verify"], "its work was undone by drop") == \
        ["clone", "sync"]  # verify never ran: nothing to reopen
    records = {s["name"]: s for s in first.journal.read()["steps"]}
    assert [r["status"] for r in records.values()] == ["done", "pending", "pending", "pending"]
    assert records["clone"]["notes"] == ["its work was undone by drop"]
    assert records["clone"]["attempts"] == 1  # what ran is still counted

    again = tracker(tmp_path, seen, clock)
    again.begin(["snapshot", "clone", "sync", "verify"])
    for name in ("snapshot", "clone", "sync", "verify"):
        again.run(name, work(name))
    assert calls == ["snapshot", "clone", "sync", "clone", "sync", "verify"]


def test_a_rerun_with_the_same_id_resumes_at_the_failed_step(tmp_path, seen, clock):
    calls = []
    work = functools.partial(_work, calls)

    first = tracker(tmp_path, seen, clock)
    first.begin(["one", "two", "three"])
    first.run("one", work("one"))
    with pytest.raises(lj.StepFailed, match="step two failed: two broke"):
        first.run("two", work("two", fail=True))
    data = first.journal.read()
    assert data["status"] == "failed"
    assert [s["status"] for s in data["steps"]] == ["done", "failed", "pending"]
    assert not os.path.exists(first.lock.path)  # a failed run releases the cluster

    seen["events"].clear()
    again = tracker(tmp_path, seen, clock)
    again.begin(["one", "two", "three"])
    assert again.run("one", work("one")) == ({"summary": "one ok"}, False)
    again.run("two", work("two"))
    again.run("three", work("three"))
    again.end("done")
    assert calls == ["one", "two", "two", "three"]  # one was not repeated
    data = again.journal.read()
    assert [(s["name"], s["attempts"]) for s in data["steps"]] == [
        ("one", 1), ("two", 2), ("three", 1)]
    assert [a["status"] for a in data["attempts"]] == ["failed", "done"]
    # the run succeeded: its failed attempt keeps the error, the run has none (the report's)
    assert "error" not in data and data["attempts"][0]["error"] == "step two failed: two broke"
    assert suffixes(seen) == ["run/running", "one/resumed", "two/running", "two/done",
                              "three/running", "three/done", "run/done"]
    assert any("resuming run (was failed; attempt 2): 1 step(s) done, next: two" in line
               for line in seen["lines"])


def test_decorator_returns_the_recorded_result_of_a_done_step(tmp_path, seen, clock):
    t = tracker(tmp_path, seen, clock)
    t.begin()
    calls = []

    @t.step("backup")
    def backup(name):
        calls.append(name)
        return {"file": f"{name}.sql", "sha256": "ab"}

    assert backup("nova") == {"file": "nova.sql", "sha256": "ab"}
    assert backup("other") == {"file": "nova.sql", "sha256": "ab"}
    assert calls == ["nova"]


def test_a_step_interrupted_by_a_crash_runs_again(tmp_path, seen, clock):
    t = tracker(tmp_path, seen, clock)
    t.begin(["one"])
    with t.journal.edit() as data:  # what a killed process leaves behind
        data["steps"][0].update(status="running", attempts=1)
    again = tracker(tmp_path, seen, clock)
    again.begin(["one"])
    assert again.run("one", lambda: {"summary": "ok"})[1] is True
    record = again.journal.step("one")
    assert (record["status"], record["attempts"], record["interrupted"]) == ("done", 2, 1)
    assert again.journal.read()["attempts"][0]["status"] == "interrupted"


def test_a_skipped_result_is_recorded_as_skipped(tmp_path, seen, clock):
    t = tracker(tmp_path, seen, clock)
    t.begin()
    t.run("migrate", lambda: {"skipped": "no servers on cmp01"})
    assert t.journal.step("migrate")["status"] == "skipped"
    assert suffixes(seen)[-1] == "migrate/skipped"


def test_test_mode_writes_nothing(tmp_path, seen, clock):
    t = tracker(tmp_path, seen, clock, test=True)
    result, ran = t.run("one", lambda: pytest.fail("must not run"), describe="leapfrog.x")
    assert (result, ran) == ({"test": True, "would_run": "leapfrog.x"}, False)
    assert not os.path.exists(tmp_path / "lab")


def test_reserved_and_odd_step_names_are_refused(tmp_path, seen, clock):
    t = tracker(tmp_path, seen, clock)
    for bad in ("run", "approve", "a/b"):
        with pytest.raises(lj.leapfrog_errors.LeapfrogError):
            t.run(bad, dict)


def test_results_are_stored_as_json(tmp_path, seen, clock):
    t = tracker(tmp_path, seen, clock)
    t.begin()
    result, _ = t.run("x", lambda: {"when": clock, "tuple": (1, 2)})
    assert result["tuple"] == [1, 2] and isinstance(result["when"], str)


# ------------------------------------------------------------------------- lock
def test_a_second_run_is_refused_with_the_running_ones_id(tmp_path, seen, clock):
    tracker(tmp_path, seen, clock, run="first").begin()
    with pytest.raises(lj.LockBusy) as err:
        tracker(tmp_path, seen, clock, run="second").begin()
    assert err.value.holder["run"] == "first"
    assert "cluster lab is busy: run first holds the lock (pid" in str(err.value)
    assert not os.path.exists(tmp_path / "lab" / "second")


def test_the_lock_is_reentrant_for_its_own_process(tmp_path, clock):
    lock = lj.ClusterLock(str(tmp_path), "lab", clock=clock)
    first = lock.acquire("r1")
    clock.advance(5)
    again = lock.acquire("r1")
    assert again["taken_over"] is None
    assert again["lock"]["taken_at"] == first["lock"]["taken_at"]
    assert again["lock"]["heartbeat"] == first["lock"]["heartbeat"] + 5


def test_a_lock_whose_process_is_gone_is_taken_over(tmp_path, seen, clock):
    lock = lj.ClusterLock(str(tmp_path), "lab", clock=clock)
    pid = dead_pid()
    lj.write_json(lock.path, {"run": "crashed", "pid": pid, "pid_start": 1,
                              "host": socket.gethostname(), "heartbeat": clock(),
                              "taken_at": "x"})
    data = tracker(tmp_path, seen, clock, run="next").begin()
    assert data["attempts"][-1]["took_over"]["run"] == "crashed"
    assert f"pid {pid}" in data["attempts"][-1]["took_over"]["reason"]
    assert lock.read()["run"] == "next" and lock.read()["pid"] == os.getpid()
    assert any("lock taken over from run crashed" in line for line in seen["lines"])


def test_a_reused_pid_does_not_keep_a_dead_run_alive(tmp_path, clock):
    lock = lj.ClusterLock(str(tmp_path), "lab", clock=clock)
    mine = lj.me()
    lj.write_json(lock.path, dict(mine, run="old", pid_start=mine["pid_start"] - 1,
                                  heartbeat=clock()))
    assert lock.acquire("new")["taken_over"]["run"] == "old"


def test_a_lock_from_another_host_counts_until_its_heartbeat_is_stale(tmp_path, clock):
    lock = lj.ClusterLock(str(tmp_path), "lab", stale_after=600, clock=clock)
    lj.write_json(lock.path, {"run": "elsewhere", "pid": 1, "pid_start": 1,
                              "host": "other-master", "heartbeat": clock()})
    clock.advance(599)
    with pytest.raises(lj.LockBusy, match="run elsewhere holds the lock"):
        lock.acquire("mine")
    clock.advance(2)
    taken = lock.acquire("mine")
    assert "heartbeat is 601 s old (stale after 600 s)" in taken["taken_over"]["reason"]


def test_release_only_drops_the_runs_own_lock(tmp_path, clock):
    lock = lj.ClusterLock(str(tmp_path), "lab", clock=clock)
    lock.acquire("r1")
    assert lock.release("r2") is False and lock.read()["run"] == "r1"
    assert lock.release("r1") is True and lock.read() is None


# ------------------------------------------------------------------------- approval
def waiter(journal, clock, events=()):
    queue = list(events)

    def next_event(timeout):
        clock.advance(timeout)
        return queue.pop(0) if queue else None
    return next_event


def test_approval_expires_with_a_clear_message(tmp_path, clock):
    journal = lj.Journal(str(tmp_path), "lab", "r1")
    started = clock()
    with pytest.raises(lj.ApprovalExpired) as err:
        lj.wait_approval(journal, "gate", 7200, waiter(journal, clock), clock=clock, poll=60)
    assert clock() - started == 7200
    assert str(err.value) == (
        "approval of step gate (run r1, cluster lab) expired after 7200 s: nothing after "
        "this step ran. Approve with: salt-run leapfrog.approve cluster=lab run=r1, then "
        "re-run with the same run id to resume")


def test_an_approval_event_alone_never_opens_the_gate(tmp_path, clock):
    """Any minion can fire ``leapfrog/<cluster>/<run>/approve``: the event only wakes the
    waiter, the journal (written by leapfrog.approve on the master) decides."""
    journal = lj.Journal(str(tmp_path), "lab", "r1")
    events = [{"step": "gate", "by": "mallory"}, {"step": "gate", "by": "mallory"}]
    with pytest.raises(lj.ApprovalExpired):
        lj.wait_approval(journal, "gate", 5, waiter(journal, clock, events), clock=clock,
                         poll=1)
    assert journal.read() is None or not journal.read()["approvals"]


def test_an_approval_in_the_journal_ends_the_wait_at_its_event(tmp_path, clock):
    journal = lj.Journal(str(tmp_path), "lab", "r1")
    beats = []
    queue = [None, {"step": "other", "by": "x"}]

    def next_event(timeout):
        clock.advance(timeout)
        if not queue:  # leapfrog.approve: the journal first, then the event
            lj.record_approval(journal, "gate", "alice", clock=clock)
            return {"step": "gate", "by": "alice"}
        return queue.pop(0)
    approval = lj.wait_approval(journal, "gate", 60, next_event, clock=clock, poll=1,
                                heartbeat=lambda: beats.append(1))
    assert approval["by"] == "alice"
    assert journal.read()["approvals"] == {"gate": approval}
    assert len(beats) == 3


def test_an_approval_already_in_the_journal_does_not_wait(tmp_path, clock):
    journal = lj.Journal(str(tmp_path), "lab", "r1")
    lj.record_approval(journal, "gate", "bob", clock=clock)
    approval = lj.wait_approval(journal, "gate", 5, lambda t: pytest.fail("waited"),
                                clock=clock)
    assert approval["by"] == "bob"


def test_an_expired_gate_fails_the_run_and_a_resumed_run_passes_once_approved(
        tmp_path, seen, clock):
    t = tracker(tmp_path, seen, clock)
    t.begin(["gate", "after"])

    def gate():
        return lj.wait_approval(t.journal, "gate", 10, waiter(t.journal, clock),
                                clock=clock, poll=5)

    with pytest.raises(lj.StepFailed, match="expired after 10 s"):
        t.run("gate", gate, kind="approval")
    assert [s["status"] for s in t.journal.read()["steps"]] == ["failed", "pending"]
    lj.record_approval(t.journal, "gate", "carol", clock=clock)
    again = tracker(tmp_path, seen, clock)
    again.begin(["gate", "after"])
    assert again.run("gate", gate, kind="approval")[0]["by"] == "carol"
    assert lj.waiting_gate(again.journal) is None


def test_the_waiting_gate_is_found_for_approve_without_a_step(tmp_path, seen, clock):
    t = tracker(tmp_path, seen, clock)
    t.begin()

    def gate():
        assert lj.waiting_gate(t.journal) == "canary_gate"
        return {}

    t.run("canary_gate", gate, kind="approval")


# ------------------------------------------------------------------------- fault switch
def test_fault_switch_from_pillar_fails_a_step_at_its_start(tmp_path, seen, clock):
    faults = leapfrog_fault.Faults.from_config({"testing": {"fail_at": ["two"]}}, environ={})
    t = tracker(tmp_path, seen, clock, faults=faults)
    t.begin()
    ran = []
    with pytest.raises(lj.StepFailed, match="failure injected at its start"):
        t.run("two", lambda: ran.append(1))
    assert ran == []
    assert t.journal.read()["attempts"][0]["faults"] == ["fail at two:start"]


def test_fault_switch_at_the_end_fails_after_the_work(tmp_path, seen, clock):
    faults = leapfrog_fault.Faults.from_config({}, environ={"LEAPFROG_FAIL_AT": "a,two:end"})
    t = tracker(tmp_path, seen, clock, faults=faults)
    t.begin()
    ran = []
    with pytest.raises(lj.StepFailed, match="injected at its end"):
        t.run("two", lambda: ran.append(1))
    assert ran == [1]
    assert t.journal.step("two")["status"] == "failed"


def test_fault_switch_stalls_a_step(tmp_path, seen, clock):
    slept = []
    faults = leapfrog_fault.Faults.from_config(
        {"testing": {"stall_at": "one", "stall_seconds": 42}}, environ={},
        sleep=slept.append)
    t = tracker(tmp_path, seen, clock, faults=faults)
    t.begin()
    t.run("one", dict)
    t.run("two", dict)
    assert slept == [42.0]
    # noted before the stall: what a fault matrix waits for before it strikes
    assert t.journal.step("one")["notes"] == [
        "stalled at its start by the test-only fault switch"]
    assert "notes" not in t.journal.step("two")


def test_fault_switch_refuses_a_bad_boundary():
    with pytest.raises(lj.leapfrog_errors.LeapfrogError, match="boundary"):
        leapfrog_fault.Faults.from_config({"testing": {"fail_at": "x:middle"}}, environ={})
    assert not leapfrog_fault.Faults.from_config({}, environ={})


def _in_child(work):
    """Run ``work()`` in a forked child (as Salt runs a ``parallel`` state); its result."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read)
        try:
            out = json.dumps(work())
        except Exception as exc:  # pylint: disable=broad-except
            out = json.dumps({"raised": type(exc).__name__, "text": str(exc)})
        os.write(write, out.encode())
        os._exit(0)  # pylint: disable=protected-access
    os.close(write)
    with os.fdopen(read) as handle:
        text = handle.read()
    os.waitpid(pid, 0)
    return json.loads(text)


def test_a_step_run_side_by_side_shares_its_parents_lock_and_leaves_it_to_it(tmp_path, seen,
                                                                            clock):
    parent = tracker(tmp_path, seen, clock)
    parent.begin(["a", "b"])
    holder = parent.lock.read()

    def fail_in_child():
        child = tracker(tmp_path, {"events": [], "lines": []}, clock)
        relation = child.lock.relation("r1")
        try:
            child.run("a", lambda: 1 / 0)
        except lj.StepFailed as exc:
            return {"relation": relation, "error": str(exc)}
        return {"relation": relation}

    out = _in_child(fail_in_child)
    assert out == {"relation": "child", "error": "step a failed: division by zero"}
    assert parent.lock.read() == holder  # still the parent's, not released by the child
    assert parent.journal.step("a")["status"] == "failed"
    assert parent.lock.relation("r1") == "holder"
    assert _in_child(lambda: lj.ClusterLock(str(tmp_path), "lab").relation("r2")) is None


def test_another_run_in_a_child_process_is_still_refused(tmp_path, seen, clock):
    tracker(tmp_path, seen, clock).begin()
    out = _in_child(lambda: tracker(tmp_path, {"events": [], "lines": []}, clock,
                                    run="other").begin())
    assert out["raised"] == "LockBusy" and "run r1 holds the lock" in out["text"]


def test_a_process_that_is_no_child_of_the_holder_is_refused(tmp_path, clock):
    lock = lj.ClusterLock(str(tmp_path), "lab", clock=clock)
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        lj.write_json(lock.path, {"run": "r1", "pid": proc.pid,
                                  "pid_start": lj.process_start(proc.pid),
                                  "host": socket.gethostname(), "heartbeat": clock()})
        assert lock.relation("r1") is None
        with pytest.raises(lj.LockBusy):
            lock.acquire("r1")
    finally:
        proc.kill()
        proc.wait()
