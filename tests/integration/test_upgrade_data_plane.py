"""orch.upgrade_data_plane on the lab's master and minions, plan only: test=True lists the
canary, the approval gate and the batches per host, and changes nothing."""
import json
import os

from tests.integration.test_upgrade_control_plane import plan_steps

import pytest

pytestmark = pytest.mark.usefixtures("salt_minions")


def test_plan_only_lists_canary_gate_and_batches_per_host(salt_master):
    root = os.path.join(salt_master.config["cachedir"], "leapfrog", "lab")
    before = sorted(os.listdir(root)) if os.path.isdir(root) else []
    ret = salt_master.salt_run_cli(timeout=300).run(
        "state.orch", "orch.upgrade_data_plane",
        "pillar=" + json.dumps({"cluster": "lab", "to": "2025.1"}), "test=True")
    assert ret.returncode == 0, ret
    states = next(iter(ret.data["data"].values()))
    text = next(v["comment"] for v in states.values() if v["__id__"] == "plan")
    assert "why: canary: cmp01; then, after approval, 1 batch(es), 5 s apart" in text
    steps = plan_steps(text)
    assert "per host now: " in text
    assert steps == ["control_plane_at_target", "prestage", "prestaged", "changes",
                     "cmp01_switch", "approval", "cmp02_switch", "unpin_compute_rpc", "verify"]
    after = sorted(os.listdir(root)) if os.path.isdir(root) else []
    assert after == before


def test_hosts_in_batches_by_percentage(salt_master):
    ret = salt_master.salt_run_cli(timeout=120).run(
        "leapfrog.data_plane_hosts", "cluster=lab", "canary=", "batch=50%")
    assert ret.returncode == 0, ret
    assert ret.data["canary"] == [] and ret.data["batches"] == [["cmp01"], ["cmp02"]]


def test_a_batch_of_two_is_one_step_switching_both_together(salt_master):
    ret = salt_master.salt_run_cli(timeout=300).run(
        "state.orch", "orch.upgrade_data_plane",
        "pillar=" + json.dumps({"cluster": "lab", "to": "2025.1", "canary": "",
                                "batch": 2}), "test=True")
    assert ret.returncode == 0, ret
    states = next(iter(ret.data["data"].values()))
    text = next(v["comment"] for v in states.values() if v["__id__"] == "plan")
    assert "batch01_switch [switch_compute] on cmp01, cmp02: " in text
    steps = plan_steps(text)
    assert steps == ["control_plane_at_target", "prestage", "prestaged", "changes", "approval",
                     "batch01_switch", "unpin_compute_rpc", "verify"]
