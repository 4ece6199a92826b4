"""The leapfrog runner: the operator's and the orchestrations' entry points on the
salt-master, each a few lines: load the cluster, call the one ``_utils/leapfrog_*.py``
that does the job (the run core ``leapfrog_run``, the plans ``leapfrog_planner``, the facts
``leapfrog_facts``, the precheck, the computes, the rebuild, the rollback's history),
signal a failure.

Every function takes ``cluster`` (optional when the master's pillar defines one cluster)
and ``pillar`` overrides, reads ``leapfrog:clusters:<cluster>`` from the master's pillar
once and validates it. A failure sets ``__context__["retcode"] = 1`` so ``salt-run``
exits non-zero and an orchestration stops at that step.
"""
import logging
import os
import sys


import leapfrog_cluster
import leapfrog_computes
import leapfrog_errors
import leapfrog_facts
import leapfrog_history
import leapfrog_journal
import leapfrog_minions
import leapfrog_parse
import leapfrog_plan
import leapfrog_planner
import leapfrog_precheck
import leapfrog_rebuild
import leapfrog_recipes
import leapfrog_schema
import leapfrog_salt_noise
import leapfrog_run
import leapfrog_scrub
import leapfrog_throwaway

log = logging.getLogger(__name__)

__virtualname__ = "leapfrog"


def __virtual__():
    leapfrog_salt_noise.install()  # Salt's own unclosed-client warnings, not the run's
    return __virtualname__


def _fail(result):
    """Mark the call failed: the retcode in __context__ stops an orchestration, the one in
    the return makes ``salt-run`` exit non-zero."""
    __context__["retcode"] = 1
    return {**leapfrog_scrub.scrub(result), "retcode": 1}


def _load(cluster, pillar):
    return leapfrog_cluster.load(__opts__, cluster, pillar)


# ------------------------------------------------------------------ the run core
# (leapfrog_run): begin, steps, the approval gate, finish, the failure stop, status, the
# probe and the report; each entry point calls it through ``_core``.
def _journal_root():
    return leapfrog_run.journal_root(__opts__)


def _master():
    return leapfrog_run.Master(__opts__, _say, __salt__, __context__)


def _core(core_function, failed_step, /, **kwargs):
    """Call ``core_function`` (leapfrog_run) on this master; a failure returns retcode 1
    (naming ``failed_step`` when a step failed)."""
    try:
        return core_function(_master(), **kwargs)
    except leapfrog_run.Failed as exc:
        return _fail(exc.result)
    except leapfrog_errors.LeapfrogError as exc:
        return _step_fail(kwargs.get("cluster"), kwargs.get("run"), failed_step, exc)


def _user():
    return globals().get("__user__") or os.environ.get("SUDO_USER") or \
        os.environ.get("USER") or "unknown"


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


def begin(cluster=None, run=None, steps=None, orch=None, plan=None, pillar=None,  # pylint: disable=redefined-outer-name
          test=False, target=None, schedules=False):
    """
    Open a run on a cluster: take the cluster's lock (one run at a time; a second run is
    refused with the running one's id; a lock whose process is gone or whose heartbeat is
    older than ``lock:stale_after`` seconds is taken over) and create its journal, or
    resume it when ``run`` names an earlier run (done steps are not repeated).
    ``steps`` lists the run's step names (shown as pending by ``leapfrog.status``);
    ``plan`` (``leapfrog.run_plan``'s plan) is kept whole in the journal, so a resumed run
    runs the same steps even though the cloud has moved on (``leapfrog.run_plan``).
    ``orch`` and ``target`` (e.g. the release) bind the run id: resuming it with another
    orchestration or target is refused before anything changes. ``schedules=True`` turns
    off the Salt scheduler of every minion of the cluster that has it on, once the lock is
    held (``leapfrog_schedules``; ``finish`` and ``stopped`` turn them back on).

    CLI Example:

    .. code-block:: bash

        salt-run leapfrog.begin cluster=prod1 run=20261122-004100-ab12 steps='[one, two]'
    """
    return _core(leapfrog_run.begin, None, cluster=cluster, run=run, steps=steps, orch=orch,
                 plan=plan, pillar=pillar, test=test, target=target, schedules=schedules)


