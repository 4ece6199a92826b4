"""The leapfrog runner: cluster-wide views and stages, run on the salt-master.

Every function takes ``cluster`` (optional when the master's pillar defines one cluster)
and ``pillar`` overrides, reads ``leapfrog:clusters:<cluster>`` from the master's pillar
and validates it. A failure sets ``__context__["retcode"] = 1`` so ``salt-run`` exits
non-zero and an orchestration stops at that step.
"""
import logging
import os
import sys

import salt.client
import salt.utils.event
import salt.utils.minions

import leapfrog_cluster
import leapfrog_errors
import leapfrog_fault
import leapfrog_journal
import leapfrog_minions
import leapfrog_plan
import leapfrog_rebuild
import leapfrog_schema

log = logging.getLogger(__name__)

__virtualname__ = "leapfrog"


def __virtual__():
    return __virtualname__


def _fail(result):
    """Mark the call failed: the retcode in __context__ stops an orchestration, the one in
    the return makes ``salt-run`` exit non-zero."""
    __context__["retcode"] = 1
    return {**result, "retcode": 1}


def _load(cluster, pillar):
    return leapfrog_cluster.load(__opts__, cluster, pillar)


# ------------------------------------------------------------------ runner core: journal,
# lock, events, approval, plan. The journal lives under the master's cachedir
# (leapfrog/<cluster>/<run>/journal.json), the lock beside it (leapfrog/<cluster>/lock.json).
def _journal_root():
    return os.path.join(__opts__["cachedir"], "leapfrog")


def _fire(tag, data):
    """Send ``data`` on the master's event bus under ``tag`` (never secrets)."""
    with salt.utils.event.get_master_event(__opts__, __opts__["sock_dir"],
                                           listen=False) as event:
        event.fire_event(data, tag)


def _say(line):
    """A progress line: a ``progress`` event of this runner job (salt-run prints it), and
    stderr when nothing prints it (runner called from an orchestration)."""
    event = globals().get("__jid_event__")
    printed = False
    if event is not None:
        try:
            event.fire_event({"message": line}, "progress")
            printed = getattr(event, "print_func", None) is not None
        except (ReferenceError, Exception):  # pylint: disable=broad-except
            printed = False
    if not printed:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()


def _tracker(cluster, run, pillar, test=False, new_run=False):
    """Load the cluster and build the run's Tracker; returns (name, config, tracker)."""
    name, config = _load(cluster, pillar)
    run = str(run) if run not in (None, "") else None  # salt-run may parse ids as numbers
    if not run:
        if not new_run:
            raise leapfrog_errors.LeapfrogError("name the run: run=<id> (leapfrog.begin "
                                                "or leapfrog.run_id gives one)")
        run = leapfrog_journal.new_run_id()
    stale = (config.get("lock") or {}).get("stale_after", leapfrog_journal.DEFAULT_STALE_AFTER)
    tracker = leapfrog_journal.Tracker(
        _journal_root(), name, run, fire=_fire, say=_say, test=bool(test),
        faults=leapfrog_fault.Faults.from_config(config), stale_after=stale)
    return name, config, tracker


def _step_fail(cluster, run, step, exc):
    out = {"cluster": cluster, "run": run, "error": str(exc)}
    if step:
        out["step"] = step
    if isinstance(exc, leapfrog_journal.LockBusy):
        out["running"] = exc.holder.get("run")
    return _fail(out)


def run_id(cluster=None, run=None):
    """
    Return ``run`` when given, else a new run id (``YYYYmmdd-HHMMSS-xxxx``, UTC). An
    orchestration calls it while rendering so all its steps share one id.

    CLI Example:

    .. code-block:: bash

        salt-run leapfrog.run_id
    """
    if run:
        return leapfrog_journal.check_name("run", str(run))
    return leapfrog_journal.new_run_id()


