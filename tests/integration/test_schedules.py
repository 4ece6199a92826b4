"""Salt's schedulers kept out of the way while a run works, on the lab's real master and
minions: a scheduled highstate that would redeploy the old release (``state.apply
lab_openstack.node`` at 2024.1, run with test=True so that it only renders) fires before a
run, never while the run waits at its gate, and again after the run's end; after a failed
run too; a scheduler the operator had turned off stays off."""
import datetime
import json
import os
import threading
import time

import pytest

import leapfrog_journal
from tests.integration.test_runner_core import wait_until

pytestmark = pytest.mark.usefixtures("salt_minions")

CLUSTER = "lab"
JOB = "redeploy_old_release"
ON = ("ctl01", "cmp01")


def now():
    return datetime.datetime.now(tz=datetime.timezone.utc)


def salt(salt_master, target, *args):
    ret = salt_master.salt_cli(timeout=120).run(*args, minion_tgt=target)
    assert ret.returncode == 0, ret
    return ret.data


def enabled(salt_master, node):
    return salt(salt_master, node, "schedule.is_enabled")


def firings(event_listener, salt_master, node, after, before=None):
    """Returns of the scheduled job on ``node`` that reached the master after ``after``."""
    found = event_listener.get_events([(salt_master.id, f"salt/job/*/ret/{node}")],
                                      after_time=after)
    return [e for e in found if e.data.get("schedule") == JOB
            and (before is None or e.stamp < before)]


def orch(salt_master, timeout=180, **pillar):
    pillar = {"cluster": CLUSTER, "schedules": True, **pillar}
    return salt_master.salt_run_cli(timeout=timeout).run(
        "state.orch", "orch.test_core", f"pillar={json.dumps(pillar)}")


def journal(salt_master, run):
    return leapfrog_journal.Journal(os.path.join(salt_master.config["cachedir"], "leapfrog"),
                                    CLUSTER, run).read()


@pytest.fixture
def old_release_highstate(salt_master):
    """The scheduled redeploy of 2024.1 on ctl01 and cmp01 (every 2 s), removed after."""
    kwargs = json.dumps({"pillar": {"leapfrog": {"release": "2024.1"}}, "test": True})
    for node in ON:
        salt(salt_master, node, "schedule.add", JOB, "function=state.apply",
             'job_args=["lab_openstack.node"]', f"job_kwargs={kwargs}", "seconds=2",
             "persist=False")
    yield
    for node in ON:
        salt(salt_master, node, "schedule.delete", JOB, "persist=False")
        salt(salt_master, node, "schedule.enable")


def test_a_scheduled_old_release_highstate_never_fires_while_a_run_works(
        salt_master, event_listener, old_release_highstate):
    salt(salt_master, "dbs01", "schedule.disable")  # the operator's own choice
    try:
        started = now()
        wait_until(lambda: firings(event_listener, salt_master, "ctl01", started), 30,
                   what="the scheduled highstate to fire before the run")  # it does fire

        run = "it-schedules-paused"
        out = []
        thread = threading.Thread(target=lambda: out.append(orch(salt_master, run=run,
                                                                  gate=True)), daemon=True)
        thread.start()

        def at_gate():
            data = journal(salt_master, run)
            gate = data and {s["name"]: s for s in data["steps"]}.get("gate")
            return gate and gate["status"] == "running"
        wait_until(at_gate, 90, what="the run to wait at its gate")
        paused = journal(salt_master, run)["schedules"]["paused"]
        assert set(ON) <= set(paused["paused"])
        assert "dbs01" not in paused["paused"]
        assert paused["already_off"] == ["dbs01"]
        assert enabled(salt_master, "ctl01") is False

        quiet_from = now()
        time.sleep(10)  # five periods of the job
        quiet_to = now()
        assert [firings(event_listener, salt_master, node, quiet_from, quiet_to)
                for node in ON] == [[], []]

        ret = salt_master.salt_run_cli(timeout=60).run("leapfrog.approve", f"cluster={CLUSTER}",
                                                        f"run={run}")
        assert ret.returncode == 0, ret
        thread.join(120)
        assert out and out[0].returncode == 0, out
        data = journal(salt_master, run)
        assert data["status"] == "done"
        assert set(ON) <= set(data["schedules"]["resumed"]["resumed"])
        assert {node: enabled(salt_master, node) for node in (*ON, "dbs01")} == {
            "ctl01": True, "cmp01": True, "dbs01": False}
        resumed_at = now()
        wait_until(lambda: firings(event_listener, salt_master, "ctl01", resumed_at), 30,
                   what="the scheduled highstate to fire again after the run")
    finally:
        salt(salt_master, "dbs01", "schedule.enable")


def test_a_failed_run_turns_the_schedulers_back_on(salt_master, old_release_highstate):
    run = "it-schedules-failed"
    ret = orch(salt_master, run=run, testing={"fail_at": "two"})
    assert ret.returncode == 1, ret
    data = journal(salt_master, run)
    assert data["status"] == "failed"
    assert set(ON) <= set(data["schedules"]["paused"]["paused"])
    assert set(ON) <= set(data["schedules"]["resumed"]["resumed"])
    assert [enabled(salt_master, node) for node in ON] == [True, True]
    listed = os.path.join(salt_master.config["cachedir"], "leapfrog", CLUSTER,
                          "paused_schedules.json")
    assert leapfrog_journal.read_json(listed) == {"minions": {}}
    # by hand, nothing is left to turn on
    ret = salt_master.salt_run_cli(timeout=120).run("leapfrog.resume_schedules",
                                                    f"cluster={CLUSTER}")
    assert ret.returncode == 0, ret
    assert ret.data["resumed"] == []