def step(cluster=None, run=None, step=None, function=None, function_args=None,
         function_kwargs=None, pillar=None, test=False, kind=None, node=None):
    """
    Run the runner function ``function`` (e.g. ``leapfrog.call``; with ``function_args``/
    ``function_kwargs``; not ``arg``/``kwarg``, which ``salt.runner`` states keep for
    themselves) in this process as step ``step``, once per run: a step done in an earlier
    attempt of the run returns its recorded result without running again. Records
    start/end/result in the journal, fires ``leapfrog/<cluster>/<run>/<step>/<status>``
    events and progress lines; a failure marks the run failed, releases the lock (a step
    run side by side, in a process the orchestration started, leaves that to
    ``leapfrog.stopped``; it dies with the orchestration) and sets retcode 1. The test-only
    fault switch (``testing:fail_at``/``stall_at``) acts at the step's boundaries. ``kind`` and ``node``
    (the plan's step kind and the node it is about) are recorded with the step: report and
    rollback read them. ``test=True`` only says what would run.

    CLI Example:

    .. code-block:: bash

        salt-run leapfrog.step cluster=prod1 run=20261122-004100-ab12 step=inventory function=leapfrog.inventory function_kwargs='{cluster: prod1}'
    """
    return _core(leapfrog_run.step, step, cluster=cluster, run=run, step=step,
                 function=function, function_args=function_args,
                 function_kwargs=function_kwargs, pillar=pillar, test=test, kind=kind,
                 node=node)


def finish(cluster=None, run=None, pillar=None, test=False):
    """
    Close a run: refused while a step is failed or running; steps never run are marked
    skipped; the schedulers leapfrog turned off are turned back on; the journal says done,
    a ``leapfrog/<cluster>/<run>/run/done`` event is fired and the cluster's lock is
    released.

    CLI Example:

    .. code-block:: bash

        salt-run leapfrog.finish cluster=prod1 run=20261122-004100-ab12
    """
    return _core(leapfrog_run.finish, None, cluster=cluster, run=run, pillar=pillar,
                 test=test)


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
    return _core(leapfrog_run.wait_approval, step, cluster=cluster, run=run, step=step,
                 expiry=expiry, pillar=pillar, test=test)


def approve(cluster=None, run=None, step=None):
    """
    Approve the step a run waits on (or ``step``, ahead of time): recorded in the run's
    journal, then announced with the event ``leapfrog/<cluster>/<run>/approve``.

    CLI Example:

    .. code-block:: bash

        salt-run leapfrog.approve cluster=prod1 run=20261122-004100-ab12
    """
    return _core(leapfrog_run.approve, step, cluster=cluster, run=run, step=step, by=_user())


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
    return _core(leapfrog_run.status, None, cluster=cluster, run=run)


def plan(cluster=None, strategy=None, to=None, control=None, computes=None, pillar=None,
         timeout=10, test=False, run=None):
    """
    Print the control-plane plan: the same object ``orch.upgrade_control_plane`` shows with
    ``test=True``, stores at begin and runs (``leapfrog_steps.Plan``: one line per step,
    its kind, where it acts, what it changes, its impact and the point of no return), and
    check the strategy (pillar ``releases:strategy``, or ``strategy``): a rolling hop the
    computes' releases forbid is refused with the reason and the valid alternatives
    (retcode 1). ``to`` is the control plane's release at the end of the run (default
    ``releases:target``), ``control`` its release now and ``computes`` a release or
    ``{node: release}``; without ``computes`` both are what nova records (the service
    versions of its conductors and computes, ``nova_service.releases`` on the first
    controller) when it can be read, else the pillar's (``releases:current``, each
    compute's ``leapfrog.node_info``); ``releases_from`` says which. With ``run``, the plan
    that run stored at its begin is returned as it was (``resumed``). Changes nothing
    (``test`` is accepted for orchestrations).

    CLI Example:

    .. code-block:: bash

        salt-run leapfrog.plan cluster=prod1
        salt-run leapfrog.plan cluster=prod1 strategy=fast_forward computes=2024.1
    """
    try:
        name, config = _load(cluster, pillar)
        return leapfrog_planner.control_plane(_master(), name, config, strategy, to, control,
                                              computes, timeout, run)
    except leapfrog_plan.Impossible as exc:
        return _fail({"cluster": cluster, "possible": False, "reason": exc.reason,
                      "alternatives": exc.alternatives, "text": str(exc)})
    except leapfrog_errors.LeapfrogError as exc:
        problems = getattr(exc, "problems", None) or [str(exc)]
        return _fail({"cluster": cluster, "possible": False, "problems": problems})


def _testing(name, args):
    """The run's pillar overrides: the test-only fault switch of the orchestration's args."""
    return {"leapfrog": {"clusters": {name: {"testing": args.get("testing") or {}}}}}


