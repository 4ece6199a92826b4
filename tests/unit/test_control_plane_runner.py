"""The control-plane runner pieces with loader dunders: the run report written from a
journal whose steps carry real-shaped results, cluster_config masking the DB password, and
stopped() naming the failed step with the resume and rollback commands."""
import json
import os

import pytest

from tests.unit.test_journal_runner import PILLAR, bus, configure_loader_modules, runner  # noqa: F401  pylint: disable=unused-import

SHA = "ab" * 32
RESULTS = {
    "revisions_before": {"release": "2025.1", "node": "ctl01", "nova": {
        "revisions": {"api": "cdeec0c85668", "main": "13863f4e1612", "cell0": "13863f4e1612"},
        "at_head": False}, "keystone": ["27e647c0fad4", "29e87d24a316"],
        "placement": ["b5c396305c25"], "glance": ["2024_1_contract01"]},
    "backup_dbs": {"dbs01": {"id": "20261122T010000Z-r1", "path": "/b/mysql/x", "databases": {
        "nova": {"file": "/b/mysql/x/nova.sql.zst", "sha256": SHA, "bytes": 1234}}}},
    "verify_db_backup": {"dbs01": {"id": "20261122T010000Z-r1", "valid": True}},
    "ctl01_backup_disk": {"kvm01": {"backup": "ctl01/20261122T010500Z-r1", "path": "/b/vms/ctl01",
                                    "disks": [{"target": "vda", "sha256": SHA}]}},
    "ctl01_rebuild": {"node": "ctl01", "old": {"os": "Debian", "oscodename": "bookworm"},
                      "new": {"os": "Debian", "oscodename": "trixie"}, "seconds": 30},
    "revisions_after": {"release": "2025.1", "node": "ctl01", "nova": {
        "revisions": {"api": "cdeec0c85668", "main": "2903cd72dc14", "cell0": "2903cd72dc14"},
        "at_head": True}, "keystone": ["27e647c0fad4"], "placement": ["b5c396305c25"],
        "glance": ["2025_1_contract01"]},
    "nodes_after": {"ctl01": {"id": "ctl01", "os": "Debian", "oscodename": "trixie",
                              "password": "NOT-IN-REPORT"}},
    "cmp01_stop": {"host": "cmp01", "release_before": "2024.1", "servers": 2},
    "cmp01_switch": {"host": "cmp01", "release": "2026.1", "seconds": 21.5},
    "cmp02_switch": {"host": "cmp02", "skipped": True,
                     "reason": "1 server(s) on cmp02 and data_plane:servers is skip"},
}

# each step's kind and node, as its plan records them: the report reads these, not names
KINDS = {"revisions_before": ("revisions", None), "backup_dbs": ("backup_db", None),
         "verify_db_backup": ("verify_backup", None), "ctl01_backup_disk": ("backup_disk", "ctl01"),
         "ctl01_rebuild": ("rebuild", "ctl01"), "revisions_after": ("revisions", None),
         "nodes_after": ("inventory", None), "cmp01_stop": ("stop_compute", "cmp01"),
         "cmp01_switch": ("switch_compute", "cmp01"), "cmp02_switch": ("switch_compute", "cmp02")}


