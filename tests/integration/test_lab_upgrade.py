"""The product on the whole lab (heavy, ~15 min): ``salt-run state.orch
orch.upgrade_control_plane`` takes the lab's control plane from 2024.1 to 2025.1 one
controller at a time, with the approval sent by ``salt-run leapfrog.approve``; then
``orch.rollback_control_plane`` brings 2024.1 back from that run's backups.

What an operator would check: every controller rebuilt on the new OS (grains), its
processes running 2025.1's code, nova's databases at 2025.1's heads, verify through the
VIP, servers still ACTIVE, the report's availability figure (0 failed requests through the
VIP during the whole run); after the rollback: 2024.1's revisions and the DB checksums of
before the upgrade, the old OS back, the API answering.
"""
import glob
import json
import os
import shutil
import tempfile
import time

import pytest

from lab import operator, stack

MAIN_2024_1 = "13863f4e1612"


def _log(line):
    print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)


@pytest.fixture(scope="module")
def lab():
    run_dir = tempfile.mkdtemp(prefix="lf-lab-", dir="/tmp")
    the_lab = stack.Lab(run_dir, controllers=2, computes=1, log=_log)
    try:
        the_lab.up()
        yield the_lab
    finally:
        the_lab.down()
        shutil.rmtree(run_dir, ignore_errors=True)


def _report(lab, run):
    found = glob.glob(os.path.join(lab.salt.base, "**", "leapfrog", "lab", run, "report",
                                   "report.json"), recursive=True)
    assert found, f"no report of run {run}"
    with open(found[0]) as handle:
        return json.load(handle)


def _grains(lab):
    return lab.salt.salt("ctl*", "grains.item", "oscodename", timeout=60)


def _nova_versions(lab, release):
    return lab.salt.salt("ctl01", "nova_manage.versions", f"release={release}",
                         timeout=300)["ctl01"]


def _checksums(lab):
    return lab.salt.salt("dbs01", "mysql_backup.schema", timeout=300)["dbs01"]


@pytest.mark.heavy
def test_rolling_hop_then_rollback(lab):
    servers = {i: s["status"] for i, s in lab.cloud.servers().items()}
    assert servers and set(servers.values()) == {"ACTIVE"}
    assert {v["oscodename"] for v in _grains(lab).values()} == {"bookworm"}
    schema_before = _checksums(lab)

    result = operator.orchestrate(lab.salt, "orch.upgrade_control_plane",
                                  {"cluster": "lab", "to": "2025.1"}, log=_log)
    assert result.returncode == 0, (result.failed(), result.stdout[-3000:])
    assert result.approved == [(result.run, "approval")]
    assert {v["oscodename"] for v in _grains(lab).values()} == {"trixie"}
    assert _nova_versions(lab, "2025.1")["at_head"] is True
    assert {i: s["status"] for i, s in lab.cloud.servers().items()} == servers
    report = _report(lab, result.run)
    assert report["status"] in ("running", "done")
    assert report["headline"]["controllers_rebuilt"] == 2
    availability = report["availability"]
    assert availability["requests"] > 100
    assert availability["failures"] == 0, availability
    verify = lab.salt.salt("ctl01", "openstack_verify.check", timeout=300)["ctl01"]
    assert verify["healthy"] is True, verify

    back = operator.orchestrate(lab.salt, "orch.rollback_control_plane",
                                {"cluster": "lab", "upgrade_run": result.run}, log=_log)
    assert back.returncode == 0, (back.failed(), back.stdout[-3000:])
    assert {v["oscodename"] for v in _grains(lab).values()} == {"bookworm"}
    versions = _nova_versions(lab, "2024.1")
    assert versions["at_head"] is True and versions["revisions"]["main"] == MAIN_2024_1
    assert _checksums(lab) == schema_before
    verify = lab.salt.salt("ctl01", "openstack_verify.check", timeout=300)["ctl01"]
    assert verify["healthy"] is True, verify