def run_plan(orch=None, args=None, test=False):
    """
    The plan of one run of orchestration ``orch``, built once and kept: the orchestration
    renders it (``orch/run.jinja``), ``begin`` stores it whole in the journal, and a resume
    (``args`` with ``run`` naming a run that began) gets the stored plan back as it was,
    even when the cluster changed since. ``args`` is the orchestration's pillar (cluster,
    run, to, strategy, canary, batch, servers, timeout, expiry, upgrade_run, force,
    testing). Returns ``cluster``, ``run``, ``plan`` (``leapfrog_steps.Plan.to_dict``),
    ``text`` (what an operator reads: with ``test=True`` each step's journal status too)
    and ``overrides`` (the run's pillar overrides); or ``refused`` with the reason
    (retcode 1): an invalid pillar, an impossible strategy with its alternatives, nothing
    to do.

    CLI Example:

    .. code-block:: bash

        salt-run leapfrog.run_plan orch.upgrade_control_plane args='{cluster: prod1, to: "2025.1"}'
    """
    args = dict(args or {})
    cluster = args.get("cluster")
    try:
        name, config = _load(cluster, _testing(cluster, args) if cluster else None)
        run, built, status = leapfrog_planner.for_run(_master(), orch, name, config, args)
    except leapfrog_errors.PillarInvalid as exc:
        return _fail({"cluster": cluster, "refused": "\n".join(exc.problems)})
    except leapfrog_errors.LeapfrogError as exc:
        return _fail({"cluster": cluster, "refused": str(exc)})
    text = built.render(status if test else None)
    if test and orch == "orch.upgrade_data_plane" and not status:
        changes = compute_changes(release=built.target, cluster=name)
        __context__.pop("retcode", None)  # shown, not a failure of the plan
        text += f"\nper host now: {changes.get('summary') or changes.get('error', '')}"
    if test:
        text += f"\n\nrun {run} on {name} (test: nothing changes)"
    return {"cluster": name, "run": run, "plan": built.to_dict(), "text": text,
            "overrides": _testing(name, args)}


def validate(cluster=None, pillar=None, suffix=None):
    """
    Check the cluster's pillar against leapfrog's schema and list every problem found;
    with ``suffix``, also the rehearsal's clone suffix (``leapfrog_schema.clone_suffix``).

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
    problem = None if suffix is None else leapfrog_schema.clone_suffix(
        suffix, config["database"]["databases"])
    if problem:
        return _fail({"cluster": name, "valid": False, "problems": [problem]})
    releases = config["releases"]
    return {
        "cluster": name,
        "valid": True,
        "path": " -> ".join(releases["path"]),
        "strategy": releases["strategy"],
        "roles": config["roles"],
    }


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

    roles, problems = leapfrog_facts.inventory(__opts__, config, timeout)
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
    backup of the domain that must verify before the domain is replaced). When the old
    minion's scheduler was turned off by a run (``leapfrog_schedules``), the new one is
    turned off too (``schedule_paused``). Returns the node,
    old/new OS, the new key's fingerprint and the seconds of each phase (check, key, rebuild,
    boot, grains); on failure, retcode 1 and the reason.

    CLI Example:

    .. code-block:: bash

        salt-run leapfrog.rebuild_node ctl01
        salt-run leapfrog.rebuild_node ctl01 cluster=prod1 backup=latest timeout=600
    """
    try:
        name, config = _load(cluster, pillar)
    except leapfrog_errors.LeapfrogError as exc:
        problems = getattr(exc, "problems", None) or [str(exc)]
        return _fail({"node": node, "cluster": cluster, "error": "; ".join(problems)})
    try:
        result = leapfrog_rebuild.run_on_master(__opts__, config, node, image=image,
                                                timeout=timeout, backup=backup, stop=stop)
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
    log.info("leapfrog rebuild: %s", leapfrog_rebuild.summary_line(result))
    holder = leapfrog_journal.ClusterLock(_journal_root(), name).read() or {}
    try:  # the new minion's scheduler starts on: off again while the run works
        result["schedule_paused"] = _master().schedules(name).pause_rebuilt(node, holder.get("run"))
    except leapfrog_errors.LeapfrogError as exc:
        return _fail({"node": node, "cluster": name, **result,
                      "error": f"{node} rebuilt, but its scheduler is not off: {exc}"})
    return {"cluster": name, **result}


def restore_node_key(node, backup=None, key=None, cluster=None, pillar=None):
    """
    Accept again the public key ``node`` had before a ``rebuild_node`` (kept under the
    master's cachedir, ``leapfrog/keys/<node>/``), so the node's restored old VM is let back
    in: the key kept by the rebuild that started from ``backup`` (the VM backup being
    restored), else the newest kept key; ``key`` names a kept file. Part of a rollback.

    Only a node listed in the cluster's ``vms:nodes`` and only a file of that node's own
    keep folder (real paths: no ``..``, no link out) that parses as a PEM public key is
    accepted; anything else fails (retcode 1) and changes no key.

    CLI Example:

    .. code-block:: bash

        salt-run leapfrog.restore_node_key ctl01 backup=ctl01/20260101T120000Z-pre-rebuild
    """
    try:
        _, config = _load(cluster, pillar)
        path, pub = leapfrog_rebuild.kept_key(__opts__, config, node, backup, key)
    except leapfrog_errors.LeapfrogError as exc:
        problems = getattr(exc, "problems", None) or [str(exc)]
        return _fail({"node": node, "error": "; ".join(problems)})
    leapfrog_rebuild.accept_pub(__opts__, node, pub)
    return {"node": node, "accepted": path, "finger": leapfrog_rebuild.finger(pub)}


