"""The runner core functions (begin, step, finish, status, approve, wait_approval) with
loader dunders, a journal under a temporary cachedir and the event bus replaced."""
import pytest
import yaml

import leapfrog_cluster
import leapfrog_run
from tests.loader import load

runner = load("runners", "leapfrog")

PILLAR = """
leapfrog:
  clusters:
    lab:
      releases: {current: "2024.1", target: "2025.1", path: ["2024.1", "2025.1"]}
      roles: {controller: "I@nova:controller", compute: "I@nova:compute",
              database: "I@mysql:server", haproxy: "I@haproxy:proxy",
              hypervisor: "G@roles:kvm"}
      haproxy: {socket: /run/haproxy.sock, vip: 10.0.0.10}
      database: {host: db, user: root, password: SECRET-PW,
                 databases: [nova_api, nova, nova_cell0, keystone, glance, placement]}
      vms: {image: /i.qcow2, os: {os: Debian, oscodename: trixie}, redeploy_sls: ctl,
            nodes: {ctl01: {hypervisor: kvm01, domain: ctl01}}}
      backups: {dir: /b}
      data_plane: {}
"""


@pytest.fixture
def configure_loader_modules(tmp_path):
    return {runner: {"__opts__": {"id": "cfg01", "cachedir": str(tmp_path),
                                  "sock_dir": str(tmp_path / "sock")},
                     "__context__": {}}}


@pytest.fixture
def bus(monkeypatch):
    """The master's bus and runner functions replaced: ``events`` fired, ``calls`` made;
    a step's function returns ``bus["answer"]`` when set (called with the function's name
    when callable), else echoes its kwargs (``bad.fun`` fails)."""
    state = {"events": [], "calls": [], "answer": None}
    monkeypatch.setattr(leapfrog_cluster, "master_pillar", lambda opts: yaml.safe_load(PILLAR))
    monkeypatch.setattr(leapfrog_run.Master, "fire",
                        lambda self, tag, data: state["events"].append((tag, data)))
    monkeypatch.setattr(runner, "_say", lambda line: None)

    def call(self, fun, args=None, kwargs=None):  # pylint: disable=unused-argument
        state["calls"].append(fun)
        if callable(state["answer"]):
            return state["answer"](fun)
        if state["answer"] is not None:
            return state["answer"]
        if fun == "bad.fun":
            raise runner.leapfrog_errors.LeapfrogError("bad.fun failed: boom")
        return {"fun": fun, "kwargs": kwargs}

    monkeypatch.setattr(leapfrog_run.Master, "run_function", call)
    return state


def test_a_run_through_the_runner(bus):
    ret = runner.begin(cluster="lab", run="r1", steps=["one", "two"], orch="orch.x")
    assert ret["status"] == "running" and ret["attempt"] == 1
    ret = runner.step(cluster="lab", run="r1", step="one", function="test.arg",
                      function_kwargs={"a": 1})
    assert ret["ran"] is True and ret["result"]["kwargs"] == {"a": 1}
    ret = runner.step(cluster="lab", run="r1", step="two", function="bad.fun")
    assert ret["retcode"] == 1 and runner.__context__["retcode"] == 1
    assert "bad.fun failed" in ret["error"]

    status = runner.status(cluster="lab")
    assert status["run"] == "r1" and status["status"] == "failed"
    assert status["at_step"] == "two"
    assert status["resume"] == ("salt-run state.orch orch.x pillar='{\"cluster\": \"lab\", "
                                "\"run\": \"r1\"}'")
    assert "lock" not in status
    assert status["runs"] == [{"run": "r1", "status": "failed",
                               "created": status["created"]}]

    runner.__context__.clear()
    runner.begin(cluster="lab", run="r1", steps=["one", "two"])
    assert runner.step(cluster="lab", run="r1", step="one", function="test.arg")["ran"] \
        is False
    assert runner.step(cluster="lab", run="r1", step="two", function="test.arg")["ran"]
    assert runner.finish(cluster="lab", run="r1")["status"] == "done"
    assert bus["calls"] == ["test.arg", "bad.fun", "test.arg"]
    assert "retcode" not in runner.__context__
    tags = [t for t, _ in bus["events"]]
    assert tags[-1] == "leapfrog/lab/r1/run/done"
    assert not any("SECRET-PW" in repr(d) for _, d in bus["events"])


def test_begin_makes_a_run_id_and_a_second_run_is_refused(bus):
    first = runner.begin(cluster="lab")["run"]
    assert len(first) == 20
    ret = runner.begin(cluster="lab", run="other")
    assert ret["retcode"] == 1 and ret["running"] == first
    assert f"run {first} holds the lock" in ret["error"]
    status = runner.status(cluster="lab", run=first)
    assert status["lock"]["run"] == first and status["lock"]["alive"] is True


