"""The data plane on the whole lab (heavy, ~12 min, 2 controllers + 4 computes, 3 servers
spread over some of them):

1. the control plane goes to 2025.1 (``orch.upgrade_control_plane``);
2. ``orch.upgrade_data_plane`` without approval: the canary (cmp01) is switched to 2025.1,
   the approval expires, the run stops and cmp02..cmp04 are untouched (still 2024.1's
   service version);
3. a new run, approved with ``salt-run leapfrog.approve``, in batches of two, while cmp03
   cannot come back (its redeploy fails: its config path is a directory): the first batch
   (cmp02, cmp03) fails naming cmp03; cmp02 is enabled at 2025.1, cmp03 stays disabled,
   cmp04 is untouched; the failed run's report names cmp03;
4. cmp03 fixed, the same run resumes (``run=``) and brings every other compute to 2025.1
   (cmp01, done by the expired run, and cmp02 are skipped): ``nova_service.list`` shows
   them up, enabled, at 2025.1's service version (68); the servers stay ACTIVE and the probe
   through the VIP records 0 failed requests.

The batch runs use ``servers: migrate``: the servers of cmp02 and cmp03 are live-migrated
(nova's fake driver) to an enabled host before their redeploy, and stay ACTIVE.
"""
import json
import os

import pytest

from lab import operator
from tests.integration.whole_lab import run_report
from tests.integration.whole_lab import computes as _computes, journal_steps as _journal_steps
from tests.integration.whole_lab import log as _log, whole_lab

DATA_PLANE = {"cluster": "lab", "to": "2025.1", "servers": "force"}
# batches of two (cmp02+cmp03, then cmp04), servers live-migrated away first, a host gets
# 120 s to move a server or to come back
BATCHES = {"batch": 2, "servers": "migrate", "timeout": 120}


@pytest.fixture(scope="module")
def lab():
    with whole_lab(controllers=2, computes=4) as the_lab:
        yield the_lab


def _all(version, hosts=("cmp01", "cmp02", "cmp03", "cmp04"), **others):
    return {**{h: ("up", "enabled", version) for h in hosts},
            **{h: ("up", "enabled", v) for h, v in others.items()}}


@pytest.mark.heavy
def test_canary_expiry_then_every_compute_to_2025_1(lab):
    servers = {i: s["status"] for i, s in lab.cloud.servers().items()}
    assert servers and set(servers.values()) == {"ACTIVE"}
    control = operator.orchestrate(lab.salt, "orch.upgrade_control_plane",
                                   {"cluster": "lab", "to": "2025.1"}, log=_log)
    assert control.returncode == 0, control.failed()
    assert _computes(lab) == _all(67)

    expired = operator.orchestrate(lab.salt, "orch.upgrade_data_plane",
                                   dict(DATA_PLANE, expiry=5), approve=False, log=_log)
    assert expired.returncode != 0 and expired.failed()[0] == "approval"
    assert _computes(lab) == _all(67, hosts=("cmp02", "cmp03", "cmp04"), cmp01=68)

    # cmp03 cannot come back (its nova.conf path is a directory: the redeploy stops its
    # nova-compute, then cannot write the new config): its batch (cmp02, cmp03) fails
    # naming it, cmp02 is enabled at 2025.1, cmp03 stays disabled, cmp04 (the next batch)
    # is untouched
    broken = lab.cloud.computes["cmp03"].config_path
    os.replace(broken, broken + ".moved")
    os.mkdir(broken)
    failed = operator.orchestrate(lab.salt, "orch.upgrade_data_plane",
                                  dict(DATA_PLANE, **BATCHES), log=_log)
    assert failed.returncode != 0 and failed.failed()[0] == "batch01_switch"
    assert failed.approved == [(failed.run, "approval")]
    steps = _journal_steps(lab, failed.run)
    assert "cmp03" in steps["batch01_switch"]["error"], steps["batch01_switch"]
    assert "Is a directory" in steps["batch01_switch"]["error"], steps["batch01_switch"]
    found = _computes(lab)
    assert found["cmp01"] == found["cmp02"] == ("up", "enabled", 68)
    assert found["cmp03"][1:] == ("disabled", 67) and found["cmp04"] == ("up", "enabled", 67)
    assert "cmp03" in json.dumps(run_report(lab, failed.run)["steps"])
    # the release's code installed ahead on every compute (the lab's venvs are shared and
    # already built: nothing to do), then per host what its switch would change
    assert steps["prestage"]["status"] == "done"
    assert sorted(steps["prestage"]["result"]["hosts"]) == ["cmp01", "cmp02", "cmp03", "cmp04"]
    changes = steps["changes"]["result"]["hosts"]
    assert changes["cmp01"] == {"release": "2025.1", "target": "2025.1", "changes": []}
    assert changes["cmp04"]["release"] == "2024.1"
    assert "would stop nova-compute (2024.1)" in changes["cmp04"]["changes"][0]
    # servers: migrate: the batch's servers were live-migrated away before its redeploy
    after = lab.cloud.servers()
    assert {s["status"] for s in after.values()} == {"ACTIVE"} and set(after) == set(servers)
    assert not [s for s in after.values() if s["host"] in ("cmp02", "cmp03")], after

    # fixed, the same run resumes: cmp02 skipped (already there), cmp03 and cmp04 switched
    os.rmdir(broken)
    done = operator.orchestrate(lab.salt, "orch.upgrade_data_plane",
                                dict(DATA_PLANE, run=failed.run, **BATCHES), log=_log)
    assert done.returncode == 0, (done.failed(), done.stdout[-3000:])
    assert done.approved == []  # approved in the first attempt of the run
    assert _computes(lab) == _all(68)
    assert {i: s["status"] for i, s in lab.cloud.servers().items()} == servers
    steps = _journal_steps(lab, failed.run)
    assert steps["cmp01_switch"]["status"] == "skipped"  # already at 2025.1
    assert "cmp01 already runs 2025.1" in steps["cmp01_switch"]["result"]["reason"]
    batch = steps["batch01_switch"]["result"]["hosts"]
    assert batch["cmp02"]["skipped"] and batch["cmp03"]["release"] == "2025.1"
    assert steps["batch01_switch"]["attempts"] == 2
    report = run_report(lab, failed.run)
    assert "error" not in report  # the failed attempt's error is not the resumed run's
    assert report["availability"]["failures"] == 0, json.dumps(report["availability"])[:500]
    assert report["availability"]["requests"] > 100