def _throwaway(what, func, cluster, pillar, run, **kwargs):
    """Run ``leapfrog_throwaway.<func>`` for ``run`` with this master's clients; its summary
    or a failure (retcode 1) naming the step and the reason."""
    try:
        name, config = _load(cluster, pillar)
        if not run or not isinstance(run, str):
            raise leapfrog_errors.LeapfrogError("run= is required: the rehearsal run's id")
        return {"cluster": name, **leapfrog_rebuild.on_master(
            __opts__, func, __opts__, config, run, **kwargs)}
    except leapfrog_rebuild.RebuildFailed as exc:
        log.error("leapfrog: %s", exc)
        return _fail({"cluster": cluster, "run": run, "error": str(exc), "step": exc.step,
                      "phases": exc.phases})
    except leapfrog_errors.LeapfrogError as exc:
        problems = getattr(exc, "problems", None) or [str(exc)]
        return _fail({"cluster": cluster, "run": run, "error": "; ".join(problems)})
    except Exception as exc:  # pylint: disable=broad-except
        log.exception("leapfrog: %s failed", what)
        return _fail({"cluster": cluster, "run": run,
                      "error": f"{what} failed: {type(exc).__name__}: {exc}"})


def throwaway_node(run=None, cluster=None, pillar=None, timeout=300):
    """
    Make a rehearsal's throwaway controller (pillar ``rehearsal:node``, e.g. ``upg01``): a
    new VM on ``rehearsal:hypervisor`` with the settings of ``rehearsal:like`` (default: the
    first node of ``vms:nodes``), booting ``vms:image``, whose minion comes in with a key the
    master generated and accepted first (sealed to the hypervisor on its way, as
    ``rebuild_node``'s), then wait until it answers with ``vms:os``. Refused, changing
    nothing, for a production node's id or an id with a key leapfrog did not make for this
    ``run``. ``discard_node`` removes it. Returns the node, its OS, the key's fingerprint
    and the seconds of each phase; on failure, retcode 1 and the step.

    CLI Example:

    .. code-block:: bash

        salt-run leapfrog.throwaway_node run=20261207-120000-ab12 cluster=prod1
    """
    return _throwaway("the throwaway controller", leapfrog_throwaway.make, cluster, pillar,
                      run, timeout=timeout)


def discard_node(run=None, cluster=None, pillar=None):
    """
    Remove rehearsal run ``run``'s throwaway controller: its domain stopped at once and
    undefined, its disk, seed and console file deleted (``vm_backup.discard``, which
    refuses any domain not marked as that run's throwaway), its key deleted. Refused,
    changing nothing, for another run's throwaway or a key leapfrog did not make; nothing
    to do when there is none (a re-run).

    CLI Example:

    .. code-block:: bash

        salt-run leapfrog.discard_node run=20261207-120000-ab12 cluster=prod1
    """
    return _throwaway("discarding the throwaway controller", leapfrog_throwaway.discard,
                      cluster, pillar, run)


# ------------------------------------------------------------------ cross-minion calls and
# the rehearsal's checks (orch.test_upgrade)
def _role_target(config, role=None, target=None):
    if target:
        return target
    if role not in leapfrog_schema.roles(config):
        raise leapfrog_errors.LeapfrogError(
            f"unknown role {role!r}; roles: "
            f"{', '.join(sorted(leapfrog_schema.roles(config)))}")
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
        results = leapfrog_scrub.scrub(leapfrog_minions.call(
            __opts__, tgt, func, kwargs, first=bool(first), timeout=timeout))
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