def begin(cluster=None, run=None, steps=None, orch=None, pillar=None, test=False):
    """
    Open a run on a cluster: take the cluster's lock (one run at a time; a second run is
    refused with the running one's id; a lock whose process is gone or whose heartbeat is
    older than ``lock:stale_after`` seconds is taken over) and create its journal, or
    resume it when ``run`` names an earlier run (done steps are not repeated).
    ``steps`` lists the run's step names (shown as pending by ``leapfrog.status``).

    CLI Example:

    .. code-block:: bash

        salt-run leapfrog.begin cluster=prod1 run=20261122-004100-ab12 steps='[one, two]'
    """
    try:
        name, _, tracker = _tracker(cluster, run, pillar, test, new_run=True)
        if test:
            data = tracker.journal.read() or {"steps": []}
            done = {s["name"] for s in data["steps"] if s["status"] in ("done", "skipped")}
            lines = [f"run {tracker.run_id} on {name} (test: nothing changes)"] + [
                f"  {s}: {'done, not repeated' if s in done else 'would run'}"
                for s in (steps or [])]
            return {"cluster": name, "run": tracker.run_id, "test": True,
                    "text": "\n".join(lines)}
        data = tracker.begin(steps or [], meta={"orch": orch} if orch else None)
    except leapfrog_errors.LeapfrogError as exc:
        return _step_fail(cluster, run, None, exc)
    return {"cluster": name, "run": tracker.run_id, "status": data["status"],
            "attempt": len(data["attempts"]),
            "done": [s["name"] for s in data["steps"] if s["status"] == "done"]}


def _call_runner(fun, args=None, kwargs=None):
    """Run another runner function in this process; raise with its output on failure."""
    import salt.runner  # pylint: disable=import-outside-toplevel

    with salt.runner.RunnerClient(__opts__) as client:
        out = client.cmd(fun, arg=list(args or []), kwarg=dict(kwargs or {}),
                         print_event=False, full_return=True)
    ret = out.get("return") if isinstance(out, dict) else out
    failed = not out.get("success", True) or out.get("retcode") or (
        isinstance(ret, dict) and ret.get("retcode")) or (
        isinstance(ret, str) and ret.startswith(("Exception occurred", "\nPassed invalid")))
    if failed:
        raise leapfrog_errors.LeapfrogError(
            f"{fun} failed: {leapfrog_journal.summarize(ret, 400)}")
    return ret


def step(cluster=None, run=None, step=None, function=None, function_args=None,
         function_kwargs=None, pillar=None, test=False):
    """
    Run the runner function ``function`` (with ``function_args``/``function_kwargs``; not
    ``arg``/``kwarg``, which ``salt.runner`` states keep for themselves) as step ``step``,
    once per run: a step done in an earlier attempt of the run returns its recorded result
    without running again. Records start/end/result in the journal, fires
    ``leapfrog/<cluster>/<run>/<step>/<status>`` events and progress lines; a failure
    marks the run failed, releases the lock and sets retcode 1. The test-only fault switch
    (``testing:fail_at``/``stall_at``) acts at the step's boundaries. ``test=True`` only
    says what would run.

    CLI Example:

    .. code-block:: bash

        salt-run leapfrog.step cluster=prod1 run=20261122-004100-ab12 step=inventory function=leapfrog.inventory function_kwargs='{cluster: prod1}'
    """
    try:
        name, _, tracker = _tracker(cluster, run, pillar, test)
        if not step or not function:
            raise leapfrog_errors.LeapfrogError("step= and function= are required")
        step = str(step)
        result, ran = tracker.run(
            step, lambda: _call_runner(function, function_args, function_kwargs),
            describe=function)
    except leapfrog_errors.LeapfrogError as exc:
        return _step_fail(cluster, run, step, exc)
    return {"cluster": name, "run": tracker.run_id, "step": step, "ran": ran,
            "result": result}


