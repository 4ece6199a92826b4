"""The runs of the fault matrix on the lab (lab.stack.Lab) and what a recovered cell must
show (issue 17): used by bench/bench_faults.py (the whole matrix) and the heavy test's
seeded sample.

    kind = fault_runs.KINDS["hop"]
    plan = fault_runs.plan_of(lab, kind)
    row = fault_runs.run_cell(lab, kind, plan, ("ctl01_rebuild:start", "vm"), 1)

A run kind knows its orchestration and pillar, the rollback that recovers it when a resume
cannot, how the cloud gets to the run's start (``prepare``) and back to 2024.1 after a
recovered cell (``reset``). ``run_cell`` writes a keystone project through the VIP, strikes
the cell (lab/fault_strike.py), recovers, checks (``check``: finished, no lock, the APIs on
the VIP answer, one release on every controller, the project and the servers still there,
no step run more than twice, no rehearsal clone left) and resets.
"""
import json
import os
import time

import leapfrog_steps
from lab import fault_strike, operator, stack

FROM = "2024.1"
ROLLBACK = "orch.rollback_control_plane"


def _log(line):
    print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)


class RunKind:
    """One run of the matrix: its orchestration and pillar, the recovery's rollback, how
    the cloud gets to the run's start (``prepare``) and back after a cell (``reset``)."""

    def __init__(self, name, orch, pillar, rollback=None, upgrades=False):
        self.name, self.orch, self.pillar = name, orch, dict(pillar, cluster="lab")
        self.rollback, self.upgrades = rollback, upgrades

    def prepare(self, lab):
        """Nothing: the cloud starts each cell at 2024.1."""
        return {}

    def reset(self, lab, run, how):
        """Bring the cloud back to 2024.1 after a recovered cell that upgraded it (forced:
        a finished hop is past its point of no return, and what it wrote since its backup
        is the cell's marker, already checked)."""
        if self.upgrades and how in ("none", "resume"):
            _orchestrate(lab, ROLLBACK, {"upgrade_run": run, "force": True})

    def finish(self, lab, prepared):
        """Undo ``prepare`` once the run's cells are done."""


class DataPlane(RunKind):
    """The computes' switch with a canary and a batch, after a control-plane hop."""

    def prepare(self, lab):
        return {"hop": _orchestrate(lab, "orch.upgrade_control_plane", {"to": "2025.1"})}

    def reset(self, lab, run, how):
        """The computes back at 2024.1 (the control plane stays at 2025.1)."""
        _redeploy_computes(lab, FROM)

    def finish(self, lab, prepared):
        _orchestrate(lab, ROLLBACK, {"upgrade_run": prepared["hop"]})


class Rollback(RunKind):
    """The rollback of a rolling hop: the hop first (unstruck), its rollback struck."""

    def prepare(self, lab):
        hop = _orchestrate(lab, "orch.upgrade_control_plane", {"to": "2025.1"})
        self.pillar["upgrade_run"] = hop
        return {"upgrade_run": hop}

    def reset(self, lab, run, how):
        """The rollback finished: the cloud is at 2024.1 already; the next cell rolls back
        a hop of its own."""
        self.prepare(lab)


KINDS = {
    # the migrations-only rehearsal (the throwaway controller's cells: not yet in the matrix)
    "rehearsal": RunKind("rehearsal", "orch.test_upgrade", {"throwaway": False}),
    "hop": RunKind("hop", "orch.upgrade_control_plane", {"to": "2025.1"}, ROLLBACK, True),
    "fast-forward": RunKind("fast-forward", "orch.upgrade_control_plane",
                            {"to": "2026.1", "strategy": "fast_forward"}, ROLLBACK, True),
    "data-plane": DataPlane("data-plane", "orch.upgrade_data_plane",
                            {"to": "2025.1", "servers": "force", "canary": "cmp01",
                             "batch": 1}),
    "rollback": Rollback("rollback", ROLLBACK, {}),
}


def _orchestrate(lab, orch, pillar):
    result = operator.orchestrate(lab.salt, orch, dict(pillar, cluster="lab"), log=_log)
    if result.returncode != 0:
        raise RuntimeError(f"{orch} {pillar} failed at {result.failed()}")
    return result.run