# ------------------------------------------------------------------ the control-plane
# upgrade (orch.upgrade_control_plane): pre-check, revisions, availability probe, report
def precheck(cluster=None, to=None, strategy=None, pillar=None, timeout=10):
    """
    Analyse the cluster before an upgrade and collect every problem (it does not stop at
    the first): pillar valid, every role's minions answer, the strategy (``strategy``, else
    ``releases:strategy``) possible with the computes' releases (``leapfrog.plan``), nova
    databases at the current release's heads, ``nova-status upgrade check``, DB charsets / NULL compute hosts / soft-deleted rows
    (``mysql_backup.precheck``), every haproxy server UP, offline migrations pending in a
    listed service's target code (neutron's contract branch: refused for a rolling hop,
    ``strategy=fast_forward`` runs them with the API closed), two controllers at least for
    a rolling upgrade. Fails (retcode 1) listing them all.

    CLI Example:

    .. code-block:: bash

        salt-run leapfrog.precheck cluster=prod1 to=2025.1
    """
    try:
        name, config = _load(cluster, pillar)
    except leapfrog_errors.LeapfrogError as exc:
        return _fail({"cluster": cluster, "ok": False,
                      "problems": getattr(exc, "problems", None) or [str(exc)]})
    problems, notes = leapfrog_facts.inventory(__opts__, config, timeout)[1], []
    decision = {}
    try:  # the pillar is read once: the checks below get this call's config
        decision = leapfrog_facts.decide(__opts__, config, strategy, to, timeout=timeout)[0]
    except leapfrog_errors.LeapfrogError as exc:
        problems.extend(getattr(exc, "problems", None) or [str(exc)])
    control = str(decision.get("control") or config["releases"]["current"])
    target = decision["hops"][-1][1] if decision.get("hops") else to
    leapfrog_precheck.collect(__opts__, config, control, decision.get("strategy"), problems,
                              notes, target)
    result = {"cluster": name, "ok": not problems, "problems": problems, "notes": notes,
              "strategy": decision.get("strategy"),
              "hops": [list(hop) for hop in decision["hops"]] if decision else None}
    for line in problems:
        _say(f"precheck problem: {line}")
    for line in notes:
        _say(f"precheck note: {line}")
    return _fail(result) if problems else result


def revisions(cluster=None, release=None, pillar=None):
    """
    The schema revisions of the cloud's databases, read on the first controller with
    ``release``'s code, for every service of the cluster's ``services`` as its recipe says:
    nova's (api, main, cell0, and whether they are at that release's heads), the others'
    alembic versions (``openstack_db.version``).

    CLI Example:

    .. code-block:: bash

        salt-run leapfrog.revisions cluster=prod1 release=2025.1
    """
    try:
        _, config = _load(cluster, pillar)
        release = str(release or config["releases"]["target"])
        first = leapfrog_minions.first(__opts__, config, "controller")
        tgt = f"L@{first}"
        out = {"release": release, "node": first}
        for recipe in leapfrog_recipes.recipes(config["services"]):
            function, kwargs = recipe.version
            out[recipe.service] = leapfrog_minions.call(__opts__, tgt, function,
                                                        kwargs(release))[first]
    except leapfrog_errors.LeapfrogError as exc:
        return _fail({"error": str(exc)})
    return out


def probe_start(cluster=None, run=None, pillar=None, duration=3600):
    """
    Start the availability probe of a run (``leapfrog_probe`` in its own process on the
    master) against the cluster's ``haproxy:probe_urls`` (the API frontends on the VIP);
    nothing to do when none are set or the run's probe already runs. ``probe_stop`` (or the
    report) stops it and keeps its figures beside the journal.

    CLI Example:

    .. code-block:: bash

        salt-run leapfrog.probe_start cluster=prod1 run=20261122-004100-ab12
    """
    return _core(leapfrog_run.probe_start, None, cluster=cluster, run=run, pillar=pillar,
                 duration=duration)


def probe_stop(cluster=None, run=None, pillar=None, timeout=30):
    """
    Stop the run's availability probe (SIGTERM by its PID; it writes its figures) and
    return the summary of every probe of the run merged (requests, failures, longest outage).

    CLI Example:

    .. code-block:: bash

        salt-run leapfrog.probe_stop cluster=prod1 run=20261122-004100-ab12
    """
    return _core(leapfrog_run.probe_stop, None, cluster=cluster, run=run, pillar=pillar,
                 timeout=timeout)


SECRET_KEYS = ("password",)


def cluster_config(cluster=None, pillar=None):
    """
    The cluster's validated pillar with defaults filled in and secrets masked, plus
    ``controllers``: the controller role's minions that have a VM in ``vms:nodes`` (sorted).
    What an orchestration reads while it renders.

    CLI Example:

    .. code-block:: bash

        salt-run leapfrog.cluster_config cluster=prod1
    """
    try:
        name, config = _load(cluster, pillar)
    except leapfrog_errors.LeapfrogError as exc:
        return _fail({"cluster": cluster, "problems": getattr(exc, "problems", None) or [str(exc)]})
    database = {k: ("****" if k in SECRET_KEYS else v) for k, v in config["database"].items()}
    return {**config, "database": database, "cluster": name,
            "controllers": leapfrog_minions.rolled_controllers(__opts__, config)}


def stopped(cluster=None, run=None, orch=None, rollback=None):
    """
    Say how a failed run goes on: the failed step and its error, the command that resumes
    it, and the one that rolls it back; stop the run's availability probe, turn back on the
    schedulers the run turned off (a resume turns them off again) and write the failed
    run's report (a resumed run's own report replaces it). Orchestrations call it on
    failure (onfail).

    CLI Example:

    .. code-block:: bash

        salt-run leapfrog.stopped cluster=prod1 run=20261122-004100-ab12
    """
    return _core(leapfrog_run.stopped, None, cluster=cluster, run=run, orch=orch,
                 rollback=rollback)


