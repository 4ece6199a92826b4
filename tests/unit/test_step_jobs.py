"""A step run again waits for a job of its earlier attempt still running on a minion
(leapfrog_minions.wait_earlier_jobs), recognised by the step's Salt job metadata."""
import pytest

import leapfrog_errors
import leapfrog_minions

TAG = "prod1/r1/dbsync_nova"


class Minions:
    """saltutil.running answers, one per ask."""

    def __init__(self, *answers):
        self.answers, self.asked = list(answers), 0

    def cmd(self, ids, fun, tgt_type, timeout):
        assert fun == "saltutil.running" and tgt_type == "list"
        self.asked += 1
        return self.answers.pop(0) if self.answers else {}


def job(jid, tag=TAG):
    return {"jid": jid, "fun": "nova_manage.staged_sync",
            "metadata": {"leapfrog_step": tag} if tag else None}


def test_waits_until_the_earlier_job_ends_and_says_which():
    client = Minions({"ctl01": [job("111"), job("222", "prod1/r1/other"), job("333", None)]},
                     {"ctl01": [job("111")], "ctl02": []}, {"ctl01": []})
    slept = []
    with leapfrog_minions.for_step(TAG, again=True) as jobs:
        leapfrog_minions.wait_earlier_jobs(client, ["ctl01", "ctl02"], jobs,
                                           sleep=slept.append)
    assert client.asked == 3 and slept == [2, 2]
    assert jobs.waited == {"ctl01": ["111"]}  # only this step's job, counted once
    assert jobs.note() == ("an earlier attempt's job of this step still ran (ctl01: 111): "
                           "waited for it to end before running the step again")


def test_nothing_running_returns_at_once_with_no_note():
    client = Minions({"ctl01": [job("222", "prod1/r2/dbsync_nova")], "ctl02": False})
    with leapfrog_minions.for_step(TAG, again=True) as jobs:
        leapfrog_minions.wait_earlier_jobs(client, ["ctl01", "ctl02"], jobs,
                                           sleep=pytest.fail)
    assert jobs.waited == {} and jobs.note() is None


def test_a_job_that_never_ends_fails_the_step_naming_it_and_the_fix():
    now = [0.0]

    def sleep(seconds):
        now[0] += seconds

    client = Minions(*[{"ctl01": [job("111")]}] * 5)
    with leapfrog_minions.for_step(TAG, again=True) as jobs:
        with pytest.raises(leapfrog_errors.LeapfrogError) as raised:
            leapfrog_minions.wait_earlier_jobs(client, ["ctl01"], jobs, timeout=5,
                                               clock=lambda: now[0], sleep=sleep)
    assert str(raised.value) == (
        "step prod1/r1/dbsync_nova: job(s) of an earlier attempt still run after 5 s (ctl01: "
        "111): let them finish, or end them with `salt MINION saltutil.kill_job JID`, then "
        "re-run with the same run id")


def test_the_step_context_ends_with_its_block():
    with leapfrog_minions.for_step(TAG) as jobs:
        assert leapfrog_minions._STEP.get() is jobs  # pylint: disable=protected-access
    assert leapfrog_minions._STEP.get() is None  # pylint: disable=protected-access
