"""orch.test_upgrade on real parts: the lab master and minions, a real MariaDB holding a
nova DB set created by 2024.1's nova-manage, and the real nova-manage of every hop.

The rehearsal must take clones to 2026.1's heads and leave production byte-for-byte as it
was (revisions and table checksums), and clean its clones up, also when a step fails or
its salt-run is killed at two boundaries of its plan (fault matrix cells) and it is resumed;
its times, read back from the master's journal, become the next upgrade plan's estimates."""
import json
import os
import signal
import threading
import time

import pytest

import leapfrog_estimates
import leapfrog_journal
import leapfrog_steps
from lab import fault_matrix, runtime_pillar

MAIN_2024_1 = "13863f4e1612"
MAIN_2026_1 = "2903cd72dc14"
API_HEAD = "cdeec0c85668"


OTHERS = {"keystone": "lfprod_keystone", "glance": "lfprod_glance",
          "placement": "lfprod_placement"}


@pytest.fixture(scope="module")
def production(salt_master, salt_minions, lab_dir, nova_db, mariadb, openstack_venvs):
    """A 2024.1 cloud's databases (nova's set by its nova-manage; keystone's, glance's and
    placement's by openstack_db on ctl01), and the run-time pillar that tells dbs01 and
    ctl01 about them."""
    db = nova_db("lfprod", release="2024.1")
    with mariadb.connect() as conn, conn.cursor() as cur:
        for name in OTHERS.values():
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    connection = {"socket": mariadb.socket, "user": "root", "password": mariadb.root_password}
    runtime_pillar.update(lab_dir, "all", {"leapfrog": {"releases": {"venvs": {
        release: str(path) for release, path in openstack_venvs.items()}}}})
    runtime_pillar.update(lab_dir, "dbs01", {"leapfrog": {"database": {
        **connection, "databases": db.databases + list(OTHERS.values())}}})
    runtime_pillar.update(lab_dir, "ctl01", {"leapfrog": {
        "database": connection,
        "nova": {"api_database": db.api, "database": db.main, "cell0_database": db.cell0},
        **{service: {"database": name} for service, name in OTHERS.items()}}})
    ret = salt_master.salt_cli(timeout=120).run("saltutil.refresh_pillar", "wait=True",
                                               minion_tgt="*")
    assert ret.returncode == 0, ret
    for service in OTHERS:
        ret = salt_master.salt_cli(timeout=300).run("openstack_db.sync", service,
                                                   "release=2024.1", minion_tgt="ctl01")
        assert ret.returncode == 0, ret
    yield db
    with mariadb.connect() as conn, conn.cursor() as cur:
        for name in OTHERS.values():
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")


def databases(mariadb):
    with mariadb.connect() as conn, conn.cursor() as cur:
        cur.execute("SHOW DATABASES")
        return sorted(row[0] for row in cur.fetchall())


def checksums(mariadb, names):
    out = {}
    with mariadb.connect() as conn, conn.cursor() as cur:
        for name in names:
            cur.execute(f"SHOW TABLES FROM `{name}`")
            tables = [row[0] for row in cur.fetchall()]
            cur.execute("CHECKSUM TABLE " + ", ".join(f"`{name}`.`{t}`" for t in tables))
            out[name] = dict(cur.fetchall())
    return out


def orch(salt_master, *pillar_and_flags, **pillar):
    # the migrations on clones: this lab has no hypervisor for the throwaway controller
    # (the dress rehearsal with it: test_dress_rehearsal, heavy)
    pillar.setdefault("throwaway", False)
    ret = salt_master.salt_run_cli(timeout=900).run(
        "state.orch", "orch.test_upgrade", f"pillar={json.dumps(pillar)}", *pillar_and_flags)
    states = next(iter(ret.data["data"].values())) if isinstance(ret.data, dict) else {}
    return ret, {v["__id__"]: v for v in states.values()} if isinstance(states, dict) else {}


