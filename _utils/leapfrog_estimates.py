"""What a rehearsal measured, offered to an upgrade's plan as its estimate: each DB step's
time on a copy of the cluster's data, from the newest finished ``orch.test_upgrade`` run of
the cluster in the journal. Reads only.

nova's staged sync is timed per release on the clones, so a rolling hop's ``dbsync_nova``
gets the time of its own releases; the other services' stages run the whole path at once
in the rehearsal (``scope: path``): for one hop of a rolling upgrade that is an upper bound.
"""
import leapfrog_journal

REHEARSAL = "orch.test_upgrade"
PREFIX = "rehearse_"  # the rehearsal's name for the upgrade's step of the same stage
NOVA_SYNC = "dbsync_nova"


def latest_rehearsal(root, cluster):
    """(run, journal data) of the cluster's newest finished rehearsal; (None, None)."""
    for run, data in leapfrog_journal.list_runs(root, cluster):
        if (data.get("meta") or {}).get("orch") == REHEARSAL and data.get("status") == "done":
            return run, data
    return None, None


def _nova_hops(record):
    """{release: seconds} of the rehearsal's staged sync (its result, per minion)."""
    hops = {}
    result = record.get("result")
    for answer in result.values() if isinstance(result, dict) else ():
        for hop in answer.get("hops") or () if isinstance(answer, dict) else ():
            if isinstance(hop, dict) and isinstance(hop.get("seconds"), (int, float)):
                hops[str(hop.get("release"))] = float(hop["seconds"])
    return hops


def _nova_estimate(step, hops):
    releases = [str(r) for r in (step.kwargs.get("kwargs") or {}).get("path") or []][1:]
    timed = [hops[r] for r in releases if r in hops]
    if not releases or len(timed) != len(releases):
        return None
    return {"seconds": round(sum(timed), 2), "scope": "hop"}


def measured(plan, data):
    """{step name: {"seconds", "scope"}} for the DB steps of ``plan`` the rehearsal whose
    journal is ``data`` timed."""
    done = {r["name"]: r for r in data.get("steps") or []
            if r.get("status") == "done" and isinstance(r.get("elapsed"), (int, float))}
    out = {}
    for step in plan.steps:
        if step.name == NOVA_SYNC and "staged_sync" in done:
            found = _nova_estimate(step, _nova_hops(done["staged_sync"]))
            if found:
                out[step.name] = found
        elif PREFIX + step.name in done:
            out[step.name] = {"seconds": round(done[PREFIX + step.name]["elapsed"], 2),
                              "scope": "path"}
    return out


def apply(plan, root):
    """``plan`` with ``estimates`` set from the cluster's newest finished rehearsal (left
    None when there is none or it timed none of the plan's steps). Returns ``plan``."""
    if plan.orch == REHEARSAL:
        return plan
    run, data = latest_rehearsal(root, plan.cluster)
    steps = measured(plan, data) if data else {}
    if steps:
        plan.estimates = {"rehearsal": run, "steps": steps}
    return plan
