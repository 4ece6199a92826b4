"""The fast-forward path on the whole lab (heavy, ~15 min, 1 controller + 2 computes with
servers), 2024.1 straight to 2026.1 with ``strategy=fast_forward``:

1. a failure injected while switching the second compute stops the run;
   ``orch.rollback_control_plane`` from its backups brings 2024.1 back everywhere: nova at
   2024.1's heads, both computes up at 2024.1's service version (67), servers ACTIVE;
2. a new run, whose salt-run and salt-master are killed (SIGKILL) while it stalls at the
   first compute's switch, is resumed with its run id after the master restarts, and goes
   through: nova-compute stopped on every compute (disabled with a reason,
   servers running on), the controller rebuilt on the new OS, nova's staged syncs through
   2025.1 to 2026.1's heads, the controller started with nova's
   ``[workarounds] disable_compute_service_check_for_ffu``, every compute switched to
   2026.1 (service version 72, enabled), the workaround removed again; servers ACTIVE
   before and after, and the API outage measured by the probe and written in the report.
"""
import os
import signal
import threading

import pytest

from lab import operator, procs
from tests.integration.test_lab_upgrade import _grains, _journal_step, _nova_versions
from tests.integration.whole_lab import computes as _computes, journal_steps as _journal_steps
from tests.integration.whole_lab import log as _log, run_report, whole_lab

FAST_FORWARD = {"cluster": "lab", "to": "2026.1", "strategy": "fast_forward"}


@pytest.fixture(scope="module")
def lab():
    with whole_lab(controllers=1, computes=2) as the_lab:
        yield the_lab


def _workaround(lab):
    """nova's FFU workaround as written in ctl01's nova-api config."""
    service = next(s for s in lab.cloud.node_services("ctl01") if s.kind == "nova-api")
    with open(service.config_path) as handle:
        text = handle.read()
    return "disable_compute_service_check_for_ffu = True" in text


def _killed_mid_run(lab, pillar, step):
    """Run the orchestration until ``step`` stalls, then kill its salt-run and crash the
    salt-master; start the master again. Returns the run's id."""
    out = []
    thread = threading.Thread(target=lambda: out.append(operator.orchestrate(
        lab.salt, "orch.upgrade_control_plane",
        dict(pillar, testing={"stall_at": step, "stall_seconds": 1800}), log=_log)))
    thread.start()
    seen = {}

    def stalled():
        found = operator.status(lab.salt, "lab")
        steps = {s["name"]: s["status"] for s in found.get("steps") or []}
        seen.update(found)
        return steps.get(step) == "running"

    procs.wait_for(stalled, 1800, f"step {step} to stall", interval=5)
    os.kill(seen["lock"]["pid"], signal.SIGKILL)
    killed = lab.salt.crash_master()
    _log(f"killed salt-run {seen['lock']['pid']} and the salt-master ({len(killed)} processes)")
    thread.join(120)
    assert out and out[0].returncode != 0
    lab.salt.start_master()
    lab.salt.wait_minions([n.id for n in lab.salt.nodes], 180)
    return seen["run"]


@pytest.mark.heavy
def test_fast_forward_rolled_back_then_2024_1_to_2026_1(lab):
    servers = {i: s["status"] for i, s in lab.cloud.servers().items()}
    assert servers and set(servers.values()) == {"ACTIVE"}

    # 1. stopped at the second compute's switch, rolled back
    failed = operator.orchestrate(lab.salt, "orch.upgrade_control_plane",
                                  dict(FAST_FORWARD, testing={"fail_at": "cmp02_switch"}),
                                  log=_log)
    assert failed.returncode != 0 and failed.failed()[0] == "cmp02_switch"
    assert _journal_step(lab, failed.run, "cmp01_switch")["status"] == "done"
    back = operator.orchestrate(lab.salt, "orch.rollback_control_plane",
                                {"cluster": "lab", "upgrade_run": failed.run}, log=_log)
    assert back.returncode == 0, (back.failed(), back.stdout[-3000:])
    assert _nova_versions(lab, "2024.1")["at_head"] is True
    lab.salt.salt("ctl01", "nova_service.wait_up", "cmp01", "version=67", timeout=300)
    lab.salt.salt("ctl01", "nova_service.wait_up", "cmp02", "version=67", timeout=300)
    assert _computes(lab) == {"cmp01": ("up", "enabled", 67), "cmp02": ("up", "enabled", 67)}
    assert {i: s["status"] for i, s in lab.cloud.servers().items()} == servers

    # 2. the whole fast-forward, its master killed on the way
    run = _killed_mid_run(lab, FAST_FORWARD, "cmp01_switch")
    status = operator.status(lab.salt, "lab", run)
    assert status["status"] == "running" and status["at_step"] == "cmp01_switch", status
    assert status["lock"]["alive"] is False
    done = operator.orchestrate(lab.salt, "orch.upgrade_control_plane",
                                dict(FAST_FORWARD, run=run), log=_log)
    assert done.returncode == 0, (done.failed(), done.stdout[-3000:])
    steps = _journal_steps(lab, run)
    resumed = steps["cmp01_switch"]
    assert resumed["status"] == "done" and resumed["attempts"] == 2
    assert steps["dbsync_nova"]["attempts"] == 1  # done before the kill: not repeated
    assert steps["cmp01_stop"]["result"]["release_before"] == "2024.1"
    assert {v["oscodename"] for v in _grains(lab).values()} == {"trixie"}
    versions = _nova_versions(lab, "2026.1")
    assert versions["at_head"] is True, versions
    assert _computes(lab) == {"cmp01": ("up", "enabled", 72), "cmp02": ("up", "enabled", 72)}
    assert {i: s["status"] for i, s in lab.cloud.servers().items()} == servers
    assert _workaround(lab) is False
    report = run_report(lab, run)
    availability = report["availability"]
    assert availability["requests"] > 50
    assert availability["longest_outage"] > 0, availability  # the API was closed meanwhile
    assert report["headline"]["longest_outage"] == availability["longest_outage"]
    verify = lab.salt.salt("ctl01", "openstack_verify.check", timeout=300)["ctl01"]
    assert verify["healthy"] is True, verify
