"""``python -m lab up --no-vms``/``down`` as a whole: the cloud and its Salt cluster tied
together by the run-time pillar (heavy: ~4 min; the parts have their own fast tests; with
the VMs: tests/integration/test_lab_vms.py)."""
import json
import shutil
import tempfile

import pytest

from lab import procs, stack


@pytest.mark.heavy
def test_lab_up_verify_and_down():
    run_dir = tempfile.mkdtemp(prefix="lf-lab-", dir="/tmp")
    lab = stack.Lab(run_dir, controllers=1, computes=1, vms=False)
    try:
        lab.up()
        status = lab.status()
        assert all(info["running"] for info in status.values()), status
        assert not any(name.startswith(("vm/", "bridge")) for name in status)
        assert status["vip/keystone"]["status"] == 200
        verify = lab.salt.salt("ctl01", "openstack_verify.check", timeout=300)["ctl01"]
        assert verify["healthy"] is True, verify
        assert lab.cloud.admin_password not in json.dumps(verify)
        inventory = json.loads(lab.salt.run("leapfrog.inventory", "cluster=lab").stdout)
        assert sorted(inventory["roles"]["controller"]["nodes"]) == ["ctl01"]
        pids = [procs.read_pid(lab.salt.pid_file(n)) for n in ("cfg01", "ctl01")]
    finally:
        lab.down()
    assert not any(procs.pid_alive(pid) for pid in pids)
    shutil.rmtree(run_dir, ignore_errors=True)