def cleanup(cluster=None, run=None, step=None, function=None, function_kwargs=None,
            reopen=None, pillar=None):
    """
    Run a plan's cleanup step after a failure (e.g. the rehearsal's clones dropped): the
    runner function ``function`` with ``function_kwargs``, then the steps of ``reopen``
    (the ones whose work it undid) are pending again in the run's journal, so a resume
    with ``run=RUN`` does them again instead of going on without their work.
    Orchestrations call it on the failure of those steps (onfail).

    CLI Example:

    .. code-block:: bash

        salt-run leapfrog.cleanup cluster=prod1 run=20261122-004100-ab12 step=drop_clones_after_failure function=leapfrog.call function_kwargs='{func: mysql_backup.drop_clone, role: database, kwargs: {suffix: _upgrade}}' reopen='[clone, staged_sync]'
    """
    return _core(leapfrog_run.cleanup, step, cluster=cluster, run=run, step=step,
                 function=function, function_kwargs=function_kwargs, reopen=reopen,
                 pillar=pillar)


def resume_schedules(cluster=None, pillar=None):
    """
    Turn back on the Salt schedulers leapfrog turned off (the cluster's list, see
    ``leapfrog_schedules``). Every run's end and failure stop do it; use it after a run was
    killed and will not be resumed or rolled back. Refused while a live run holds the
    cluster's lock.

    CLI Example:

    .. code-block:: bash

        salt-run leapfrog.resume_schedules cluster=prod1
    """
    return _core(leapfrog_run.resume_schedules, None, cluster=cluster, pillar=pillar)


def report(cluster=None, run=None, pillar=None):
    """
    Write the run's report beside its journal (``report.json``, ``report.md``,
    ``timeline.svg``): steps and timings, backups and their checksums, DB revisions
    before/after, the controllers' OS after, API availability through the VIP (the run's
    probe is stopped first) and a timeline of the stages against availability. Returns
    the headline figures and the paths. A journaled step of the run.

    CLI Example:

    .. code-block:: bash

        salt-run leapfrog.report cluster=prod1 run=20261122-004100-ab12
    """
    return _core(leapfrog_run.report, "report", cluster=cluster, run=run, pillar=pillar)


def rollback_sources(cluster=None, upgrade_run=None, pillar=None, force=False):
    """
    What ``orch.rollback_control_plane`` restores from an upgrade run's journal
    (``leapfrog_history``, by step kind): the DB backup (its ``backup_db`` step; refused
    when the run has none, or when it did not verify) and, per controller, the disk backup
    taken before its rebuild (its ``backup_disk`` step).
    Controllers without one were never touched and are only restarted. ``keys``: the
    controllers whose rebuild replaced their minion key (the old one was kept).
    ``computes``: the computes a fast-forward run stopped, each with the release it ran.
    Refused when a later upgrade run of the cluster finished after this one (it built on
    it: its work would be lost), naming it, or when the run passed its point of no return
    (a done step its plan marks irreversible, e.g. a contract), unless ``force=True``.

    CLI Example:

    .. code-block:: bash

        salt-run leapfrog.rollback_sources cluster=prod1 upgrade_run=20261122-004100-ab12
    """
    try:
        name, config = _load(cluster, pillar)
        sources = leapfrog_history.rollback_sources(__opts__, _journal_root(), name, config,
                                                   upgrade_run, force)
    except leapfrog_errors.LeapfrogError as exc:
        return _fail({"cluster": cluster, "upgrade_run": upgrade_run, "error": str(exc)})
    return {"cluster": name, **sources}


# ------------------------------------------------------------------ the data plane
# (orch.upgrade_data_plane): one compute switched to a release, through the compute API
def switch_compute(host, release=None, cluster=None, servers=None, reason=None, pillar=None,
                   timeout=None):
    """
    Switch one compute to ``release`` (default ``releases:target``) without touching its
    workloads (a host whose service already reports that release is skipped, so a re-run
    changes nothing there): disable its nova-compute (compute API, with a reason), wait until no
    operation is in progress on it, apply ``data_plane:redeploy_sls`` on it with pillar
    ``leapfrog:release`` / ``leapfrog:services: running`` (the new release's code, restarted),
    wait until its service is up with that release's service version and a fresh heartbeat,
    enable it again, and check its servers kept their status. A host with servers is
    skipped when ``servers`` (default ``data_plane:servers``) is ``skip``, switched anyway
    with ``force``, emptied first with ``migrate`` (once disabled, every server is
    live-migrated to a host the scheduler picks: ``nova_service.migrate_away``). ``reason``
    (default ``leapfrog: switching to <release>``) is the disabled reason set and the one
    enable accepts: a host disabled for another reason stays disabled. ``timeout`` (default
    ``data_plane:timeout``) bounds each wait. The API calls run on the first controller.
    Returns per phase the seconds taken.

    CLI Example:

    .. code-block:: bash

        salt-run leapfrog.switch_compute cmp01 release=2025.1 cluster=prod1 servers=force
    """
    out = switch_computes([host], release=release, cluster=cluster, servers=servers,
                          reason=reason, pillar=pillar, timeout=timeout)
    if not isinstance(out.get("hosts"), dict):  # refused before any host was looked at
        return out
    result = out["hosts"][host]
    return _fail(result) if "error" in result else result