def test_plan_only_changes_nothing(salt_master, production, mariadb):
    before = checksums(mariadb, production.databases)
    ret, states = orch(salt_master, "test=True", cluster="lab")
    assert ret.returncode == 0, ret.stdout
    text = states["plan"]["comment"]
    assert text.splitlines()[0] == "Rehearse 2024.1 -> 2025.1 -> 2026.1 of lab on _upgrade clones"
    assert "staged_sync [db_sync] on first controller" in text
    assert checksums(mariadb, production.databases) == before
    assert not [d for d in databases(mariadb) if d.endswith("_upgrade")]


def _journal(salt_master, run):
    root = os.path.join(salt_master.config["cachedir"], "leapfrog")
    return leapfrog_journal.Journal(root, "lab", run).read() or {}


def _strike(salt_master, run, boundary):
    """Run (or resume) the rehearsal ``run`` stalled at ``boundary`` and SIGKILL its
    salt-run process there (a fault matrix cell: salt-run killed)."""
    out = []
    thread = threading.Thread(target=lambda: out.append(orch(
        salt_master, cluster="lab", run=run,
        testing={"stall_at": boundary, "stall_seconds": 300})), daemon=True)
    thread.start()
    deadline = time.monotonic() + 600
    while not fault_matrix.stalled(_journal(salt_master, run), boundary):
        assert time.monotonic() < deadline, f"the rehearsal never stalled at {boundary}"
        time.sleep(0.3)
    holder = leapfrog_journal.read_json(os.path.join(
        salt_master.config["cachedir"], "leapfrog", "lab", "lock.json"))
    os.kill(holder["pid"], signal.SIGKILL)
    thread.join(120)
    assert out and out[0][0].returncode != 0


def test_rehearsal_killed_twice_resumes_reaches_target_and_leaves_production(
        salt_master, production, mariadb):
    """Two cells of the fault matrix (lab/fault_matrix.py) generated from the rehearsal's own
    plan, chosen by a printed seed (LEAPFROG_FAULT_SEED replays one): at each, the salt-run
    process is SIGKILLed; the documented recovery (re-run with run=RUN) finishes the run
    with every outcome of an unbroken one."""
    before = checksums(mariadb, production.databases)
    others_before = checksums(mariadb, OTHERS.values())
    ret = salt_master.salt_run_cli(timeout=120).run(
        "leapfrog.run_plan", "orch.test_upgrade", 'args={"cluster": "lab", "throwaway": false}')
    assert ret.returncode == 0, ret
    plan = leapfrog_steps.Plan.from_dict(ret.data["plan"])
    seed = int(os.environ.get("LEAPFROG_FAULT_SEED") or 20261207)
    cells = fault_matrix.sample(fault_matrix.cells(plan, ("salt-run",), skip_parallel=True),
                                2, seed)
    print(f"\nfault cells (seed {seed}): {cells}")
    run = f"it-faults-{seed}"
    for boundary, _ in cells:
        _strike(salt_master, run, boundary)
    ret, states = orch(salt_master, cluster="lab", run=run)
    assert ret.returncode == 0, ret.stdout
    data = _journal(salt_master, run)
    assert [a["status"] for a in data["attempts"]] == ["interrupted", "interrupted", "done"]
    records = {r["name"]: r for r in data["steps"]}
    for boundary, _ in cells:  # the struck step ran again once, nothing ran a third time
        assert records[boundary.split(":")[0]]["attempts"] == 2, records[boundary.split(":")[0]]
    assert all(r["attempts"] <= 2 and r["status"] == "done" for r in records.values())
    assert leapfrog_journal.read_json(os.path.join(
        salt_master.config["cachedir"], "leapfrog", "lab", "lock.json")) is None
    failed = [sid for sid, state in states.items() if state["result"] is False]
    assert failed == []
    sync = states["staged_sync"]["changes"]["return"]["result"]["ctl01"]
    assert sync["revisions"] == {"api": API_HEAD, "main": MAIN_2026_1, "cell0": MAIN_2026_1}
    assert [hop["release"] for hop in sync["hops"]] == ["2024.1", "2025.1", "2026.1"]
    isolated = states["isolate"]["changes"]["return"]["result"]["ctl01"]["changed"]
    assert {c["new"] for c in isolated} == {"lfprod_upgrade", "lfprod_cell0_upgrade"}
    assert states["production_unchanged"]["changes"]["return"]["result"]["unchanged"] is True
    # production: same revisions and the same checksums in every table; clones gone
    assert production.revision("main") == MAIN_2024_1
    assert production.revision("cell0") == MAIN_2024_1
    assert checksums(mariadb, production.databases) == before
    # the other services' DB stages ran with 2026.1's code on their clones only
    for service in OTHERS:
        steps = [sid for sid in states if sid.startswith("rehearse_") and service in sid]
        assert steps and all(states[sid]["result"] for sid in steps), service
    assert checksums(mariadb, OTHERS.values()) == others_before
    assert not [d for d in databases(mariadb) if d.endswith("_upgrade")]

    # its times, from the master's journal, offered to the next upgrade's plan
    root = os.path.join(salt_master.config["cachedir"], "leapfrog")
    hop = leapfrog_steps.Plan("orch.upgrade_control_plane", "lab", "2025.1", "a rolling hop")
    hop.add("dbsync_nova", "db_sync", "leapfrog.call", {
        "func": "nova_manage.staged_sync", "kwargs": {"path": ["2024.1", "2025.1"]}})
    hop.add("dbsync_keystone_expand", "db_sync", "leapfrog.call")
    estimates = leapfrog_estimates.apply(hop, root).estimates
    assert estimates["rehearsal"] == leapfrog_estimates.latest_rehearsal(root, "lab")[0]
    assert estimates["steps"]["dbsync_nova"] == {
        "seconds": {h["release"]: h["seconds"] for h in sync["hops"]}["2025.1"], "scope": "hop"}
    assert estimates["steps"]["dbsync_keystone_expand"]["scope"] == "path"
    assert estimates["steps"]["dbsync_keystone_expand"]["seconds"] > 0
    text = hop.render()
    print("\n" + text)
    assert f"dbsync_nova [db_sync]: nothing ~{estimates['steps']['dbsync_nova']['seconds']:.1f}" \
        f" s on a copy" in text and "on a copy of this cluster's data" in text