def finish(cluster=None, run=None, pillar=None, test=False):
    """
    Close a run: refused while a step is failed or running; steps never run are marked
    skipped; the journal says done, a ``leapfrog/<cluster>/<run>/run/done`` event is fired
    and the cluster's lock is released.

    CLI Example:

    .. code-block:: bash

        salt-run leapfrog.finish cluster=prod1 run=20261122-004100-ab12
    """
    try:
        name, _, tracker = _tracker(cluster, run, pillar, test)
        data = tracker.journal.read()
        if not data:
            raise leapfrog_errors.LeapfrogError(f"run {run} of {name} has no journal")
        open_steps = [s["name"] for s in data["steps"] if s["status"] in ("failed", "running")]
        if open_steps:
            raise leapfrog_errors.LeapfrogError(
                f"run {run} cannot finish: step(s) {', '.join(open_steps)} not done")
        if test:
            return {"cluster": name, "run": run, "test": True, "would": "finish the run"}
        with tracker.journal.edit() as edit:
            for record in edit["steps"]:
                if record["status"] == "pending":
                    record.update(status="skipped", summary="not run by this orchestration")
        data = tracker.end("done")
    except leapfrog_errors.LeapfrogError as exc:
        return _step_fail(cluster, run, None, exc)
    return {"cluster": name, "run": run, "status": data["status"],
            "steps": {s["name"]: s["status"] for s in data["steps"]}}


def _user():
    return globals().get("__user__") or os.environ.get("SUDO_USER") or \
        os.environ.get("USER") or "unknown"


def wait_approval(cluster=None, run=None, step="approve_gate", expiry=None, pillar=None,
                  test=False):
    """
    Wait (as step ``step`` of the run) until ``salt-run leapfrog.approve`` approves it:
    the approval arrives as the event ``leapfrog/<cluster>/<run>/approve`` and is recorded
    in the journal, so a resumed run does not wait again. After ``expiry`` seconds
    (default: pillar ``approval:expiry``, 7200) the step fails with retcode 1 and nothing
    after it runs.

    CLI Example:

    .. code-block:: bash

        salt-run leapfrog.wait_approval cluster=prod1 run=20261122-004100-ab12 step=approve_canary expiry=600
    """
    try:
        name, config, tracker = _tracker(cluster, run, pillar, test)
        step = str(step)
        seconds = float(expiry if expiry is not None else config["approval"]["expiry"])
        tag = tracker.tag("approve")
        event = None
        if not test:
            event = salt.utils.event.get_master_event(__opts__, __opts__["sock_dir"],
                                                      listen=True)

        def next_event(timeout):
            found = event.get_event(wait=timeout, tag=tag, full=True)
            if found and found.get("tag") == tag:
                return found.get("data") or {}
            return None

        def work():
            tracker.say(f"step {step}: waiting for approval (expires in {seconds:g} s): "
                        f"salt-run leapfrog.approve cluster={name} run={tracker.run_id}")
            approval = leapfrog_journal.wait_approval(
                tracker.journal, step, seconds, next_event,
                heartbeat=lambda: tracker.lock.heartbeat(tracker.run_id))
            return {"summary": f"approved by {approval['by']} at {approval['at']}",
                    "approval": approval}

        try:
            result, ran = tracker.run(step, work, describe=f"approval, expiry {seconds:g} s",
                                      kind="approval")
        finally:
            if event is not None:
                event.destroy()
    except leapfrog_errors.LeapfrogError as exc:
        return _step_fail(cluster, run, step, exc)
    return {"cluster": name, "run": tracker.run_id, "step": step, "ran": ran,
            "result": result}


def approve(cluster=None, run=None, step=None):
    """
    Approve the step a run waits on (or ``step``, ahead of time): recorded in the run's
    journal, then announced with the event ``leapfrog/<cluster>/<run>/approve``.

    CLI Example:

    .. code-block:: bash

        salt-run leapfrog.approve cluster=prod1 run=20261122-004100-ab12
    """
    try:
        name, _ = _load(cluster, None)
        journal = leapfrog_journal.Journal(_journal_root(), name, str(run or ""))
        data = journal.read()
        if not data:
            raise leapfrog_errors.LeapfrogError(f"cluster {name} has no run {run}")
        gate = step or leapfrog_journal.waiting_gate(journal)
        if not gate:
            raise leapfrog_errors.LeapfrogError(
                f"no step of run {run} waits for approval now; name one with step=")
        leapfrog_journal.check_name("step", gate)
        by = _user()
        leapfrog_journal.record_approval(journal, gate, by)
        _fire(f"leapfrog/{name}/{journal.run}/approve", {"cluster": name, "run": journal.run,
                                                        "step": gate, "by": by})
    except leapfrog_errors.LeapfrogError as exc:
        return _step_fail(cluster, run, step, exc)
    return {"cluster": name, "run": journal.run, "approved": gate, "by": by}