def switch_computes(hosts, release=None, cluster=None, servers=None, reason=None, pillar=None,
                    timeout=None):
    """
    Switch a batch of computes to ``release`` together, as :func:`switch_compute` does one:
    each host is checked, disabled and emptied as its policy says, then the redeploy SLS is
    applied on the whole batch at once (in parallel, one Salt job), then each is waited
    for, enabled and checked. A host that fails (its redeploy, or it does not come back
    within ``timeout``) stays disabled and fails the call, naming it; the others of the batch
    are finished (enabled), so a re-run only retries the failed ones. Returns
    ``{"hosts": {host: result}}``.

    CLI Example:

    .. code-block:: bash

        salt-run leapfrog.switch_computes '[cmp02, cmp03]' release=2025.1 cluster=prod1
    """
    import time  # pylint: disable=import-outside-toplevel

    started = time.monotonic()
    if isinstance(hosts, str):
        hosts = [h.strip() for h in hosts.split(",") if h.strip()]
    try:
        name, config = _load(cluster, pillar)
        release = str(release or config["releases"]["target"])
        for host in hosts:
            leapfrog_journal.check_name("host", host)
        switch = leapfrog_computes.Switch(
            __opts__, name, config, release, servers or config["data_plane"]["servers"],
            reason or f"leapfrog: switching to {release}",
            timeout if timeout not in (None, "") else config["data_plane"]["timeout"])
        sls = leapfrog_computes.compute_sls(config)
    except leapfrog_errors.LeapfrogError as exc:
        return _fail({"hosts": hosts, "error": str(exc)})
    results = switch.run(list(hosts), sls)
    failed = [h for h in hosts if "error" in results[h]]
    out = {"cluster": name, "release": release, "hosts": results,
           "seconds": round(time.monotonic() - started, 2)}
    if failed:
        return _fail(dict(out, failed=failed, error="; ".join(
            f"{h}: {results[h]['error']}" for h in failed)))
    return out


def stop_compute(host, release, reason=None, cluster=None, pillar=None, timeout=600):
    """
    Stop one compute's nova-compute and leave its servers running (the first step of a
    fast-forward upgrade): disable it (compute API, with ``reason``), wait until no
    operation is in progress on it, then apply ``data_plane:redeploy_sls`` with pillar
    ``leapfrog:release: <release>`` (the release it runs now, so nothing is installed) and
    ``leapfrog:services: stopped``. ``release_before`` in the result is what a rollback
    starts it with again.

    CLI Example:

    .. code-block:: bash

        salt-run leapfrog.stop_compute cmp01 2024.1 reason='fast-forward to 2026.1' cluster=prod1
    """
    phase = leapfrog_computes.Phases(__opts__, timeout)
    try:
        name, config = _load(cluster, pillar)
        out = leapfrog_computes.stop(__opts__, config, host, str(release), reason, phase)
    except leapfrog_errors.LeapfrogError as exc:
        return _fail({"host": host, "error": str(exc), "phases": phase.phases})
    return {"cluster": name, **out}


def unpin_compute_rpc(release, cluster=None, pillar=None, timeout=600):
    """
    Lift nova's compute RPC version cap once every compute runs ``release``: during the
    mixed period the controllers run with ``[upgrade_levels] compute = auto`` (messages to
    computes at the oldest compute's version, computed once and cached until a restart);
    this restarts their nova services without the cap, one controller at a time, out of
    haproxy meanwhile when there are several (apply ``vms:redeploy_sls`` with pillar
    ``leapfrog:release: <release>``, ``leapfrog:services: running``,
    ``leapfrog:compute_rpc: null``). While a compute is older (skipped, or not upgraded
    yet) nothing changes and ``skipped`` says which: the cap must stay.

    CLI Example:

    .. code-block:: bash

        salt-run leapfrog.unpin_compute_rpc 2025.1 cluster=prod1
    """
    phase = leapfrog_computes.Phases(__opts__, timeout)
    try:
        name, config = _load(cluster, pillar)
        out = leapfrog_computes.unpin(__opts__, config, str(release), phase)
    except (leapfrog_errors.LeapfrogError, KeyError) as exc:
        return _fail({"cluster": cluster, "error": str(exc), "phases": phase.phases})
    return {"cluster": name, **out}


