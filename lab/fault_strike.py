"""Strike one cell of the fault matrix (lab/fault_matrix.py) on a running lab
(lab.stack.Lab), then recover the way README's "Recovery" tells an operator.

    struck = fault_strike.strike(lab, "orch.test_upgrade", {"cluster": "lab"}, plan,
                                 ("snapshot:end", "salt-run"))
    recovery = fault_strike.recover(lab, "orch.test_upgrade", {"cluster": "lab"}, struck)

A cell's run is started stalled at the cell's boundary (the test-only fault switch,
``testing:stall_at``); once its journal notes the stall the fault is struck for real:

- ``salt-run``: SIGKILL of the salt-run process (the lock's holder);
- ``salt-master``: SIGKILL of that salt-run and of the salt-master's process group (the
  master's host died), then the master started again;
- ``minion``: SIGKILL of the minion(s) the step runs on; they stay down until the run
  ends (a step sent to them fails), then start again (as their service manager would);
- ``db-node``: SIGKILL of the Galera node the DB frontend sends the cloud to (the run goes
  on with the other two; the node restarts and rejoins when the run ends), or a restart of
  the single MariaDB;
- ``vm``: the step's controller VM destroyed (``virsh destroy``).

The first two end the run; the others stall it only briefly (``SHORT_STALL``) so it goes on
against the dead part. The recovery is README's: re-run with ``run=RUN``; if that fails
too, ``orch.rollback_control_plane`` of the run (for the runs that have one).
"""
import json
import os
import signal
import threading
import time

from lab import fault_matrix, operator, procs, topology

import leapfrog_journal  # noqa: E402  (on sys.path: lab.fault_matrix puts _utils there)

LONG_STALL = 1800  # the run waits at the boundary until its process is killed
SHORT_STALL = 20  # the run goes on against the dead part once this is over
ENDS_THE_RUN = ("salt-run", "salt-master")


class Struck:
    """What a struck cell left: the run id, the fault, how the struck run ended."""

    def __init__(self, cell, run, result, seconds, detail):
        self.cell, self.run, self.result = cell, run, result
        self.seconds, self.detail = seconds, detail

    def to_dict(self):
        return {"cell": list(self.cell), "run": self.run,
                "returncode": self.result.returncode if self.result else None,
                "seconds": self.seconds, "detail": self.detail}


def _root(lab):
    """leapfrog's folder in the lab master's cachedir (journals, locks)."""
    return os.path.join(lab.salt.base, "cfg01", "cache", "leapfrog")


def journal(lab, cluster, run):
    """The run's journal as the master keeps it ({} before it exists)."""
    return leapfrog_journal.Journal(_root(lab), cluster, run).read() or {}


def _newest_run(lab, cluster, since):
    found = operator.status(lab.salt, cluster)
    return found.get("run") if found.get("created", "") >= since else None


def _minions(lab, step, cluster):
    """The minion ids ``step`` runs on, resolved as ``leapfrog.call`` resolves them."""
    kwargs = step.kwargs
    args = ["leapfrog.call", "test.ping", f"cluster={cluster}"]
    if kwargs.get("target"):
        args.append(f"target={kwargs['target']}")
    if kwargs.get("role"):
        args.append(f"role={kwargs['role']}")
    if kwargs.get("first"):
        args.append("first=True")
    proc = lab.salt.run(*args, timeout=120)
    found = json.loads(proc.stdout or "{}")
    found = found.get("return", found)
    if not isinstance(found, dict) or "error" in found:
        raise RuntimeError(f"the minions of step {step.name}: {found}")
    return sorted(found)


def _kill_minions(lab, ids):
    for minion in ids:
        pid = procs.read_pid(lab.salt.pid_file(minion))
        if procs.pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
    procs.wait_for(lambda: not any(procs.pid_alive(procs.read_pid(lab.salt.pid_file(m)))
                                   for m in ids), 30, "the killed minions to go")


def _db_node(lab):
    """The DB the cloud writes to: Galera's active node (haproxy's DB frontend sends every
    client to node 1, the others are standbys), else the single MariaDB."""
    node = lab.galera.nodes[0] if lab.galera else lab.cloud.mariadb
    if not node.running():
        raise RuntimeError(f"the DB node {getattr(node, 'name', 'mariadb')} does not run")
    return node