def status(cluster=None, run=None):
    """
    Show where a run stands (the latest one when ``run`` is not given): its status, each
    step's status, times and result summary, the step it stopped at, the cluster's lock
    and how to resume.

    CLI Example:

    .. code-block:: bash

        salt-run leapfrog.status cluster=prod1
        salt-run leapfrog.status cluster=prod1 run=20261122-004100-ab12
    """
    try:
        name, _ = _load(cluster, None)
        root = _journal_root()
        runs = leapfrog_journal.list_runs(root, name)
        if run:
            data = leapfrog_journal.Journal(root, name, str(run)).read()
            if not data:
                raise leapfrog_errors.LeapfrogError(f"cluster {name} has no run {run}")
        elif runs:
            data = runs[0][1]
        else:
            return {"cluster": name, "runs": [], "comment": f"no run recorded for {name}"}
        lock = leapfrog_journal.ClusterLock(root, name).read()
    except leapfrog_errors.LeapfrogError as exc:
        return _step_fail(cluster, run, None, exc)
    steps, lines, stopped = [], [], None
    for record in data["steps"]:
        entry = {k: record.get(k) for k in ("name", "status", "started", "ended", "elapsed",
                                             "attempts", "summary", "error") if record.get(k)
                 is not None}
        steps.append(entry)
        if stopped is None and record["status"] in ("running", "failed", "pending"):
            stopped = record["name"]
        took = f" {record['elapsed']:.1f} s" if record.get("elapsed") is not None else ""
        note = record.get("error") or record.get("summary") or ""
        lines.append(f"{record['status']:>8} {record['name']}{took}"
                     + (f"  {note}" if note else ""))
    out = {"cluster": name, "run": data["run"], "status": data["status"],
           "created": data["created"], "updated": data["updated"],
           "attempts": len(data["attempts"]), "steps": steps, "text": "\n".join(lines),
           "approvals": data.get("approvals", {})}
    if stopped:
        out["at_step"] = stopped
    if data.get("error"):
        out["error"] = data["error"]
    if lock:
        alive = leapfrog_journal.holder_alive(lock)
        out["lock"] = {"run": lock.get("run"), "pid": lock.get("pid"), "host": lock.get("host"),
                       "taken_at": lock.get("taken_at"),
                       "alive": "unknown (other host)" if alive is None else alive}
    if data["status"] == "failed":
        orch = (data.get("meta") or {}).get("orch", "<orchestration>")
        out["resume"] = (f"salt-run state.orch {orch} pillar='{{\"cluster\": \"{name}\", "
                         f"\"run\": \"{data['run']}\"}}'")
    if not run:
        out["runs"] = [{"run": r, "status": d.get("status"), "created": d.get("created")}
                       for r, d in runs[:10]]
    return out


def _compute_releases(config, computes, timeout):
    """Compute -> release: from ``computes`` (a release, a mapping, or None = ask the
    compute role's minions through ``leapfrog.node_info``)."""
    if isinstance(computes, (str, int, float)):  # salt-run parses computes=2024.1 as a float
        return {"all computes": str(computes)}
    if isinstance(computes, dict):
        return {str(k): str(v) for k, v in computes.items()}
    answers = _ask(config["roles"]["compute"], timeout)
    found, problems = {}, []
    for mid, info in sorted(answers.items()):
        release = info.get("release") if isinstance(info, dict) else None
        if isinstance(release, str):
            found[mid] = release
        else:
            problems.append(f"compute {mid}: release not known from its pillar ({release!r})")
    if problems:
        raise leapfrog_errors.LeapfrogError("; ".join(problems))
    return found