def pause(seconds=30, cluster=None):  # pylint: disable=unused-argument
    """
    Wait ``seconds`` (pacing between compute restarts, to spare RabbitMQ); ``cluster`` is
    accepted like every step of an orchestration.

    CLI Example:

    .. code-block:: bash

        salt-run leapfrog.pause 30
    """
    import time  # pylint: disable=import-outside-toplevel

    try:
        seconds = leapfrog_parse.seconds(seconds, "pause", maximum=3600)
    except leapfrog_errors.LeapfrogError as exc:
        return _fail({"error": str(exc)})
    time.sleep(seconds)
    return {"paused": seconds}


def prestage_computes(release=None, cluster=None, pillar=None, timeout=1800):
    """
    Install ``release``'s code (default ``releases:target``) on every compute ahead of the
    switches, without touching a service: ``data_plane:prestage_sls`` applied with pillar
    ``leapfrog:release``, on all of them at once (one Salt job: the slow part happens before
    the window). Skipped, with the reason, when that pillar key is not set. A host that
    fails is named; the others keep what they installed.

    CLI Example:

    .. code-block:: bash

        salt-run leapfrog.prestage_computes release=2025.1 cluster=prod1
    """
    try:
        name, config = _load(cluster, pillar)
        release = str(release or config["releases"]["target"])
        sls = config["data_plane"]["prestage_sls"]
        if not sls:
            return {"cluster": name, "skipped": True, "reason": (
                "data_plane:prestage_sls is not set: nothing installed ahead (the redeploy "
                "installs the release's code during each switch)")}
        changed, problems = leapfrog_computes.apply_together(
            __opts__, config["roles"]["compute"], sls, {"leapfrog": {"release": release}}, timeout)
    except leapfrog_errors.LeapfrogError as exc:
        return _fail({"cluster": cluster, "error": str(exc)})
    out = {"cluster": name, "release": release, "sls": sls, "hosts": changed}
    if problems:
        return _fail(dict(out, failed=sorted(problems), error="; ".join(problems.values())))
    return out


def compute_changes(release=None, cluster=None, pillar=None, timeout=300):
    """
    What switching each compute to ``release`` (default ``releases:target``) would change,
    before anything is touched: per host its release now (nova's service version) and the
    target, and what ``data_plane:redeploy_sls`` would do there (``state.apply`` with
    ``test=True``, the switch's pillar: packages or venv to install, config diffs,
    services to restart, as that SLS's states report them). Changes nothing.

    CLI Example:

    .. code-block:: bash

        salt-run leapfrog.compute_changes release=2025.1 cluster=prod1
    """
    try:
        name, config = _load(cluster, pillar)
        release = str(release or config["releases"]["target"])
        changed, problems = leapfrog_computes.apply_together(
            __opts__, config["roles"]["compute"], leapfrog_computes.compute_sls(config),
            {"leapfrog": {"release": release, "services": "running"}}, timeout, test=True)
        now = leapfrog_facts.cloud_releases(__opts__, config, timeout).get("computes") or {}
    except leapfrog_errors.LeapfrogError as exc:
        return _fail({"cluster": cluster, "error": str(exc)})
    hosts = {}
    for host in sorted(set(changed) | set(problems)):
        hosts[host] = {"release": now.get(host), "target": release,
                       "changes": changed.get(host, [])}
        if host in problems:
            hosts[host]["error"] = problems[host]
    out = {"cluster": name, "release": release, "hosts": hosts}
    lines = [f"{h}: {i['release'] or '?'} -> {release}: "
             + ("; ".join(i["changes"]) or "nothing to change") for h, i in hosts.items()]
    out["summary"] = "\n".join(lines)
    if problems:
        return _fail(dict(out, error="; ".join(problems.values())))
    return out


def data_plane_hosts(cluster=None, canary=None, batch=None, pillar=None):
    """
    The computes of a data-plane run, in order: the canary subset (``canary`` or
    ``data_plane:canary``: a list, glob or compound target) and the rest in batches of
    ``batch`` (``data_plane:batch``: a count or a percentage of the rest).

    CLI Example:

    .. code-block:: bash

        salt-run leapfrog.data_plane_hosts cluster=prod1 canary='cmp00[1-2]*' batch=25%
    """
    try:
        name, config = _load(cluster, pillar)
        hosts = leapfrog_facts.data_plane_hosts(__opts__, config, canary, batch)
    except (leapfrog_errors.LeapfrogError, ValueError) as exc:
        return _fail({"cluster": cluster, "error": str(exc)})
    return {"cluster": name, **hosts}