def test_report_is_written_from_the_journal_and_the_probe(bus, tmp_path):
    steps = list(RESULTS)
    runner.begin(cluster="lab", run="r1", steps=steps + ["report"], orch="orch.upgrade_control_plane")
    for name in steps:
        bus_result = RESULTS[name]
        bus["answer"] = bus_result
        kind, node = KINDS[name]
        assert runner.step(cluster="lab", run="r1", step=name, function="x.y", kind=kind,
                           node=node)["ran"]
    folder = runner._master().run_dir("lab", "r1")  # pylint: disable=protected-access
    with open(os.path.join(folder, "probe-1.json"), "w") as handle:
        json.dump({"requests": 500, "failures": 0, "longest_outage": 0.0, "started": 0,
                   "timeline": [{"second": 0, "ok": 500, "fail": 0}]}, handle)
    out = runner.report(cluster="lab", run="r1")
    assert "retcode" not in out, out
    assert out["headline"]["requests"] == 500 and out["headline"]["failed_requests"] == 0
    with open(out["paths"]["json"]) as handle:
        data = json.load(handle)
    assert data["nodes"]["ctl01"]["oscodename"] == "trixie"
    assert data["nodes"]["ctl01"]["oscodename_before"] == "bookworm"
    assert data["nodes"]["cmp01"] == {"role": "compute", "release_before": "2024.1",
                                      "release": "2026.1", "note": "switched in 21.5 s"}
    assert data["nodes"]["cmp02"]["note"].startswith("skipped: 1 server(s) on cmp02")
    markdown = open(out["paths"]["markdown"]).read()
    assert "skipped: 1 server(s) on cmp02 and data_plane:servers is skip" in markdown
    kinds = {(b["kind"], b["name"]): b for b in data["backups"]}
    assert kinds[("database", "nova")]["verified"] is True
    assert kinds[("disk", "ctl01")]["verified"] is True
    revisions = {r["database"]: (r["before"], r["after"]) for r in data["revisions"]}
    assert revisions["nova"] == ("13863f4e1612", "2903cd72dc14")
    text = "".join(open(p).read() for p in out["paths"].values())
    assert "NOT-IN-REPORT" not in text and "SECRET-PW" not in text
    assert runner.__context__.get("retcode") is None


def test_cluster_config_masks_the_db_password(bus, monkeypatch):
    monkeypatch.setattr(runner.leapfrog_minions, "expected", lambda opts, tgt: ["ctl01", "x"])
    out = runner.cluster_config(cluster="lab")
    assert out["controllers"] == ["ctl01"]
    assert out["database"]["password"] == "****"
    assert "SECRET-PW" not in json.dumps(out)
    assert out["vms"]["nodes"] == {"ctl01": {"hypervisor": "kvm01", "domain": "ctl01"}}


def test_stopped_names_the_failed_step_and_both_ways_on(bus):
    runner.begin(cluster="lab", run="r2", steps=["one"], orch="orch.upgrade_control_plane")
    bus["answer"] = lambda fun: (_ for _ in ()).throw(
        runner.leapfrog_errors.LeapfrogError("x.y failed: disk full"))
    runner.step(cluster="lab", run="r2", step="one", function="x.y")
    out = runner.stopped(cluster="lab", run="r2", orch="orch.upgrade_control_plane",
                         rollback="orch.rollback_control_plane")
    assert out["failed_step"] == "one" and "disk full" in out["error"]
    assert out["resume"] == ("salt-run state.orch orch.upgrade_control_plane "
                             "pillar='{\"cluster\": \"lab\", \"run\": \"r2\"}'")
    assert out["rollback"].startswith("salt-run state.orch orch.rollback_control_plane")
    with open(out["report"]["json"]) as handle:  # the failed run's report, naming the error
        written = json.load(handle)
    assert written["status"] == "failed" and "disk full" in json.dumps(written["steps"])


def test_stopped_stops_the_runs_probe(bus):
    import subprocess  # pylint: disable=import-outside-toplevel
    import sys  # pylint: disable=import-outside-toplevel

    runner.begin(cluster="lab", run="r3", steps=["one"], orch="orch.upgrade_control_plane")
    folder = runner._master().run_dir("lab", "r3")  # pylint: disable=protected-access
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    runner.leapfrog_journal.write_json(os.path.join(folder, "probe.pid"), {
        "pid": proc.pid, "host": runner.leapfrog_journal.me()["host"],
        "pid_start": runner.leapfrog_journal.process_start(proc.pid)})
    try:
        runner.stopped(cluster="lab", run="r3", orch="orch.upgrade_control_plane")
        proc.wait(timeout=10)  # stopped by its PID (and reaped by probe_stop)
        assert runner.leapfrog_journal.process_start(proc.pid) is None
    finally:
        if proc.poll() is None:
            proc.kill()