def plan(cluster=None, strategy=None, to=None, control=None, computes=None, pillar=None,
         timeout=10, test=False):
    """
    Print the control-plane plan as a tree (steps, targets, expected impact) and check the
    strategy (pillar ``releases:strategy``, or ``strategy``): a rolling hop the computes'
    releases forbid is refused with the reason and the valid alternatives (retcode 1).
    ``to`` is the control plane's release at the end of the run (default
    ``releases:target``), ``control`` its release now (default ``releases:current``),
    ``computes`` a release or ``{node: release}`` (default: asked from the compute role's
    minions). Changes nothing (``test`` is accepted for orchestrations).

    CLI Example:

    .. code-block:: bash

        salt-run leapfrog.plan cluster=prod1
        salt-run leapfrog.plan cluster=prod1 strategy=fast_forward computes=2024.1
    """
    try:
        name, config = _load(cluster, pillar)
        releases = config["releases"]
        found = _compute_releases(config, computes, timeout)
        decision = leapfrog_plan.strategy(
            releases["path"], strategy or releases["strategy"],
            str(control or releases["current"]), found, to=str(to or releases["target"]))
    except leapfrog_plan.Impossible as exc:
        return _fail({"cluster": cluster, "possible": False, "reason": exc.reason,
                      "alternatives": exc.alternatives, "text": str(exc)})
    except leapfrog_errors.LeapfrogError as exc:
        problems = getattr(exc, "problems", None) or [str(exc)]
        return _fail({"cluster": cluster, "possible": False, "problems": problems})
    tree = leapfrog_plan.control_plane(name, config, decision)
    return {"cluster": name, "possible": True, "strategy": decision["strategy"],
            "why": decision["why"], "hops": [list(h) for h in decision["hops"]],
            "computes": found, "steps": tree.names(), "text": tree.render(),
            "tree": tree.to_dict()}


def validate(cluster=None, pillar=None):
    """
    Check the cluster's pillar against leapfrog's schema and list every problem found.

    CLI Example:

    .. code-block:: bash

        salt-run leapfrog.validate cluster=prod1
    """
    try:
        name, config = _load(cluster, pillar)
    except leapfrog_errors.PillarInvalid as exc:
        return _fail({"cluster": cluster, "valid": False, "problems": exc.problems,
                      "example": leapfrog_schema.EXAMPLE})
    except leapfrog_errors.LeapfrogError as exc:
        return _fail({"cluster": cluster, "valid": False, "problems": [str(exc)]})
    releases = config["releases"]
    return {
        "cluster": name,
        "valid": True,
        "path": " -> ".join(releases["path"]),
        "strategy": releases["strategy"],
        "roles": config["roles"],
    }


def _expected_minions(target):
    found = salt.utils.minions.CkMinions(__opts__).check_minions(target, tgt_type="compound")
    return sorted(found.get("minions", []))


def _ask(target, timeout):
    client = salt.client.get_local_client(__opts__["conf_file"])
    return client.cmd(target, "leapfrog.node_info", tgt_type="compound", timeout=timeout)


def inventory(cluster=None, pillar=None, timeout=10):
    """
    List the cluster's nodes by role, asking each node through its role's compound target
    (``roles`` in the cluster pillar, e.g. ``I@nova:compute``). A role that matches no
    minion, or a node that does not answer, is a problem and makes the call fail.

    CLI Example:

    .. code-block:: bash

        salt-run leapfrog.inventory cluster=prod1
    """
    try:
        name, config = _load(cluster, pillar)
    except leapfrog_errors.LeapfrogError as exc:
        problems = getattr(exc, "problems", None) or [str(exc)]
        return _fail({"cluster": cluster, "problems": problems})

    roles, problems = {}, []
    for role, target in sorted(config["roles"].items()):
        expected = _expected_minions(target)
        answers = _ask(target, timeout)
        nodes = {mid: info for mid, info in sorted(answers.items()) if isinstance(info, dict)}
        silent = sorted(set(expected) - set(nodes))
        roles[role] = {"target": target, "nodes": nodes, "not_responding": silent}
        if not expected and not nodes:
            problems.append(f"role {role}: target {target!r} matches no minion")
        for mid in silent:
            problems.append(f"role {role}: minion {mid} did not answer within {timeout} s")
    result = {"cluster": name, "roles": roles, "problems": problems}
    log.info("leapfrog inventory of %s: %d role(s), %d problem(s)", name, len(roles),
             len(problems))
    return _fail(result) if problems else result