def _fault(lab, fault, step, cluster, holder):
    """Strike ``fault`` at ``step``; return what to undo once the run has ended and what
    was struck (for the table)."""
    if fault == "salt-run":
        os.kill(holder, signal.SIGKILL)
        return None, f"salt-run {holder} killed"
    if fault == "salt-master":
        os.kill(holder, signal.SIGKILL)
        killed = lab.salt.crash_master()
        return _restart_master, f"salt-run {holder} and the salt-master ({len(killed)} " \
            "processes) killed"
    if fault == "minion":
        ids = _minions(lab, step, cluster)
        _kill_minions(lab, ids)
        return (lambda lab_: _restart_minions(lab_, ids)), f"minion(s) {', '.join(ids)} killed"
    if fault == "db-node":
        node = _db_node(lab)
        pid = node.pid
        os.kill(pid, signal.SIGKILL)
        procs.wait_for(lambda: not procs.pid_alive(pid), 30, "the killed DB node to go")
        if lab.galera:
            return _rejoin, f"Galera node {node.name} (the frontend's active one) killed"
        node.start()  # a single server: the cloud has no other, it restarts at once
        return None, "the MariaDB server killed and restarted"
    if fault == "vm":
        conn = lab.virt.connect()
        try:
            conn.lookupByName(step.node).destroy()
        finally:
            conn.close()
        return None, f"the VM {step.node} destroyed"
    raise ValueError(f"unknown fault {fault!r}; known: {', '.join(fault_matrix.FAULTS)}")


def _restart_master(lab):
    """Start the master again and wait for the minions that run to reconnect (a minion of a
    VM the run had stopped, e.g. at its disk backup, is off and is not waited for)."""
    lab.salt.start_master()
    running = [name for name, up in lab.salt.status().items()
               if up and name != topology.MASTER_ID]
    lab.salt.wait_minions(running, 180)


def _restart_minions(lab, ids):
    for minion in ids:
        lab.salt.start_minion(minion)
    lab.salt.wait_minions(ids, 180)


def _rejoin(lab):
    lab.galera.start()  # the killed node starts and rejoins (IST or SST)
    for node in lab.galera.nodes:
        node.wait_synced()


def strike(lab, orch, pillar, plan, cell, run=None, log=print):
    """Run ``orch`` with ``pillar`` (resuming ``run`` when given) stalled at the cell's
    boundary, strike the cell's fault there, wait for the struck run to end and undo what
    a service manager would (restart the master, minions, the DB node). Returns Struck."""
    boundary, fault = cell
    step = next(s for s in plan.steps if s.name == boundary.partition(":")[0])
    cluster = pillar.get("cluster", "lab")
    stall = LONG_STALL if fault in ENDS_THE_RUN else SHORT_STALL
    testing = {"stall_at": boundary, "stall_seconds": stall}
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 1))
    out, started = [], time.monotonic()
    thread = threading.Thread(target=lambda: out.append(operator.orchestrate(
        lab.salt, orch, dict(pillar, testing=testing, **({"run": run} if run else {})),
        log=log)), daemon=True)
    thread.start()
    deadline = time.monotonic() + 3600
    while not (run and fault_matrix.stalled(journal(lab, cluster, run), boundary)):
        if not thread.is_alive():
            raise RuntimeError(f"the run ended before it stalled at {boundary}: "
                               f"{out[0].stdout[-2000:] if out else ''}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the run never stalled at {boundary}")
        run = run or _newest_run(lab, cluster, since)
        time.sleep(0.5)
    undo, detail = _fault(lab, fault, step, cluster, _lock_pid(lab, cluster))
    log(f"[faults] {boundary} x {fault}: {detail}")
    thread.join(LONG_STALL + 600)
    if undo is not None:
        undo(lab)
    return Struck(cell, run, out[0] if out else None, round(time.monotonic() - started, 1),
                  detail)


def _lock_pid(lab, cluster):
    return leapfrog_journal.read_json(os.path.join(_root(lab), cluster, "lock.json"))["pid"]


def recover(lab, orch, pillar, struck, rollback=None, log=print):
    """README's recovery of a struck run: nothing when it went through anyway, else re-run
    with ``run=RUN``; if that fails and ``rollback`` names an orchestration, roll the run
    back with it. Returns {"how": none|resume|rollback|failed, "seconds", "result"}."""
    started = time.monotonic()
    if struck.result is not None and struck.result.returncode == 0:
        return {"how": "none", "seconds": 0.0, "result": struck.result}
    result = operator.orchestrate(lab.salt, orch, dict(pillar, run=struck.run), log=log)
    how = "resume"
    if result.returncode != 0 and rollback:
        log(f"[faults] the resume of {struck.run} failed at {result.failed()}: rolling back")
        result = operator.orchestrate(lab.salt, rollback,
                                      {"cluster": pillar.get("cluster", "lab"),
                                       "run": struck.run}, log=log)
        how = "rollback"
    if result.returncode != 0:
        how = "failed"
    return {"how": how, "seconds": round(time.monotonic() - started, 1), "result": result}
