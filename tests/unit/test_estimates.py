"""The newest finished rehearsal's times offered to an upgrade's plan (leapfrog_estimates):
nova per hop, the other services' whole-path stages, shown in the plan's text and kept in
its JSON; a failed or missing rehearsal offers nothing."""
import os

import leapfrog_estimates
import leapfrog_journal
import leapfrog_steps

CLUSTER = "lab"


def _plan(path, orch="orch.upgrade_control_plane"):
    plan = leapfrog_steps.Plan(orch, CLUSTER, path[-1], "Upgrade lab")
    plan.add("precheck", "precheck", "leapfrog.precheck")
    plan.add("dbsync_nova", "db_sync", "leapfrog.call", {
        "func": "nova_manage.staged_sync", "target": "L@ctl01",
        "kwargs": {"path": list(path), "online": False}}, changes="nova migrated")
    plan.add("dbsync_keystone_expand", "db_sync", "leapfrog.call",
             {"func": "openstack_db.sync"}, changes="keystone expanded")
    plan.add("dbsync_glance_expand", "db_sync", "leapfrog.call",
             {"func": "openstack_db.sync"}, changes="glance expanded")
    return plan.check()


def _rehearsal(root, run, created, status="done", hops=None):
    steps = [
        {"name": "clone", "status": "done", "elapsed": 4.9},
        {"name": "staged_sync", "status": "done", "elapsed": 18.4,
         "result": {"ctl01": {"hops": [{"release": r, "seconds": s} for r, s in
                                       (hops or {"2024.1": 4.5, "2025.1": 8.9,
                                                 "2026.1": 4.94}).items()]}}},
        {"name": "rehearse_dbsync_keystone_expand", "status": "done", "elapsed": 3.21},
        {"name": "rehearse_dbsync_glance_expand", "status": "failed", "elapsed": 1.0},
    ]
    folder = os.path.join(root, CLUSTER, run)
    os.makedirs(folder)
    leapfrog_journal.write_json(os.path.join(folder, "journal.json"), {
        "created": created, "status": status, "meta": {"orch": "orch.test_upgrade"},
        "steps": steps})


def test_a_rolling_hop_gets_novas_own_release_and_the_rehearsed_stages(tmp_path):
    _rehearsal(str(tmp_path), "r-old", "2026-12-01T00:00:00Z", hops={"2025.1": 99.0})
    _rehearsal(str(tmp_path), "r-new", "2026-12-05T00:00:00Z")
    _rehearsal(str(tmp_path), "r-failed", "2026-12-06T00:00:00Z", status="failed")
    plan = leapfrog_estimates.apply(_plan(["2024.1", "2025.1"]), str(tmp_path))
    assert plan.estimates == {"rehearsal": "r-new", "steps": {
        "dbsync_nova": {"seconds": 8.9, "scope": "hop"},
        "dbsync_keystone_expand": {"seconds": 3.21, "scope": "path"}}}
    text = plan.render()
    assert ("estimates: 2 DB step(s) took 12.1 s in all on a copy of this cluster's data "
            "(rehearsal r-new, orch.test_upgrade)") in text
    assert "dbsync_nova [db_sync]: nova migrated ~8.9 s on a copy\n" in text + "\n"
    assert "keystone expanded ~3.2 s on a copy (the whole path at once)" in text
    assert "glance expanded\n" in text + "\n"  # its rehearsal step failed: no estimate
    # kept in the plan the run stores, and read back
    again = leapfrog_steps.Plan.from_dict(plan.to_dict())
    assert again.estimates == plan.estimates and again.render() == text


def test_a_fast_forward_gets_the_sum_of_its_hops(tmp_path):
    _rehearsal(str(tmp_path), "r1", "2026-12-05T00:00:00Z")
    plan = leapfrog_estimates.apply(_plan(["2024.1", "2025.1", "2026.1"]), str(tmp_path))
    assert plan.estimates["steps"]["dbsync_nova"] == {"seconds": 13.84, "scope": "hop"}


def test_no_finished_rehearsal_offers_nothing(tmp_path):
    plan = leapfrog_estimates.apply(_plan(["2024.1", "2025.1"]), str(tmp_path))
    assert plan.estimates is None and "estimates" not in plan.to_dict()
    assert "estimates:" not in plan.render()
    _rehearsal(str(tmp_path), "r-failed", "2026-12-06T00:00:00Z", status="failed")
    assert leapfrog_estimates.apply(_plan(["2024.1", "2025.1"]), str(tmp_path)).estimates is None
    # a hop the rehearsal did not time (another path) gets no nova estimate
    _rehearsal(str(tmp_path), "r-short", "2026-12-07T00:00:00Z", hops={"2024.1": 1.0})
    plan = leapfrog_estimates.apply(_plan(["2024.1", "2025.1"]), str(tmp_path))
    assert list(plan.estimates["steps"]) == ["dbsync_keystone_expand"]
