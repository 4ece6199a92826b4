"""Bad inputs to the master side, through salt-run and event.send on the real master and
minions, as a careless operator or a compromised minion would type them: each refused with
one line that names the problem and the fix, and nothing changed (the master's leapfrog
journals and locks, its accepted minion keys)."""
import hashlib
import json
import os
import threading
import time

import pytest

import leapfrog_journal

CLUSTER = "lab"
INJECT = "60\nevil:\n  cmd.run:\n    - name: touch /tmp/leapfrog-pwned\n    - tgt: '*'"

# (runner function and arguments, words the error must hold)
BAD_INPUTS = [
    (["leapfrog.pause", "seconds=abc"], "pause (seconds) must be a number"),
    (["leapfrog.pause", "seconds=nan"], "not finite"),
    (["leapfrog.pause", "seconds=-5"], "must be from 0 to 3600"),
    (["leapfrog.switch_compute", "cmp01", "cluster=lab", "servers=forse"],
     "servers must be one of skip, migrate, force, got 'forse'"),
    (["leapfrog.switch_compute", "cmp01", "cluster=lab", "timeout=nan"], "not finite"),
    (["leapfrog.switch_compute", "cmp01", "cluster=lab", "timeout=-1"], "timeout (seconds)"),
    (["leapfrog.switch_compute", "cmp01", "cluster=lab", "release=2025.7"],
     "release must be one of"),
    (["leapfrog.switch_computes", "hosts=[cmp01, 'cmp02;rm']", "cluster=lab"],
     "host 'cmp02;rm': use 1-64 letters"),
    (["leapfrog.begin", "cluster=lab", "run=../../etc"], "run '../../etc': use 1-64"),
    (["leapfrog.begin", "cluster=lab", "run=it-bad", "steps=[one, 'a/b']"], "step 'a/b'"),
    (["leapfrog.approve", "cluster=lab", "run=never-ran"], "cluster lab has no run never-ran"),
    (["leapfrog.approve", "cluster=lab", "run=../x"], "run '../x': use 1-64"),
    (["leapfrog.data_plane_hosts", "cluster=lab", "batch=0"], "batch: expected a host count"),
    (["leapfrog.data_plane_hosts", "cluster=lab", "batch=abc"], "batch: expected a host count"),
    (["leapfrog.rollback_sources", "cluster=lab"], "name the upgrade run to roll back"),
    (["leapfrog.rollback_sources", "cluster=lab", "upgrade_run=never-ran"],
     "cluster lab has no run never-ran"),
    (["leapfrog.validate", "cluster=lab", "suffix=_cell0"],
     "would name production database(s) nova_cell0"),
    (["leapfrog.validate", "cluster=lab", "suffix=_api"],
     "would name production database(s) nova_api"),
    (["leapfrog.validate", "cluster=lab", "suffix=upgrade"], "use '_' then"),
    (["leapfrog.validate", "cluster=nope"], "nope"),
    (["leapfrog.wait_approval", "cluster=lab", "run=it-bad-gate", "expiry=nan"],
     "expiry (seconds)"),
    (["leapfrog.call", "nova_manage.versions", "role=nope", "cluster=lab"],
     "unknown role 'nope'"),
    (["leapfrog.step", "cluster=lab", "run=it-bad-step"], "step= and function= are required"),
    (["leapfrog.restore_node_key", "node=../../../etc"], "../../../etc"),
]


@pytest.fixture(scope="module")
def master(synced_master, salt_minions):  # pylint: disable=unused-argument
    return synced_master


def _tree(root):
    """Every file under ``root`` with its sha256 (what "nothing changed" compares)."""
    found = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            if name.endswith(".flock"):
                continue
            with open(path, "rb") as handle:
                found[os.path.relpath(path, root)] = hashlib.sha256(handle.read()).hexdigest()
    return found


def _state_of(master):
    return (_tree(os.path.join(master.config["cachedir"], "leapfrog")),
            _tree(os.path.join(master.config["pki_dir"], "minions")))


