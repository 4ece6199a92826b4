"""leapfrog_schedules at unit speed: which schedulers a run turns off, which it leaves to the
operator, what it turns back on, a silent minion, a rebuilt node (minions faked: the real
schedulers are in tests/integration/test_schedules.py)."""
import os
import stat

import pytest

import leapfrog_errors
import leapfrog_schedules


class FakeMinions:
    """Minions with a scheduler on/off each; ``silent`` ones never answer."""

    def __init__(self, on=(), off=(), silent=()):
        self.enabled = {**{m: True for m in on}, **{m: False for m in off}}
        self.silent = set(silent)
        self.calls = []

    def __call__(self, ids, fun):
        self.calls.append((tuple(ids), fun))
        done, problems = {}, {}
        for mid in ids:
            if mid in self.silent:
                problems[mid] = f"{mid}: no answer to {fun} within 15 s"
            elif fun == "schedule.is_enabled":
                done[mid] = self.enabled[mid]
            else:
                self.enabled[mid] = fun == "schedule.enable"
                done[mid] = {"result": True, "comment": "ok"}
        return done, problems


@pytest.fixture
def root(tmp_path):
    return str(tmp_path)


def test_pause_turns_off_only_what_is_on_and_lists_it_privately(root):
    minions = FakeMinions(on=["ctl01", "cmp01"], off=["dbs01"])
    paused = leapfrog_schedules.PausedSchedules(root, "lab", minions)
    out = paused.pause(["ctl01", "cmp01", "dbs01"], "run-1")
    assert out == {"paused": ["cmp01", "ctl01"], "already_off": ["dbs01"], "silent": {}}
    assert minions.enabled == {"ctl01": False, "cmp01": False, "dbs01": False}
    assert sorted(paused.listed()) == ["cmp01", "ctl01"]
    assert paused.listed()["ctl01"]["run"] == "run-1"
    assert stat.S_IMODE(os.stat(paused.path).st_mode) == 0o600


def test_resume_turns_on_what_leapfrog_turned_off_never_the_operators(root):
    minions = FakeMinions(on=["ctl01"], off=["dbs01"])
    paused = leapfrog_schedules.PausedSchedules(root, "lab", minions)
    paused.pause(["ctl01", "dbs01"], "run-1")
    assert paused.resume() == {"resumed": ["ctl01"], "silent": {}}
    assert minions.enabled == {"ctl01": True, "dbs01": False}
    assert paused.listed() == {}
    assert paused.resume() == {"resumed": [], "silent": {}}  # nothing listed: no call
    assert minions.calls[-1][1] == "schedule.enable"


def test_a_resumed_run_keeps_what_its_first_attempt_paused(root):
    """A killed run left ctl01 off and listed: the resume finds it off, still lists it as
    leapfrog's (not the operator's), and the end turns it on."""
    minions = FakeMinions(on=["ctl01"])
    paused = leapfrog_schedules.PausedSchedules(root, "lab", minions)
    paused.pause(["ctl01"], "run-1")
    again = paused.pause(["ctl01"], "run-1")
    assert again == {"paused": ["ctl01"], "already_off": [], "silent": {}}
    assert paused.resume()["resumed"] == ["ctl01"]
    assert minions.enabled["ctl01"] is True


def test_a_silent_minion_is_named_and_stays_listed_until_it_answers(root):
    minions = FakeMinions(on=["ctl01", "ctl02"])
    paused = leapfrog_schedules.PausedSchedules(root, "lab", minions)
    paused.pause(["ctl01", "ctl02"], "run-1")
    minions.silent = {"ctl02"}
    out = paused.resume()
    assert out["resumed"] == ["ctl01"]
    assert "ctl02: no answer to schedule.enable" in out["silent"]["ctl02"]
    assert list(paused.listed()) == ["ctl02"]
    minions.silent = set()
    assert paused.resume()["resumed"] == ["ctl02"]


def test_a_rebuilt_node_is_turned_off_again_only_when_it_was_listed(root):
    minions = FakeMinions(on=["ctl01", "ctl02"])
    paused = leapfrog_schedules.PausedSchedules(root, "lab", minions)
    paused.pause(["ctl01"], "run-1")
    minions.enabled["ctl01"] = True  # the new VM's minion starts with its scheduler on
    assert paused.pause_rebuilt("ctl01", "run-1") is True
    assert minions.enabled["ctl01"] is False
    assert paused.pause_rebuilt("ctl02", "run-1") is False  # not leapfrog's to turn off
    assert minions.enabled["ctl02"] is True
    minions.silent = {"ctl01"}
    with pytest.raises(leapfrog_errors.LeapfrogError, match="ctl01: no answer"):
        paused.pause_rebuilt("ctl01", "run-1")