def test_a_failed_step_drops_the_clones_and_a_resume_clones_again(salt_master, production, mariadb):
    before = checksums(mariadb, production.databases)
    ret, states = orch(salt_master, cluster="lab", testing={"fail_at": "staged_sync"})
    assert ret.returncode == 1
    assert "failure injected" in states["staged_sync"]["comment"] + json.dumps(
        states["staged_sync"]["changes"])
    assert states["verify"]["__state_ran__"] is False
    assert states["drop_clones_after_failure"]["result"] is True
    assert not [d for d in databases(mariadb) if d.endswith("_upgrade")]
    assert checksums(mariadb, production.databases) == before
    # the steps that made and used the clones are pending again: the documented recovery
    # (a resume, run=RUN) clones again and goes through (a fault matrix cell found a resume
    # that failed on the dropped clones)
    run = salt_master.salt_run_cli(timeout=60).run("leapfrog.status", "cluster=lab").data["run"]
    records = {r["name"]: r for r in _journal(salt_master, run)["steps"]}
    assert records["snapshot"]["status"] == "done"
    assert records["clone"]["status"] == records["staged_sync"]["status"] == "pending"
    assert records["clone"]["notes"][-1] == ("its work was undone by drop_clones_after_failure "
                                            "after the run failed: a resume does it again")
    ret, states = orch(salt_master, cluster="lab", run=run)
    assert ret.returncode == 0, ret.stdout
    sync = states["staged_sync"]["changes"]["return"]["result"]["ctl01"]
    assert sync["revisions"] == {"api": API_HEAD, "main": MAIN_2026_1, "cell0": MAIN_2026_1}
    assert states["production_unchanged"]["changes"]["return"]["result"]["unchanged"] is True
    records = {r["name"]: r for r in _journal(salt_master, run)["steps"]}
    assert (records["snapshot"]["attempts"], records["clone"]["attempts"]) == (1, 2)
    assert not [d for d in databases(mariadb) if d.endswith("_upgrade")]
    assert checksums(mariadb, production.databases) == before
