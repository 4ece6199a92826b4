"""The data plane on the whole lab (heavy, ~10 min, 1 controller + 2 computes with servers):

1. the control plane goes to 2025.1 (``orch.upgrade_control_plane``);
2. ``orch.upgrade_data_plane`` without approval: the canary (cmp01) is switched to 2025.1,
   the approval expires, the run stops and cmp02 is untouched (still 2024.1's service
   version);
3. a new run, approved with ``salt-run leapfrog.approve``, brings every compute to 2025.1:
   ``nova_service.list`` shows them up, enabled, at 2025.1's service version (68); the
   servers stay ACTIVE and the probe through the VIP records 0 failed requests.
"""
import json
import time

import pytest

from lab import operator, stack
from tests.integration.test_lab_upgrade import _report

DATA_PLANE = {"cluster": "lab", "to": "2025.1", "servers": "force"}


def _log(line):
    print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)


@pytest.fixture(scope="module")
def lab():
    import shutil  # pylint: disable=import-outside-toplevel
    import tempfile  # pylint: disable=import-outside-toplevel

    run_dir = tempfile.mkdtemp(prefix="lf-lab-", dir="/tmp")
    the_lab = stack.Lab(run_dir, controllers=1, computes=2, log=_log)
    try:
        the_lab.up()
        yield the_lab
    finally:
        the_lab.down()
        shutil.rmtree(run_dir, ignore_errors=True)


def _computes(lab):
    rows = lab.salt.salt("ctl01", "nova_service.list", timeout=120)["ctl01"]
    return {r["host"]: (r["state"], r["status"], r["version"]) for r in rows}


@pytest.mark.heavy
def test_canary_expiry_then_every_compute_to_2025_1(lab):
    servers = {i: s["status"] for i, s in lab.cloud.servers().items()}
    assert servers and set(servers.values()) == {"ACTIVE"}
    control = operator.orchestrate(lab.salt, "orch.upgrade_control_plane",
                                   {"cluster": "lab", "to": "2025.1"}, log=_log)
    assert control.returncode == 0, control.failed()
    assert _computes(lab) == {"cmp01": ("up", "enabled", 67), "cmp02": ("up", "enabled", 67)}

    expired = operator.orchestrate(lab.salt, "orch.upgrade_data_plane",
                                   dict(DATA_PLANE, expiry=5), approve=False, log=_log)
    assert expired.returncode != 0 and expired.failed()[0] == "approval"
    assert _computes(lab) == {"cmp01": ("up", "enabled", 68), "cmp02": ("up", "enabled", 67)}

    done = operator.orchestrate(lab.salt, "orch.upgrade_data_plane", DATA_PLANE, log=_log)
    assert done.returncode == 0, (done.failed(), done.stdout[-3000:])
    assert done.approved == [(done.run, "approval")]
    assert _computes(lab) == {"cmp01": ("up", "enabled", 68), "cmp02": ("up", "enabled", 68)}
    assert {i: s["status"] for i, s in lab.cloud.servers().items()} == servers
    report = _report(lab, done.run)
    assert report["availability"]["failures"] == 0, json.dumps(report["availability"])[:500]
    assert report["availability"]["requests"] > 100