def _redeploy_computes(lab, release):
    pillar = json.dumps({"leapfrog": {"release": release}})
    lab.salt.salt("cmp*", "state.apply", "lab_openstack.node", f"pillar={pillar}", timeout=900)


def plan_of(lab, kind):
    proc = lab.salt.run("leapfrog.run_plan", kind.orch, f"args={json.dumps(kind.pillar)}",
                        timeout=300)
    data = json.loads(proc.stdout)
    return leapfrog_steps.Plan.from_dict(data.get("return", data)["plan"])


def _marker(lab, name):
    """A keystone project written through the VIP before the fault."""
    found = lab.cloud.api("POST", "keystone", "/projects",
                          json={"project": {"name": name, "domain_id": "default"}})
    return found["project"]["id"]


def _controller_releases(lab):
    with open(os.path.join(lab.cloud_dir, "cloud.json")) as handle:
        state = json.load(handle)
    return sorted({release for kinds in state["controller_releases"].values()
                   for release in kinds.values()})


def check(lab, kind, struck, recovery, before):
    """What is wrong after the recovery ([] when the cell recovered fully)."""
    wrong = []
    if recovery["how"] == "failed":
        wrong.append(f"not recovered: {recovery['result'].failed()}")
    status = operator.status(lab.salt, "lab", struck.run)
    if status.get("lock"):
        wrong.append(f"lock left: {status['lock']}")
    down = [name for name, s in stack.vip_health(lab.cloud).items() if not s["running"]]
    if down:
        wrong.append(f"not answering on the VIP: {', '.join(down)}")
    releases = _controller_releases(lab)
    if len(releases) != 1:
        wrong.append(f"controllers at several releases: {releases}")
    try:
        lab.cloud.api("GET", "keystone", f"/projects/{before['marker']}", expect=(200,))
    except Exception as exc:  # pylint: disable=broad-except
        wrong.append(f"the project written before the fault is gone: {exc}")
    servers = {i: s["status"] for i, s in lab.cloud.servers().items()}
    if servers != before["servers"]:
        wrong.append(f"servers changed: {before['servers']} -> {servers}")
    journal = fault_strike.journal(lab, "lab", struck.run)
    thrice = [s["name"] for s in journal.get("steps") or [] if s.get("attempts", 0) > 2]
    if thrice:
        wrong.append(f"steps run more than twice: {thrice}")
    with lab.cloud.mariadb.connect() as conn, conn.cursor() as cur:
        cur.execute("SHOW DATABASES LIKE '%\\_upgrade'")
        clones = [row[0] for row in cur.fetchall()]
    if clones:
        wrong.append(f"rehearsal clones left: {clones}")
    return wrong


def run_cell(lab, kind, plan, cell, number, log=print):
    before = {"marker": _marker(lab, f"fault-{number}-{int(time.time())}"),
              "servers": {i: s["status"] for i, s in lab.cloud.servers().items()}}
    log(f"[faults] cell {number}: {kind.name} {cell[0]} x {cell[1]}")
    row = {"run": kind.name, "boundary": cell[0], "fault": cell[1], "struck": None,
           "how": "failed", "recover_seconds": 0.0, "struck_seconds": 0.0}
    try:
        struck = fault_strike.strike(lab, kind.orch, kind.pillar, plan, cell, log=log)
        row.update(struck=struck.detail, struck_seconds=struck.seconds)
        recovery = fault_strike.recover(lab, kind.orch, kind.pillar, struck, kind.rollback,
                                        log=log)
        row.update(how=recovery["how"], recover_seconds=recovery["seconds"])
        wrong = check(lab, kind, struck, recovery, before)
    except Exception as exc:  # pylint: disable=broad-except
        wrong = [f"the cell could not be struck or recovered: {exc}"]
    row.update(ok=not wrong, wrong=wrong)
    log(f"[faults] cell {number}: {'recovered' if not wrong else 'NOT recovered'} "
        f"({row['how']}, {row['recover_seconds']} s){': ' + '; '.join(wrong) if wrong else ''}")
    if not wrong:
        kind.reset(lab, struck.run, row["how"])
    return row