def rebuild_node(node, cluster=None, pillar=None, image=None, timeout=300, backup=None,
                 stop=False):
    """
    Rebuild a control-plane node's VM from the new OS image (``vms:image``, or ``image``)
    and wait until its new minion is back with the expected OS grains (``vms:os``).

    The master generates and accepts the node's new key first (``key.gen_accept``, never
    auto-accept); the key pair goes to ``vm_backup.rebuild`` on the node's hypervisor
    (``vms:nodes:<node>:hypervisor``) with the private key sealed to that hypervisor's own
    minion key, and ends up only in the VM's cloud-init seed (never kept on the master,
    logged or returned). The seed names the master as ``vms:master`` (``host[:port]``) when
    set, else this master's ``interface`` (plus ``:ret_port`` when not 4506). Then the
    runner waits for ``salt/minion/<node>/start`` and checks ``grains.item os oscodename``.

    A running domain is refused unless ``stop=True``: back it up first (``backup=`` names a
    backup of the domain that must verify before the domain is replaced). Returns the node,
    old/new OS, the new key's fingerprint and the seconds of each phase (check, key, rebuild,
    boot, grains); on failure, retcode 1 and the reason.

    CLI Example:

    .. code-block:: bash

        salt-run leapfrog.rebuild_node ctl01
        salt-run leapfrog.rebuild_node ctl01 cluster=prod1 backup=latest timeout=600
    """
    import salt.utils.event
    import salt.wheel

    try:
        name, config = _load(cluster, pillar)
    except leapfrog_errors.LeapfrogError as exc:
        problems = getattr(exc, "problems", None) or [str(exc)]
        return _fail({"node": node, "cluster": cluster, "error": "; ".join(problems)})
    local = salt.client.get_local_client(__opts__["conf_file"])
    wheel = salt.wheel.WheelClient(__opts__)
    event = salt.utils.event.get_master_event(__opts__, __opts__["sock_dir"], listen=True)
    try:
        result = leapfrog_rebuild.run(__opts__, config, node, local, wheel, event,
                                      image=image, timeout=timeout, backup=backup, stop=stop)
    except leapfrog_rebuild.RebuildFailed as exc:
        log.error("leapfrog: %s", exc)
        return _fail({"node": node, "cluster": name, "error": str(exc), "step": exc.step,
                      "phases": exc.phases})
    except leapfrog_errors.LeapfrogError as exc:
        return _fail({"node": node, "cluster": name, "error": str(exc)})
    except Exception as exc:  # pylint: disable=broad-except
        log.exception("leapfrog: rebuild of %s failed", node)
        return _fail({"node": node, "cluster": name,
                      "error": f"rebuild of {node} failed: {type(exc).__name__}: {exc}"})
    finally:
        event.destroy()
        wheel.destroy()
    log.info("leapfrog rebuild: %s", leapfrog_rebuild.summary_line(result))
    return {"cluster": name, **result}


def restore_node_key(node, backup=None, key=None):
    """
    Accept again the public key ``node`` had before a ``rebuild_node`` (kept under the
    master's cachedir, ``leapfrog/keys/<node>/``), so the node's restored old VM is let back
    in: the key kept by the rebuild that started from ``backup`` (the VM backup being
    restored), else the newest kept key; ``key`` names a kept file. Part of a rollback.

    CLI Example:

    .. code-block:: bash

        salt-run leapfrog.restore_node_key ctl01 backup=ctl01/20260101T120000Z-pre-rebuild
    """
    kept = leapfrog_rebuild.previous_keys(__opts__, node, backup)
    path = key or (kept[0] if kept else None)
    if not path or not os.path.isfile(path):
        what = f" kept with backup {backup}" if backup else ""
        return _fail({"node": node, "error": f"no key of {node}{what} (a rebuild keeps one)"})
    with open(path) as handle:
        pub = handle.read()
    leapfrog_rebuild.accept_pub(__opts__, node, pub)
    return {"node": node, "accepted": path, "finger": leapfrog_rebuild.finger(pub)}


