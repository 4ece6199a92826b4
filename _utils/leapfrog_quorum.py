"""The Galera cluster's quorum, asked before every step that changes the cloud's data.

During an upgrade a DB node may restart or die. With a majority of the cluster's nodes in
its Primary component the run goes on (the step's journal record and the report say which
nodes were out); without one, no step that migrates or finishes a service's data runs: the
step fails naming the nodes and the fix, and the run resumes (``run=<id>``) once the
cluster is whole again. Only clusters with ``roles:galera`` are asked.
"""
import leapfrog_errors
import leapfrog_minions

# the step kinds that change the cloud's data through the cluster
GUARDED_KINDS = ("db_sync", "db_finish")
TIMEOUT = 15


def verdict(answers, failures):
    """``(ok, text)`` from every node's ``galera.status`` (``answers``) and the nodes that
    did not answer (``failures``: {id: problem}): ``ok`` when a Primary component holds a
    majority of the configured size; ``text`` names the nodes out (None when none is)."""
    expected = max([a.get("expected_size") or 0 for a in answers.values()]
                   + [len(answers) + len(failures)])
    primary = max([a.get("size") or 0 for a in answers.values()
                   if a.get("running") and a.get("primary")] + [0])
    out = {mid: "no answer" for mid in failures}
    for mid, answer in answers.items():
        if not answer.get("running"):
            out[mid] = "not running"
        elif not answer.get("primary"):
            out[mid] = "not in a Primary component"
        elif answer.get("state") not in ("Synced", "Donor/Desynced"):
            out[mid] = str(answer.get("state"))
    if not out:
        return True, None
    nodes = ", ".join(f"{mid}: {why}" for mid, why in sorted(out.items()))
    return primary * 2 > expected, (f"the Galera cluster has {primary} of its {expected} "
                                    f"nodes in its Primary component ({nodes})")


def check(opts, config):
    """None when the cluster (``roles:galera``) is whole, the text naming the nodes out when
    a majority still serves; raises ``LeapfrogError`` without a majority."""
    target = config["roles"].get("galera")
    if not target:
        return None
    answers, failures = leapfrog_minions.call_each(opts, target, "galera.status",
                                                   timeout=TIMEOUT)
    ok, text = verdict(answers, failures)
    if not ok:
        raise leapfrog_errors.LeapfrogError(
            f"{text}: no quorum, and no step changes the cloud's data without one. Bring "
            "the nodes back (galera.join on each stopped node; when none is Primary, "
            "galera.recover on every node, then galera.bootstrap force=True on the one with "
            "the highest seqno and galera.join on the others), then resume the run with "
            "run=<its id>")
    return text