def _error(ret):
    data = ret.data if isinstance(ret.data, dict) else {}
    return str(data.get("error") or data.get("problems") or ret.stdout)


@pytest.mark.parametrize("args, words", BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_runner_input_is_refused_and_nothing_changes(master, args, words):
    before = _state_of(master)
    ret = master.salt_run_cli(timeout=120).run(*args)
    assert ret.returncode != 0, ret.stdout
    assert words in _error(ret), ret.stdout
    assert "Traceback" not in ret.stdout + ret.stderr
    assert _state_of(master) == before


def _orch(master, sls, timeout=180, **pillar):
    return master.salt_run_cli(timeout=timeout).run(
        "state.orch", sls, f"pillar={json.dumps({'cluster': CLUSTER, **pillar})}")


def _states(ret):
    found = next(iter(ret.data["data"].values()))
    return {value["__id__"]: value for value in found.values()}


def test_a_clone_suffix_naming_production_stops_the_rehearsal_before_it_begins(master):
    before = _state_of(master)
    ret = _orch(master, "orch.test_upgrade", suffix="_cell0")
    assert ret.returncode != 0
    found = _states(ret)
    assert list(found) == ["refused"]
    assert "would name production database(s) nova_cell0" in found["refused"]["comment"]
    assert _state_of(master) == before


def test_a_pillar_value_cannot_add_a_state_to_an_orchestration(master):
    run = "it-inject"
    ret = _orch(master, "orch.test_core", run=run, gate=True, expiry=INJECT)
    found = _states(ret)
    assert "evil" not in found and not os.path.exists("/tmp/leapfrog-pwned")
    assert sorted(found) == ["begin", "finish", "gate", "one", "two"]
    assert "expiry (seconds) must be" in found["gate"]["changes"]["return"]["error"]
    assert found["two"]["__state_ran__"] is False


def _journal(master, run):
    return leapfrog_journal.Journal(os.path.join(master.config["cachedir"], "leapfrog"),
                                    CLUSTER, run).read() or {}


def test_an_approval_event_sent_by_a_minion_never_opens_the_gate(master, salt_minions):
    run = "it-minion-approves"
    out = []
    thread = threading.Thread(target=lambda: out.append(
        _orch(master, "orch.test_core", run=run, gate=True, expiry=15)), daemon=True)
    thread.start()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        gate = next((s for s in _journal(master, run).get("steps", [])
                     if s["name"] == "gate"), {})
        if gate.get("status") == "running":
            break
        time.sleep(0.3)
    else:
        raise AssertionError("the gate never waited")
    minion = master.salt_cli(timeout=30)  # ctl01 runs event.send: the event is ctl01's
    for _ in range(3):  # shaped like the runner's own event, with and without a wrapper
        ret = minion.run("event.send", f"leapfrog/{CLUSTER}/{run}/approve", "step=gate",
                         "by=root", f"cluster={CLUSTER}", f"run={run}", minion_tgt="ctl01")
        assert ret.returncode == 0 and ret.data is True, ret
        time.sleep(1)
    assert _journal(master, run)["approvals"] == {}
    thread.join(120)
    found = _states(out[0])
    assert out[0].returncode != 0
    assert "expired after 15 s" in found["gate"]["changes"]["return"]["error"]
    assert found["two"]["__state_ran__"] is False
    assert _journal(master, run)["approvals"] == {}
    steps = {s["name"]: s["status"] for s in _journal(master, run)["steps"]}
    assert steps == {"one": "done", "gate": "failed", "two": "pending"}


def test_a_run_id_is_not_resumed_by_another_orchestration(master):
    run = "it-bound"
    ret = _orch(master, "orch.test_core", run=run)
    assert ret.returncode == 0, ret.stdout
    before = _state_of(master)
    ret = _orch(master, "orch.test_upgrade", run=run)
    assert ret.returncode != 0
    found = _states(ret)
    assert list(found) == ["refused"]  # before any state of the run is even rendered
    assert f"run {run} of cluster {CLUSTER} was begun with orch orch.test_core, not " \
           "orch.test_upgrade" in found["refused"]["comment"]
    assert _state_of(master) == before
