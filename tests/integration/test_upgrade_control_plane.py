"""orch.upgrade_control_plane on the lab's master and minions, before anything changes:
an impossible hop is refused with the reason and the alternatives, test=True prints the
plan and the run's steps, and the pre-check collects every problem instead of stopping at
the first. (The rolling hop itself runs on the whole lab: tests/integration/test_lab_upgrade.py.)"""
import json
import os
import re

import pytest

pytestmark = pytest.mark.usefixtures("salt_minions")


def orch(salt_master, *flags, **pillar):
    ret = salt_master.salt_run_cli(timeout=300).run(
        "state.orch", "orch.upgrade_control_plane", f"pillar={json.dumps(pillar)}", *flags)
    states = next(iter(ret.data["data"].values())) if isinstance(ret.data, dict) else {}
    return ret, {v["__id__"]: v for v in states.values()} if isinstance(states, dict) else {}


def plan_steps(text):
    """The step names of a printed plan ("  12. ctl01_drain [drain] on haproxy: ...")."""
    found = (re.match(r"\s+\d+\. (\S+) \[", line) for line in text.splitlines())
    return [m.group(1) for m in found if m]


def runs_on_master(salt_master):
    root = os.path.join(salt_master.config["cachedir"], "leapfrog", "lab")
    return sorted(e for e in os.listdir(root) if e[0].isdigit()) if os.path.isdir(root) else []


def test_rolling_2024_1_to_2026_1_beside_2024_1_computes_is_refused_before_anything(salt_master):
    before = runs_on_master(salt_master)
    ret, states = orch(salt_master, cluster="lab")
    assert ret.returncode != 0, ret
    assert list(states) == ["refused"]
    comment = states["refused"]["comment"]
    assert "rolling control-plane hop 2025.1 -> 2026.1 is impossible" in comment
    assert "found cmp01 (2024.1), cmp02 (2024.1)" in comment
    assert "rolling, one hop now: to=2025.1" in comment
    assert "strategy fast_forward" in comment
    assert runs_on_master(salt_master) == before  # no journal, no lock: nothing happened


def test_plan_only_prints_the_tree_and_every_step_and_changes_nothing(salt_master):
    before = runs_on_master(salt_master)
    ret, states = orch(salt_master, "test=True", cluster="lab", to="2025.1")
    assert ret.returncode == 0, ret
    text = states["plan"]["comment"]
    assert text.splitlines()[0] == "Upgrade the control plane of lab: 2024.1 -> 2025.1 (rolling)"
    steps = plan_steps(text)
    assert steps[:5] == ["precheck", "revisions_before", "backup_dbs", "verify_db_backup",
                         "approval"]
    assert steps[5:13] == ["ctl01_drain", "ctl01_backup_disk", "ctl01_rebuild",
                           "ctl01_redeploy", "dbsync_nova", "dbsync_keystone_expand",
                           "dbsync_keystone_migrate", "dbsync_glance_expand"]
    # the controllers are the controller role's minions with a VM (here: ctl01 alone)
    assert [s for s in steps if s.endswith("_ready")] == ["ctl01_ready"]
    assert steps[-3:] == ["verify", "revisions_after", "nodes_after"]
    # the plan leapfrog.plan prints is the one the orchestration would run
    shown = salt_master.salt_run_cli(timeout=120).run("leapfrog.plan", "cluster=lab",
                                                      "to=2025.1")
    assert shown.returncode == 0, shown
    assert shown.data["steps"] == steps
    assert "(test: nothing changes)" in text
    assert runs_on_master(salt_master) == before


def test_fast_forward_plan_stops_computes_syncs_every_hop_then_switches_them(salt_master):
    before = runs_on_master(salt_master)
    ret, states = orch(salt_master, "test=True", cluster="lab", to="2026.1",
                       strategy="fast_forward")
    assert ret.returncode == 0, ret
    text = states["plan"]["comment"]
    assert text.splitlines()[0] == ("Upgrade the control plane of lab: 2024.1 -> 2025.1 -> "
                                    "2026.1 (fast_forward)")
    assert "disable_compute_service_check_for_ffu" in text
    steps = plan_steps(text)
    assert steps[5:7] == ["cmp01_stop", "cmp02_stop"]
    # the API's window opens with the only controller's drain; it is not drained for the
    # workaround's removal (its keystone serves nova's restart)
    assert [s for s in steps if "drain" in s] == ["ctl01_drain"]
    assert "ctl01_drain [drain] on haproxy: ctl01 out of every backend (impact: API down: " \
           "the window opens)" in text
    order = ["ctl01_drain", "ctl01_redeploy", "dbsync_nova", "ctl01_start", "ctl01_ready",
             "cmp01_switch", "cmp02_switch", "ctl01_ffu_off", "ctl01_ffu_off_ready",
             "finish_nova"]
    assert [steps.index(s) for s in order] == sorted(steps.index(s) for s in order)
    assert steps[-1] == "computes_after"
    assert runs_on_master(salt_master) == before


def test_precheck_collects_every_problem(salt_master):
    ret = salt_master.salt_run_cli(timeout=300).run("leapfrog.precheck", "cluster=lab",
                                                    "to=2025.1")
    assert ret.returncode == 1, ret
    problems = ret.data["problems"]
    # the integration cluster has no haproxy socket and no placement for nova-status (its
    # nova DB may or may not be there, depending on the tests before): each problem shows
    # up, named after its check, and none hides the others
    assert any(p.startswith("haproxy") for p in problems), problems
    assert any(p.startswith(("release check", "nova databases", "nova-status")) for p in
               problems), problems
    assert all(p.startswith(("haproxy", "release check", "nova databases", "nova-status",
                             "database", "role ", "controller(s)", "a rolling upgrade"))
               for p in problems), problems
    # one controller (ctl01): a rolling upgrade cannot keep the API up
    assert any(p.startswith("a rolling upgrade needs at least two controllers") and
               "found ctl01" in p for p in problems), problems
    assert ret.data["ok"] is False