# ------------------------------------------------------------------ cross-minion calls and
# the rehearsal's checks (orch.test_upgrade)
def _role_target(config, role=None, target=None):
    if target:
        return target
    if role not in config["roles"]:
        raise leapfrog_errors.LeapfrogError(
            f"unknown role {role!r}; roles: {', '.join(sorted(config['roles']))}")
    return config["roles"][role]


def call(func, role=None, target=None, kwargs=None, first=False, expect=None, cluster=None,
         pillar=None, timeout=600):
    """
    Run execution function ``func`` with ``kwargs`` on the minions of a cluster role (its
    compound target from pillar) or of ``target``; ``first=True`` runs it on the first
    matching minion only. Fails (retcode 1) when nothing matches, a minion is silent, the
    function fails on any minion, or a return lacks one of the ``expect`` key/values.
    Secrets are never passed: minion functions read them from their own pillar.

    CLI Example:

    .. code-block:: bash

        salt-run leapfrog.call mysql_backup.checksums role=database cluster=prod1
        salt-run leapfrog.call nova_manage.versions role=controller first=True kwargs='{release: "2025.1"}' expect='{at_head: true}'
    """
    try:
        _, config = _load(cluster, pillar)
        tgt = _role_target(config, role, target)
        results = leapfrog_minions.call(__opts__, tgt, func, kwargs, first=bool(first),
                                        timeout=timeout)
        for mid, ret in results.items():
            for key, value in (expect or {}).items():
                got = ret.get(key) if isinstance(ret, dict) else None
                if got != value:
                    raise leapfrog_errors.LeapfrogError(
                        f"{mid}: {func} returned {key}={got!r}, expected {value!r}")
    except leapfrog_errors.LeapfrogError as exc:
        return _fail({"func": func, "error": str(exc)})
    return results


def unchanged_since(step, run, func="mysql_backup.schema", role="database", databases=None,
                    cluster=None, pillar=None):
    """
    Prove the production databases were not migrated during a run: read the result of
    ``func`` recorded in the run's journal by ``step`` and compare it with ``func`` now.
    The default, ``mysql_backup.schema`` (table structures and migration versions), stays
    equal while a live cloud writes rows; ``mysql_backup.checksums`` compares every row,
    for a cloud whose APIs are stopped. Fails naming every table that differs.

    CLI Example:

    .. code-block:: bash

        salt-run leapfrog.unchanged_since snapshot run=20261122-010000-ab12 cluster=prod1
    """
    try:
        name, config = _load(cluster, pillar)
        record = leapfrog_journal.Journal(_journal_root(), name, str(run)).step(step) or {}
        before = record.get("result")
        if record.get("status") != "done" or not isinstance(before, dict) or \
                before.get("truncated"):
            raise leapfrog_errors.LeapfrogError(
                f"run {run} has no complete result for step {step} to compare with")
        kwargs = {"databases": databases} if databases else {}
        now = leapfrog_minions.call(__opts__, _role_target(config, role), func, kwargs)
        changed = {mid: leapfrog_minions.differences(before.get(mid) or {}, stats)
                   for mid, stats in now.items()}
        changed = {mid: tables for mid, tables in changed.items() if tables}
        if changed:
            raise leapfrog_errors.LeapfrogError(
                "production databases changed during the run: " + "; ".join(
                    f"{mid}: {', '.join(tables)}" for mid, tables in changed.items()))
    except leapfrog_errors.LeapfrogError as exc:
        return _fail({"step": step, "run": run, "error": str(exc)})
    return {"unchanged": True, "compared_with": step, "by": func,
            "tables": {mid: sum(len(t) for t in stats.values() if isinstance(t, dict))
                       for mid, stats in now.items()}}
