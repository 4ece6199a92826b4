"""The fault matrix of a run (issue 17): its cells generated from the run's plan, never
hand-listed. A cell is a step boundary (``STEP:start``, ``STEP:end``: the test-only fault
switch's syntax, ``leapfrog_fault``) and a real fault struck there; the recovery is the one
README tells an operator (re-run with ``run=RUN``, or ``orch.rollback_control_plane``).

``cells(plan)`` lists every cell a plan has, ``sample(cells, n, seed)`` a reproducible
subset (the seed is printed by whoever runs it, so a failed cell can be replayed). The
runners of the cells live where their lab does (tests/, bench/bench_faults.py).
"""
import os
import random
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "_utils"))
import leapfrog_fault  # noqa: E402  pylint: disable=wrong-import-position

BOUNDARIES = ("start", "end")

# fault -> (what it is, the step kinds it applies to: None for every step)
FAULTS = {
    "salt-run": ("SIGKILL of the salt-run process that runs the orchestration", None),
    "salt-master": ("SIGKILL of the salt-master (restarted)", None),
    "minion": ("SIGKILL of the minion that runs the step (restarted)", "minion"),
    "db-node": ("the DB node the cloud writes to killed (Galera: it rejoins)", None),
    "vm": ("the controller VM the step works on destroyed", (
        "backup_disk", "rebuild", "redeploy", "start", "restore_disk", "start_vm")),
}


def _applies(fault, step):
    kinds = FAULTS[fault][1]
    if kinds is None:
        return True
    if kinds == "minion":  # a minion does the step's work
        return step.function == "leapfrog.call"
    return step.kind in kinds


def cells(plan, faults=tuple(FAULTS), skip_parallel=False):
    """Every (boundary, fault) of ``plan``'s steps in plan order, for the ``faults`` that
    apply to each step; ``skip_parallel``: not the steps Salt runs in a process of their
    own (``Plan.parallel_steps``)."""
    unknown = [f for f in faults if f not in FAULTS]
    if unknown:
        raise ValueError(f"unknown fault(s) {', '.join(unknown)}; known: {', '.join(FAULTS)}")
    parallel = set(plan.parallel_steps()) if skip_parallel else set()
    return [(f"{step.name}:{boundary}", fault)
            for step in plan.steps if step.name not in parallel
            for boundary in BOUNDARIES
            for fault in faults if _applies(fault, step)]


def sample(found, count, seed):
    """``count`` cells of ``found`` chosen by ``seed``, in plan order (a run meets them one
    after the other)."""
    chosen = random.Random(seed).sample(range(len(found)), min(count, len(found)))
    return [found[i] for i in sorted(chosen)]


def stalled(journal, boundary):
    """True once ``journal`` (a run's journal as read) notes that the fault switch stalls
    the step of ``boundary`` (``STEP:start`` / ``STEP:end``) there: the moment to strike."""
    step, _, where = boundary.partition(":")
    record = next((s for s in journal.get("steps") or [] if s.get("name") == step), {})
    notes = record.get("notes") or []
    return notes[-1:] == [leapfrog_fault.STALL_NOTE.format(boundary=where or "start")]