def test_finish_refuses_a_run_with_a_failed_step(bus):
    runner.begin(cluster="lab", run="r1", steps=["one"])
    runner.step(cluster="lab", run="r1", step="one", function="bad.fun")
    runner.__context__.clear()
    ret = runner.finish(cluster="lab", run="r1")
    assert ret["retcode"] == 1 and "step(s) one not done" in ret["error"]


def test_finish_marks_steps_never_run_as_skipped(bus):
    runner.begin(cluster="lab", run="r1", steps=["one", "optional"])
    runner.step(cluster="lab", run="r1", step="one", function="test.arg")
    assert runner.finish(cluster="lab", run="r1")["steps"] == {
        "one": "done", "optional": "skipped"}


def test_test_mode_changes_nothing(bus, tmp_path):
    ret = runner.begin(cluster="lab", run="r1", steps=["one"], test=True)
    assert ret["text"].splitlines()[1] == "  one: would run"
    ret = runner.step(cluster="lab", run="r1", step="one", function="test.arg", test=True)
    assert ret["ran"] is False and ret["result"]["test"] is True
    assert bus["calls"] == [] and not (tmp_path / "leapfrog").exists()


def test_the_fault_switch_from_a_pillar_override(bus):
    override = {"leapfrog": {"clusters": {"lab": {"testing": {"fail_at": "one"}}}}}
    runner.begin(cluster="lab", run="r1", pillar=override)
    ret = runner.step(cluster="lab", run="r1", step="one", function="test.arg",
                      pillar=override)
    assert ret["retcode"] == 1 and "failure injected" in ret["error"]
    assert bus["calls"] == []


def test_the_fault_switch_from_the_environment(bus, monkeypatch):
    monkeypatch.setenv("LEAPFROG_FAIL_AT", "one:end")
    runner.begin(cluster="lab", run="r1")
    ret = runner.step(cluster="lab", run="r1", step="one", function="test.arg")
    assert ret["retcode"] == 1 and "at its end" in ret["error"]
    assert bus["calls"] == ["test.arg"]


def test_approve_records_and_fires(bus, monkeypatch):
    runner.begin(cluster="lab", run="r1")
    ret = runner.approve(cluster="lab", run="r1")
    assert ret["retcode"] == 1 and "no step of run r1 waits for approval" in ret["error"]
    runner.__context__.clear()
    ret = runner.approve(cluster="lab", run="r1", step="gate")
    assert ret["approved"] == "gate"
    assert bus["events"][-1][0] == "leapfrog/lab/r1/approve"
    assert bus["events"][-1][1]["step"] == "gate"
    # approved ahead of time: the gate does not wait (no event read)

    class NoBus:
        def get_event(self, **kwargs):
            raise AssertionError("waited")

        def destroy(self):
            pass

    monkeypatch.setattr(leapfrog_run.salt.utils.event, "get_master_event", lambda *a, **k: NoBus())
    ret = runner.wait_approval(cluster="lab", run="r1", step="gate", expiry=5)
    assert ret["ran"] is True and "approved by" in ret["result"]["summary"]


def test_approve_an_unknown_run(bus):
    ret = runner.approve(cluster="lab", run="nope")
    assert ret["retcode"] == 1 and ret["error"] == "cluster lab has no run nope"


def test_wait_approval_expires(bus, monkeypatch):
    class QuietBus:
        def get_event(self, wait, **kwargs):
            return None

        def destroy(self):
            pass

    monkeypatch.setattr(leapfrog_run.salt.utils.event, "get_master_event", lambda *a, **k: QuietBus())
    runner.begin(cluster="lab", run="r1", steps=["gate", "after"])
    ret = runner.wait_approval(cluster="lab", run="r1", step="gate", expiry=0.2)
    assert ret["retcode"] == 1 and "expired after 0.2 s" in ret["error"]
    status = runner.status(cluster="lab", run="r1")
    assert [s["status"] for s in status["steps"]] == ["failed", "pending"]
    assert "lock" not in status


def test_a_resumed_run_gets_the_plan_it_began_with(bus):
    """Resuming a fast-forward after the control plane reached its target must not re-plan
    ("nothing to do"): the plan stored at begin is what plan returns for that run."""
    import leapfrog_steps  # pylint: disable=import-outside-toplevel

    kept = leapfrog_steps.Plan("orch.x", "lab", "2025.1", "the plan", why="because")
    kept.add("one", "verify", "leapfrog.call", {"func": "test.ping"})
    runner.begin(cluster="lab", run="r9", steps=["one"], orch="orch.x", plan=kept.to_dict())
    again = runner.plan(cluster="lab", run="r9", to="2025.1")
    assert again["resumed"] is True and again["possible"] is True
    assert again["plan"] == kept.to_dict() and again["steps"] == ["one"]
    runner.finish(cluster="lab", run="r9")