def test_the_report_says_each_step_in_one_line_by_its_kind(bus):
    """Not raw JSON: what an operator reads, from the kind and node the plan recorded."""
    results = dict(RESULTS, ctl01_drain={"prx01": {"server": "ctl01", "seconds": 0.62, "backends": {
        b: {"sessions": 0} for b in ("keystone", "nova_api", "placement", "glance",
                                     "nova_metadata", "neutron")}}})
    results.update(dbsync_nova={"ctl01": {"path": ["2024.1", "2025.1"], "seconds": 4.5, "hops": [
        {"release": "2024.1", "steps": [], "skipped": "at its heads"},
        {"release": "2025.1", "steps": [
            {"step": "api_db sync", "before": {"api": "cdeec0c85668"}, "after": {"api": "cdeec0c85668"}},
            {"step": "db sync", "before": {"main": "13863f4e1612", "cell0": "13863f4e1612"},
             "after": {"main": "2903cd72dc14", "cell0": "2903cd72dc14"}}]}]}},
        dbsync_keystone_expand={"ctl01": {"service": "keystone", "before": ["27e647c0fad4"],
                                          "after": ["e25ffa003242"],
                                          "stages": [{"stage": "expand", "seconds": 3.45}]}},
        finish_nova={"ctl01": {"step": "online_data_migrations", "release": "2025.1",
                               "calls": 2, "migrated": 7, "seconds": 4.9}})
    kinds = dict(KINDS, ctl01_drain=("drain", "ctl01"), dbsync_nova=("db_sync", "nova"),
                 dbsync_keystone_expand=("db_sync", "keystone"),
                 finish_nova=("db_finish", "nova"))
    runner.begin(cluster="lab", run="r2", steps=list(results), orch="orch.upgrade_control_plane")
    for name, result in results.items():
        bus["answer"] = result
        kind, node = kinds[name]
        runner.step(cluster="lab", run="r2", step=name, function="x.y", kind=kind, node=node)
    out = runner.report(cluster="lab", run="r2")
    with open(out["paths"]["json"]) as handle:
        lines = {s["name"]: s.get("result") for s in json.load(handle)["steps"]}
    assert lines["ctl01_drain"] == "drained ctl01 from 6 backends, 0 sessions, 0.6 s"
    assert lines["dbsync_nova"] == ("nova 2024.1 -> 2025.1: cell0 13863f4e1612 -> 2903cd72dc14, "
                                    "main 13863f4e1612 -> 2903cd72dc14 (4.5 s)")
    assert lines["dbsync_keystone_expand"] == "keystone expand: 27e647c0fad4 -> e25ffa003242 (3.5 s)"
    assert lines["finish_nova"] == ("nova online data migrations at 2025.1: 7 rows migrated in "
                                    "2 call(s), 4.9 s")
    assert lines["backup_dbs"] == "1 databases backed up on dbs01 as 20261122T010000Z-r1"
    assert lines["ctl01_backup_disk"] == ("ctl01's disk backed up on kvm01 as "
                                          "ctl01/20261122T010500Z-r1")
    assert lines["ctl01_rebuild"] == "ctl01 rebuilt: bookworm -> trixie in 30 s"
    assert lines["revisions_after"].startswith("nova api cdeec0c85668 cell0 2903cd72dc14 "
                                               "main 2903cd72dc14; keystone 27e647c0fad4")
    assert lines["cmp01_switch"] == "cmp01 switched to 2026.1 in 21.5 s"
    assert lines["cmp02_switch"].startswith("cmp02 skipped: 1 server(s) on cmp02")
    assert lines["cmp01_stop"] == "cmp01 stopped at 2024.1 (2 servers running on)"


def test_revisions_reads_each_listed_service_as_its_recipe_says(bus, monkeypatch):
    calls = []

    def call(opts, tgt, func, kwargs=None, **_):
        calls.append((tgt, func, kwargs))
        return {"ctl01": [f"{func}:{(kwargs or {}).get('service', 'nova')}"]}

    monkeypatch.setattr(runner.leapfrog_minions, "first", lambda opts, config, role: "ctl01")
    monkeypatch.setattr(runner.leapfrog_minions, "call", call)
    out = runner.revisions(cluster="lab", release="2025.1", pillar={"leapfrog": {"clusters": {
        "lab": {"services": ["nova", "keystone", "placement"],
                "database": {"databases": ["nova_api", "nova", "nova_cell0", "keystone",
                                           "placement"]}}}}})
    assert calls == [("L@ctl01", "nova_manage.versions", {"release": "2025.1"}),
                     ("L@ctl01", "openstack_db.version", {"service": "keystone", "release": "2025.1"}),
                     ("L@ctl01", "openstack_db.version", {"service": "placement", "release": "2025.1"})]
    assert out["placement"] == ["openstack_db.version:placement"] and "glance" not in out
