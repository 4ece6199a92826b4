"""Plan builders: each orchestration's plan (``leapfrog_steps.Plan``) from the facts of one
run, gathered once by the runner. Small functions, one per part of a run, as COU's
``_generate_*``; the services' database stages come from ``leapfrog_recipes``.

Facts (plain data, so golden tests build plans from YAML):

* every plan: ``cluster``, ``run``, ``config`` (the validated cluster pillar);
* control plane: ``decision`` (``leapfrog_plan.strategy``: strategy, hops, control, why),
  ``controllers`` (the controllers to roll, in order), ``computes`` ({host: release});
* data plane: ``to``, ``hosts`` ({canary, batches, pause}), ``switch`` (servers, timeout);
* rollback: ``sources`` (``leapfrog.rollback_sources``), ``controllers``;
* rehearsal: ``suffix`` (checked by ``leapfrog_schema.clone_suffix``), ``throwaway`` (the
  throwaway controller, ``leapfrog_throwaway.target``, or None).
"""
import leapfrog_recipes
import leapfrog_schema
import leapfrog_steps

HAPROXY = {"role": "haproxy"}
# seconds a rollback's DB restore lets sessions left by the services it has stopped end
# before it kills them (every controller and compute is stopped by then; a session of
# something still writing would make the restored data differ: the restore's own
# comparison with the backup's manifest then fails the step)
ROLLBACK_CLIENTS_GRACE = 5
FIRST_CONTROLLER = {"role": "controller", "first": True}
# seconds the Galera backup node's DB sessions may take to end once it is set to drain (a
# standby holds none; a node that takes the writes would not drain: the step fails, naming it)
DB_NODE_DRAIN_TIMEOUT = 60


def _call(func, kwargs=None, expect=None, **where):
    """kwargs of a ``leapfrog.call`` step: ``func`` with ``kwargs`` on a role or target."""
    out = {"func": func, **where}
    if kwargs is not None:
        out["kwargs"] = kwargs
    if expect is not None:
        out["expect"] = expect
    return out


def _on(node):
    return {"target": f"L@{node}"}


def _apply(sls, pillar, node):
    """kwargs of a ``leapfrog.call`` step applying ``sls`` with ``pillar`` on ``node``."""
    return _call("state.apply", {"mods": sls, "pillar": pillar}, **_on(node))


def _haproxy(plan, name, kind, func, node, changes, impact="none", **kwargs):
    """A step on the haproxy role about controller ``node`` (drain, check, ready);
    ``kwargs`` go to ``haproxy_admin.<func>``."""
    return plan.add(name, kind, "leapfrog.call",
                    _call(f"haproxy_admin.{func}", {"server": node, **kwargs}, **HAPROXY),
                    node=node, where="haproxy", changes=changes, impact=impact)


def _ready(plan, name, node, changes=None, **kwargs):
    return _haproxy(plan, name, "ready", "ready", node,
                    changes or f"{node} back in every backend", **kwargs)


def _verify(plan):
    """The operator's checks through the VIP, on the first controller."""
    plan.add("verify", "verify", "leapfrog.call",
             _call("openstack_verify.wait", {"timeout": 300}, **FIRST_CONTROLLER),
             where="the VIP", changes="nothing: the operator's checks")


# ----------------------------------------------------------------------- control plane
def _deployed(to, ffu):
    """The redeploy SLS's pillar per phase: services stopped or running, nova's FFU
    workaround, and its [upgrade_levels] compute (auto while computes may be older)."""
    return {
        "stopped": {"leapfrog": {"release": to, "services": "stopped", "ffu": ffu,
                                 "compute_rpc": "auto"}},
        "running": {"leapfrog": {"release": to, "services": "running", "ffu": ffu,
                                 "compute_rpc": "auto"}},
        "ffu_off": {"leapfrog": {"release": to, "services": "running", "ffu": False,
                                 "compute_rpc": None}},
    }


def _before(plan, run, to, strategy, config, recipes):
    plan.add("precheck", "precheck", "leapfrog.precheck", {"to": to, "strategy": strategy},
             where="every role", changes="nothing: every problem collected")
    plan.side_by_side(
        lambda: plan.add("revisions_before", "revisions", "leapfrog.revisions",
                         {"release": to}, where="first controller",
                         changes="nothing: DB revisions recorded"),
        lambda: _backup_dbs(plan, run, config, recipes))
    plan.add("approval", "approval", changes="nothing: waits for salt-run leapfrog.approve")


def _backup_dbs(plan, run, config, recipes):
    """The run's DB backup, verified (``database:backup``), and OVN's when a service keeps
    its state there."""
    if leapfrog_schema.db_backup(config) == "physical":
        _galera_backup(plan, run, config["database"]["galera"])
    else:
        plan.add("backup_dbs", "backup_db", "leapfrog.call",
                 _call("mysql_backup.backup", {"label": run}, role="database"),
                 where="database", changes=f"a backup of "
                 f"{', '.join(config['database']['databases'])} (one snapshot)")
        plan.add("verify_db_backup", "verify_backup", "leapfrog.call",
                 _call("mysql_backup.verify", {"label": run}, {"valid": True},
                       role="database"),
                 where="database", changes="nothing: the backup verified")
    if any(recipe.ovsdb for recipe in recipes):
        plan.add("backup_ovsdb", "backup_ovsdb", "leapfrog.call",
                 _call("ovsdb_backup.backup", {"label": run}, role="database"),
                 where="database", changes="a backup of OVN's northbound and southbound "
                                           "databases")
        plan.add("verify_ovsdb_backup", "verify_backup", "leapfrog.call",
                 _call("ovsdb_backup.verify", {"label": run}, {"valid": True},
                       role="database"),
                 where="database", changes="nothing: the OVSDB backup verified")


def _galera_backup(plan, run, galera):
    """A physical backup of the Galera cluster on its backup node, taken out of the DB
    frontend meanwhile (no client may be moved to a node paused by the backup's lock)."""
    node = galera["backup_node"]
    frontend = {"server": galera["server"] or node, "backends": [galera["frontend"]]}
    _haproxy(plan, f"{node}_out_of_db_frontend", "db_node_out", "drain", node,
             f"{node} takes no DB session (a standby: the node taking the writes keeps "
             "them)", **frontend, timeout=DB_NODE_DRAIN_TIMEOUT)
    plan.add("backup_dbs", "backup_db", "leapfrog.call",
             _call("galera_backup.backup", {"label": run}, **_on(node)), node=node,
             where=node, changes="a physical backup of the Galera cluster (the node "
             "desynced meanwhile; the others take the writes)")
    _haproxy(plan, f"{node}_back_in_db_frontend", "db_node_in", "ready", node,
             f"{node} a standby of the DB frontend again", **frontend)
    plan.add("verify_db_backup", "verify_backup", "leapfrog.call",
             _call("galera_backup.verify", {"label": run}, {"valid": True}, **_on(node)),
             node=node, where=node,
             changes="nothing: the backup verified in a scratch server")


def _db_stages(plan, recipes, ctx, phase, node=None):
    """Each service's stages of ``phase`` in order, the services side by side, on ``node``
    (a controller already at the target; default: the first controller)."""
    where = _on(node) if node else FIRST_CONTROLLER

    def service(recipe):
        for stage in recipe.phase(phase):
            if stage.guard:
                guard = stage.guard
                plan.add(f"{stage.name}_guard", "guard", "leapfrog.call",
                         _call(guard.function, guard.kwargs(ctx), guard.expect,
                               role="controller"),
                         node=recipe.service, where="controllers", changes=guard.changes)
            plan.add(stage.name, "db_sync" if phase == "sync" else "db_finish",
                     "leapfrog.call", _call(stage.function, stage.kwargs(ctx), **where),
                     node=recipe.service, where=node or "first controller",
                     changes=stage.changes, irreversible=stage.irreversible)

    plan.side_by_side(*[lambda recipe=recipe: service(recipe)
                        for recipe in recipes if recipe.phase(phase)])


def _backup_disk(plan, config, node, run, impact):
    vm = config["vms"]["nodes"][node]
    plan.add(f"{node}_backup_disk", "backup_disk", "leapfrog.call",
             _call("vm_backup.backup", {"domain": vm["domain"], "tag": run, "restart": False},
                   **_on(vm["hypervisor"])),
             node=node, where=vm["hypervisor"],
             changes=f"{node}'s VM stopped, its disk backed up (offline, verified)",
             impact=impact)


def _rebuild(plan, config, node, sls, pillar):
    """A controller's VM rebuilt on the new OS and redeployed, its services stopped."""
    plan.add(f"{node}_rebuild", "rebuild", "leapfrog.rebuild_node",
             {"node": node, "backup": "latest"}, node=node,
             where=config["vms"]["nodes"][node]["hypervisor"],
             changes=f"{node}'s VM rebuilt from {config['vms']['image']} with a "
                     "pre-accepted key")
    plan.add(f"{node}_redeploy", "redeploy", "leapfrog.call",
             _apply(sls, pillar, node),
             node=node, where=node, changes=f"{sls} applied, services stopped")


def _drain(plan, node, impact="none", **kwargs):
    _haproxy(plan, f"{node}_drain", "drain", "drain", node, f"{node} out of every backend",
             impact=impact, **kwargs)


def _health_checked(plan, node):
    """A stopped controller set ready in haproxy again: its health checks keep it DOWN
    until its services answer, then bring it UP (a fast-forward's starting services ask
    keystone for tokens through the VIP: it must route to the first one up)."""
    _haproxy(plan, f"{node}_health_checked", "ready", "set_state", node,
             f"{node} ready in haproxy again: DOWN until its services answer", state="ready",
             health="down")


def _start(plan, node, sls, pillar, changes, impact="none"):
    plan.add(f"{node}_start", "start", "leapfrog.call",
             _apply(sls, pillar, node),
             node=node, where=node, changes=changes, impact=impact)


def _node_steps(plan, recipes, node, which):
    """The recipes' own steps on ``node`` (``before_node`` or ``after_node``)."""
    for recipe in recipes:
        for step in getattr(recipe, which):
            plan.add(f"{node}_{step.suffix}", step.kind, "leapfrog.call",
                     _call(step.function, {}, **_on(node)), node=node, where=node,
                     changes=step.changes)


def _has_node_steps(recipes, which):
    return any(getattr(recipe, which) for recipe in recipes)


def _rolling(plan, facts, to, recipes, ctx, deployed, sls):
    config, run, controllers = facts["config"], facts["run"], facts["controllers"]
    one_release = _one_release_backends(recipes, config)
    for index, node in enumerate(controllers):
        _node_steps(plan, recipes, node, "before_node")
        _drain(plan, node, "none" if len(controllers) > 1 else "API down (one controller)",
               allow_last=len(controllers) == 1)
        _backup_disk(plan, config, node, run, f"{node} out of service")
        _rebuild(plan, config, node, sls, deployed["stopped"])
        if index == 0:
            _db_stages(plan, recipes, ctx, "sync", node)
        _start(plan, node, sls, deployed["running"], f"services started at {to}")
        _haproxy(plan, f"{node}_check", "check", "check", node,
                 "nothing: its own endpoints checked")
        _node_steps(plan, recipes, node, "after_node")
        if index == 0 and one_release and controllers[1:]:
            _handover(plan, node, controllers[1:], one_release, to)
            _node_steps(plan, recipes, node, "after_handover")
        else:
            _ready(plan, f"{node}_ready", node)


def _one_release_backends(recipes, config):
    """The haproxy backends of the APIs answered by one release at a time."""
    return [config["haproxy"].get("backends", {}).get(r.service, r.service)
            for r in recipes if r.one_release_api]


def _handover(plan, node, others, backends, to):
    """The first controller at the target back in every backend, and at once the others'
    older servers out of the one-release APIs' backends (until each one's own ``ready``
    brings it back at the target): both releases answer them for well under a second."""
    plan.add(f"{node}_ready", "ready", "leapfrog.call",
             _call("haproxy_admin.handover", {"server": node, "others": others,
                                              "backends": backends}, **HAPROXY),
             node=node, where="haproxy",
             changes=f"{node} back in every backend; {', '.join(others)} out of "
                     f"{', '.join(backends)} at once: only {to}'s servers answer them")


def _fast_forward(plan, facts, to, recipes, ctx, deployed, sls):
    """Every controller but the first rebuilt at the target while the first serves (side
    by side); the API's window: the first drained and stopped, the path's DB syncs (the
    services side by side) on the second, which starts; then the others start and the
    first is rebuilt; the computes switched side by side; nova's FFU workaround lifted
    one controller at a time. A single controller is rebuilt inside the window.

    The recipes' node steps as in a rolling hop: ``before_node`` (routers' gateways off)
    one node at a time before it is rebuilt, ``after_node`` between its start and its
    ``ready``. The first's gateways move only once every other controller serves again
    (they would go to a chassis being rebuilt), so its rebuild then waits for them."""
    config, run, controllers = facts["config"], facts["run"], facts["controllers"]
    first, rest = controllers[0], controllers[1:]
    computes = sorted(facts["computes"])
    reason = f"leapfrog: fast-forward to {to}"
    started = f"services started at {to} with nova's FFU workaround"
    plan.side_by_side(*[lambda host=host: plan.add(
        f"{host}_stop", "stop_compute", "leapfrog.stop_compute",
        {"host": host, "release": facts["computes"][host], "reason": reason},
        node=host, where=host, changes="disabled with a reason, nova-compute stopped",
        impact="no new servers on it; servers keep running") for host in computes])

    def ahead(node):  # rebuilt while the first controller serves
        _drain(plan, node)
        _backup_disk(plan, config, node, run, f"none: {first} serves")
        _health_checked(plan, node)
        _rebuild(plan, config, node, sls, deployed["stopped"])

    for node in rest:  # one at a time: each move reads what the previous one left
        _node_steps(plan, recipes, node, "before_node")
    plan.side_by_side(*[lambda node=node: ahead(node) for node in rest])
    if not rest:
        _node_steps(plan, recipes, first, "before_node")
    _drain(plan, first, "API down: the window opens", allow_last=True)
    _backup_disk(plan, config, first, run,
                 f"API down until {rest[0]} starts" if rest else "API down")
    _health_checked(plan, first)

    sync_node = rest[0] if rest else first  # a controller already at the target
    if not rest:
        _rebuild(plan, config, first, sls, deployed["stopped"])
    _db_stages(plan, recipes, ctx, "sync", sync_node)
    _start(plan, sync_node, sls, deployed["running"], started, "API back: the window closes")
    _node_steps(plan, recipes, sync_node, "after_node")
    _ready(plan, f"{sync_node}_ready", sync_node, f"{sync_node} UP in every backend",
           timeout=120)

    def up(node):
        _start(plan, node, sls, deployed["running"], started)
        _node_steps(plan, recipes, node, "after_node")
        _ready(plan, f"{node}_ready", node, f"{node} UP in every backend", timeout=120)

    def rebuild_first():
        _node_steps(plan, recipes, first, "before_node")
        _rebuild(plan, config, first, sls, deployed["stopped"])

    if rest:  # the others start, and the first is rebuilt, while the API serves
        others = [lambda node=node: up(node) for node in rest[1:]]
        if _has_node_steps(recipes, "before_node"):
            plan.side_by_side(*others)
            rebuild_first()
        else:
            plan.side_by_side(*others, rebuild_first)
        up(first)
    plan.side_by_side(*[lambda host=host: plan.add(
        f"{host}_switch", "switch_compute", "leapfrog.switch_compute",
        {"host": host, "release": to, "servers": "force", "reason": reason},
        node=host, where=host, changes=f"nova-compute redeployed at {to}, enabled "
        "(a rollback redeploys the release it ran)") for host in computes])
    drain = len(controllers) > 1  # a cloud's only controller stays in: keystone serves
    for node in controllers:
        if drain:
            _haproxy(plan, f"{node}_ffu_off_drain", "drain", "drain", node,
                     f"{node} out of every backend")
        plan.add(f"{node}_ffu_off", "restart", "leapfrog.call",
                 _apply(sls, deployed["ffu_off"], node),
                 node=node, where=node, changes="nova restarted without the FFU workaround")
        _ready(plan, f"{node}_ffu_off_ready", node)


def _repin(plan, recipes, controllers, sls, pillar):
    """Once every controller runs the target: each one's processes that pin their RPC
    versions at start reloaded (cinder's), one controller at a time."""
    for recipe in recipes:
        if not recipe.repin:
            continue
        reload = {"leapfrog": {**pillar["leapfrog"], "reload": recipe.repin}}
        drain = len(controllers) > 1  # a reloading API answers late: out of haproxy first
        for node in controllers:
            if drain:
                _haproxy(plan, f"{node}_{recipe.service}_repin_drain", "drain", "drain", node,
                         f"{node} out of every backend")
            plan.add(f"{node}_{recipe.service}_repin", "restart", "leapfrog.call",
                     _apply(sls, reload, node), node=node, where=node,
                     changes=f"{', '.join(recipe.repin)} reloaded (HUP or restart): "
                             "RPC versions re-pinned to the target's")
            if drain:
                _ready(plan, f"{node}_{recipe.service}_repin_ready", node)


def _after(plan, recipes, ctx, ffu):
    _db_stages(plan, recipes, ctx, "finish")
    records = [
        lambda: _verify(plan),
        *(lambda check=check: plan.add(check.name, "verify", "leapfrog.call",
                                       _call(check.function, {}, check.expect,
                                             **FIRST_CONTROLLER),
                                       where="first controller", changes=check.changes)
          for recipe in recipes for check in recipe.checks),
        lambda: plan.add("revisions_after", "revisions", "leapfrog.revisions",
                         {"release": ctx.to}, where="first controller",
                         changes="nothing: DB revisions recorded"),
        lambda: plan.add("nodes_after", "inventory", "leapfrog.call",
                         _call("leapfrog.node_info", role="controller"), where="controllers",
                         changes="nothing: each controller's OS and release recorded")]
    if ffu:
        records.append(lambda: plan.add(
            "computes_after", "record", "leapfrog.call",
            _call("nova_service.list", **FIRST_CONTROLLER), where="first controller",
            changes="nothing: the compute services recorded"))
    plan.side_by_side(*records)


def control_plane(facts):
    """orch.upgrade_control_plane: one rolling hop, or a fast-forward through the path."""
    config, decision = facts["config"], facts["decision"]
    path = [decision["hops"][0][0]] + [new for _, new in decision["hops"]]
    to, ffu = path[-1], decision["strategy"] == "fast_forward"
    recipes = leapfrog_recipes.recipes(config.get("services"))
    ctx = leapfrog_recipes.Context(path=path, to=to, ffu=ffu)
    plan = leapfrog_steps.Plan(
        "orch.upgrade_control_plane", facts["cluster"], to,
        f"Upgrade the control plane of {facts['cluster']}: {' -> '.join(path)} "
        f"({decision['strategy']})", why=decision["why"])
    _before(plan, facts["run"], to, decision["strategy"], config, recipes)
    deployed, sls = _deployed(to, ffu), config["vms"]["redeploy_sls"]
    (_fast_forward if ffu else _rolling)(plan, facts, to, recipes, ctx, deployed, sls)
    _repin(plan, recipes, facts["controllers"], sls,
           deployed["ffu_off"] if ffu else deployed["running"])
    _after(plan, recipes, ctx, ffu)
    return plan.check()


# -------------------------------------------------------------------------- data plane
def data_plane(facts):
    """orch.upgrade_data_plane: canary hosts, approval, the rest in batches, unpin."""
    to, hosts = facts["to"], facts["hosts"]
    switch = {"release": to, **facts.get("switch", {})}
    plan = leapfrog_steps.Plan(
        "orch.upgrade_data_plane", facts["cluster"], to,
        f"Upgrade the data plane of {facts['cluster']} to {to}",
        why=f"canary: {', '.join(hosts['canary']) or 'none'}; then, after approval, "
            f"{len(hosts['batches'])} batch(es), {hosts['pause']} s apart",
        expiry=facts.get("expiry"))
    plan.add("control_plane_at_target", "precheck", "leapfrog.call",
             _call("nova_manage.versions", {"release": to}, {"at_head": True},
                   **FIRST_CONTROLLER),
             where="first controller", changes=f"nothing: nova's DBs must be at {to}'s heads")
    plan.add("prestage", "prestage", "leapfrog.prestage_computes", {"release": to},
             where="every compute", changes=f"{to}'s code installed ahead, nothing restarted")
    plan.add("prestaged", "record", "leapfrog.call",
             _call("nova_manage.revisions", {"release": to}, role="compute"),
             where="every compute", changes="nothing: the new code runs there")
    plan.add("changes", "record", "leapfrog.compute_changes", {"release": to},
             where="every compute", changes="nothing: what each switch would change")
    changes = (f"disabled, emptied ({switch.get('servers', 'data_plane:servers')}), "
               f"redeployed at {to}, enabled (no orchestration brings it back)")
    for host in hosts["canary"]:
        plan.add(f"{host}_switch", "switch_compute", "leapfrog.switch_compute",
                 dict(switch, host=host), node=host, where=host, changes=changes,
                 impact="no new servers on it meanwhile", irreversible=True)
    plan.add("approval", "approval", changes="nothing: waits for salt-run leapfrog.approve "
             "after the canary")
    for index, batch in enumerate(hosts["batches"], 1):
        if len(batch) == 1:
            name, func, args = batch[0], "leapfrog.switch_compute", dict(switch, host=batch[0])
        else:
            name, func, args = (f"batch{index:02d}", "leapfrog.switch_computes",
                                dict(switch, hosts=batch))
        plan.add(f"{name}_switch", "switch_compute", func, args,
                 node=batch[0] if len(batch) == 1 else None, where=", ".join(batch),
                 changes=changes, impact=f"{len(batch)} host(s) take no new servers meanwhile",
                 irreversible=True)
        if hosts["pause"] and index < len(hosts["batches"]):
            plan.add(f"pause_after_{name}", "pause", "leapfrog.pause",
                     {"seconds": hosts["pause"]}, changes="nothing: a pause")
    plan.add("unpin_compute_rpc", "unpin", "leapfrog.unpin_compute_rpc", {"release": to},
             where="controllers", changes="nova restarted without the compute RPC cap, one "
             "controller at a time (skipped while a compute is older)")
    _verify(plan)
    return plan.check()


# ---------------------------------------------------------------------------- rollback
def _verify_backups(plan, sources, kind, module, what):
    """One branch per backup of ``sources["<kind>_backups"]``: ``<module>.verify`` on the
    minion that holds it."""
    return [lambda mid=mid, backup=backup: plan.add(
        f"verify_{kind}_backup_{mid}", "verify_backup", "leapfrog.call",
        _call(f"{module}.verify", {"backup_id": backup}, {"valid": True}, **_on(mid)),
        node=mid, where=mid, changes=f"nothing: the {what} backup verified")
        for mid, backup in sorted(sources.get(f"{kind}_backups", {}).items())]


def _restore_galera(plan, nodes, mid, backup):
    """The whole Galera cluster back to ``backup``: every node stopped (the others side by
    side, then ``mid``, which holds the backup), the cluster bootstrapped on ``mid`` from it
    (its checksums compared with the backup's). Returns the other nodes' joins (a full SST
    each), branches for the rollback to run side by side with the controllers' start: the
    bootstrapped node serves the cloud alone meanwhile (a joiner opens its port once its
    SST is in; a mariabackup SST does not block the donor's writes)."""
    others = [node for node in nodes if node != mid]

    def stop(node):
        plan.add(f"{node}_db_stop", "stop_db_node", "leapfrog.call",
                 _call("galera.stop", {"force": True}, **_on(node)), node=node, where=node,
                 changes=f"{node}'s Galera server stopped")

    plan.side_by_side(*[lambda node=node: stop(node) for node in others])
    stop(mid)
    plan.add(f"restore_dbs_{mid}", "restore_db", "leapfrog.call",
             _call("galera_backup.restore", {"backup_id": backup}, {"matches_backup": True},
                   **_on(mid)),
             node=mid, where=mid,
             changes=f"the Galera cluster bootstrapped on {mid} from {backup}")
    return [lambda node=node: plan.add(  # SSTs queue for a donor by themselves
        f"{node}_db_join", "join_db_node", "leapfrog.call",
        _call("galera.join", {"fresh": True}, **_on(node)), node=node, where=node,
        changes=f"{node} joins the restored cluster by a full SST (its old data removed)")
        for node in others]


def rollback(facts):
    """orch.rollback_control_plane: back to where an upgrade run started, from its
    backups (each verified before anything stops)."""
    config, sources, controllers = facts["config"], facts["sources"], facts["controllers"]
    nodes, compute_sls = config["vms"]["nodes"], config["data_plane"]["redeploy_sls"]
    plan = leapfrog_steps.Plan(
        "orch.rollback_control_plane", facts["cluster"], sources["upgrade_run"],
        f"Roll back run {sources['upgrade_run']} of {facts['cluster']}",
        why=", ".join(f"{label} {found}" for label, found in (
            ("DB backups", sources["db_backups"]),
            ("Galera backups", sources.get("galera_backups")),
            ("disks", sources["disks"])) if found),
        probe=False)  # its report: what was restored, each step's time
    plan.side_by_side(*_verify_backups(plan, sources, "db", "mysql_backup", "DB"), *[
        lambda node=node, backup=backup: plan.add(
            f"{node}_verify_disk_backup", "verify_backup", "leapfrog.call",
            _call("vm_backup.verify", {"backup": backup}, **_on(nodes[node]["hypervisor"])),
            node=node, where=nodes[node]["hypervisor"],
            changes="nothing: the disk backup verified")
        for node, backup in sorted(sources["disks"].items())],
        *_verify_backups(plan, sources, "ovsdb", "ovsdb_backup", "OVSDB"),
        *_verify_backups(plan, sources, "galera", "galera_backup", "Galera"))

    def stop(node):  # every controller at once: the API goes down in a rollback anyway
        vm = nodes[node]
        _drain(plan, node, "API down from the last one", on_timeout="maint", allow_last=True)
        plan.add(f"{node}_stop", "stop_vm", "leapfrog.call",
                 _call("vm_backup.stop", {"domain": vm["domain"]}, **_on(vm["hypervisor"])),
                 node=node, where=vm["hypervisor"], changes=f"{node}'s VM stopped")

    plan.side_by_side(*[lambda node=node: stop(node) for node in controllers])
    for host, release in sorted(sources["computes"].items()):
        plan.add(f"{host}_stop", "stop_compute", "leapfrog.call",
                 _apply(compute_sls, {"leapfrog": {"release": release,
                                                   "services": "stopped"}}, host),
                 node=host, where=host, changes=f"nova-compute kept stopped at {release}")
    for mid, backup in sorted(sources["db_backups"].items()):
        plan.add(f"restore_dbs_{mid}", "restore_db", "leapfrog.call",
                 _call("mysql_backup.restore", {"backup_id": backup, "force": True,
                                                "clients_timeout": ROLLBACK_CLIENTS_GRACE,
                                                "kill_clients": True},
                       {"matches_manifest": True}, **_on(mid)),
                 node=mid, where=mid, changes=f"every database restored from {backup}")
    joins = [join for mid, backup in sorted(sources.get("galera_backups", {}).items())
             for join in _restore_galera(plan, sources["galera_nodes"], mid, backup)]
    for mid, backup in sorted(sources.get("ovsdb_backups", {}).items()):
        plan.add(f"restore_ovsdb_{mid}", "restore_db", "leapfrog.call",
                 _call("ovsdb_backup.restore", {"backup_id": backup},
                       {"matches_manifest": True}, **_on(mid)),
                 node=mid, where=mid, changes=f"OVN's NB and SB restored from {backup}")
    def back(node):
        """Once every database is restored the services start against it: each controller
        back in haproxy while the other comes up and the DB nodes join."""
        vm = nodes[node]
        if node in sources["disks"]:
            if node in sources["keys"]:
                plan.add(f"{node}_restore_key", "restore_key", "leapfrog.restore_node_key",
                         {"node": node, "backup": sources["disks"][node]}, node=node,
                         where="master", changes=f"{node}'s old minion key accepted again")
            plan.add(f"{node}_restore_disk", "restore_disk", "leapfrog.call",
                     _call("vm_backup.restore", {"domain": vm["domain"],
                                                 "backup": sources["disks"][node],
                                                 "stop": True, "start": True},
                           **_on(vm["hypervisor"])),
                     node=node, where=vm["hypervisor"],
                     changes=f"{node}'s disk restored from {sources['disks'][node]}, started")
        else:
            plan.add(f"{node}_start", "start_vm", "leapfrog.call",
                     _call("vm_backup.start", {"domain": vm["domain"]},
                           **_on(vm["hypervisor"])),
                     node=node, where=vm["hypervisor"], changes=f"{node}'s VM started")
        _ready(plan, f"{node}_ready", node, timeout=300)

    plan.side_by_side(*joins, *[lambda node=node: back(node) for node in controllers])
    for host, release in sorted(sources["computes"].items()):
        plan.add(f"{host}_restart", "start_compute", "leapfrog.call",
                 _apply(compute_sls, {"leapfrog": {"release": release,
                                                   "services": "running"}}, host),
                 node=host, where=host, changes=f"nova-compute started at {release}")
    _verify(plan)
    return plan.check()


# --------------------------------------------------------------------------- rehearsal
def _rehearse_services(plan, facts, suffix):
    """The other services' DB stages (``openstack_db``: expand, migrate, contract, sync,
    online) with the path's target code on their clones, in the order a run takes them,
    side by side per service (each service its own database)."""
    path = [str(r) for r in facts["config"]["releases"]["path"]]
    ctx = leapfrog_recipes.Context(path=path, to=path[-1], ffu=True)
    recipes = [r for r in leapfrog_recipes.recipes(facts["config"].get("services"))
               if any(s.function == "openstack_db.sync" for s in r.stages)]

    def stages(recipe):
        for stage in recipe.phase("sync") + recipe.phase("finish"):
            if stage.function != "openstack_db.sync":  # a database's stages only
                continue
            plan.add(f"rehearse_{stage.name}", "db_sync", "leapfrog.call",
                     _call(stage.function, {**stage.kwargs(ctx), "suffix": suffix},
                           **FIRST_CONTROLLER),
                     node=recipe.service, where="first controller",
                     changes=f"the clone: {stage.changes.split(' (')[0]}")

    plan.side_by_side(*[lambda recipe=recipe: stages(recipe) for recipe in recipes])


def _throwaway_pillar(config, to, suffix):
    """The redeploy SLS's pillar on the throwaway controller: the target's services,
    running, on the clones (``db_suffix``), on their own vhost, listening on its address;
    nova with the FFU workaround (the clones list computes of older releases)."""
    rehearsal = config["rehearsal"]
    return {"leapfrog": {"release": to, "services": "running", "ffu": True,
                         "db_suffix": suffix, "transport_vhost": rehearsal["vhost"],
                         "address": rehearsal["address"]}}


def _throwaway_create(plan, facts):
    """The throwaway controller's VM (``leapfrog.throwaway_node``): made while the
    databases are cloned and migrated."""
    vm = facts["throwaway"]
    plan.add(f"{vm['node']}_create", "throwaway", "leapfrog.throwaway_node",
             {"run": facts["run"]}, node=vm["node"], where=vm["hypervisor"],
             changes=f"{vm['node']}: a new VM like {vm['like']} from {vm['image']}, its key "
                     "pre-accepted")


def _throwaway_serve(plan, facts, suffix):
    """The clones served by the throwaway controller and checked as an operator would,
    then the controller removed."""
    config, path, vm = facts["config"], facts["config"]["releases"]["path"], facts["throwaway"]
    rehearsal, sls = config["rehearsal"], config["vms"]["redeploy_sls"]
    node, address = vm["node"], rehearsal["address"]
    plan.add("rehome_catalog", "rehome", "leapfrog.call",
             _call("clone_rehome.catalog", {"address": address, "vip": config["haproxy"]["vip"],
                                            "suffix": suffix}, role="database"),
             where="database", changes=f"the keystone clone's endpoints moved from the VIP to "
             f"{address}")
    plan.add(f"{node}_deploy", "redeploy", "leapfrog.call",
             _apply(sls, _throwaway_pillar(config, path[-1], suffix), node),
             node=node, where=node, changes=f"{sls} applied at {path[-1]}: its services on "
             f"the {suffix} clones and vhost {rehearsal['vhost']}, running")
    plan.add(f"{node}_verify", "verify", "leapfrog.call",
             _call("openstack_verify.wait", {"timeout": 60, "address": address,
                                             "liveness": False}, **FIRST_CONTROLLER),
             node=node, where=address, changes="nothing: the operator's checks on the clones' "
             "data, served by the throwaway controller")
    _throwaway_provision(plan, facts, suffix)
    plan.add(f"{node}_discard", "discard", "leapfrog.discard_node", {"run": facts["run"]},
             node=node, where=vm["hypervisor"],
             changes=f"{node}'s domain, disk and key removed")


def _throwaway_provision(plan, facts, suffix):
    """``rehearsal:provision``: a server (on the throwaway's own compute, mapped into the
    cloned cell first), a network and a volume created and deleted on the clones."""
    config, node = facts["config"], facts["throwaway"]["node"]
    rehearsal = config["rehearsal"]
    wanted = rehearsal["provision"]
    if not wanted["kinds"]:
        return
    if "server" in wanted["kinds"]:
        plan.add(f"{node}_map_compute", "discover", "leapfrog.call",
                 _call("nova_manage.discover_hosts",
                       {"release": config["releases"]["path"][-1], "suffix": suffix,
                        "host": node, "timeout": 120}, **FIRST_CONTROLLER),
                 node=node, where="first controller", changes=f"{node}'s nova-compute mapped "
                 "into the cloned cell")
    plan.add(f"{node}_provision", "provision", "leapfrog.call",
             _call("openstack_verify.provision",
                   {"kinds": wanted["kinds"], "image": wanted["image"],
                    "flavor": wanted["flavor"], "network": wanted["network"], "host": node,
                    "address": rehearsal["address"], "timeout": 120}, **FIRST_CONTROLLER),
             node=node, where=rehearsal["address"], changes=f"{', '.join(wanted['kinds'])} "
             "created and deleted on the clones")


def _cleanups(plan, facts, suffix):
    """On a failure of any step: the throwaway controller discarded (it may be made while
    the snapshot is taken), the clones dropped; a re-run redoes what they undid."""
    vm = facts.get("throwaway")
    if vm:
        plan.on_failure(f"{vm['node']}_discard_after_failure", "discard",
                        "leapfrog.discard_node", {"run": facts["run"]},
                        of=[s.name for s in plan.steps
                            if s.name not in (f"{vm['node']}_discard", "drop_clones")],
                        node=vm["node"], where=vm["hypervisor"],
                        changes=f"{vm['node']} removed")
    plan.on_failure("drop_clones_after_failure", "drop_clones", "leapfrog.call",
                    _call("mysql_backup.drop_clone", {"suffix": suffix}, role="database"),
                    of=[s.name for s in plan.steps if s.name not in ("snapshot", "drop_clones")],
                    where="database", changes="the clones dropped")


def _rehearse_migrations(plan, facts, suffix, vhost=None):
    """Production's snapshot, its clones, isolated (their cells on each other and, with
    ``vhost``, on the throwaway controller's vhost), migrated through the path and checked
    at the target's heads."""
    config = facts["config"]
    path, databases = config["releases"]["path"], config["database"]["databases"]
    plan.add("snapshot", "snapshot", "leapfrog.call",
             _call("mysql_backup.schema", role="database"), where="database",
             changes="nothing: production's structure and migration versions recorded")
    plan.add("clone", "clone", "leapfrog.call",
             _call("mysql_backup.clone", {"suffix": suffix, "force": True}, role="database"),
             where="database", changes=f"{len(databases)} clones <db>{suffix}, replaced if "
             "they exist")
    isolate = {"suffix": suffix, **({"transport_vhost": vhost} if vhost else {})}
    plan.add("isolate", "isolate", "leapfrog.call",
             _call("nova_manage.isolate_cells", isolate, **FIRST_CONTROLLER),
             where="first controller", changes="the cloned nova_api's cell mappings point at "
             "the clones" + (f" and vhost {vhost}" if vhost else ""))
    plan.add("staged_sync", "db_sync", "leapfrog.call",
             _call("nova_manage.staged_sync", {"suffix": suffix, "path": path},
                   **FIRST_CONTROLLER),
             node="nova", where="first controller", changes="the clones migrated through "
             "every release of the path")
    _rehearse_services(plan, facts, suffix)
    plan.add("verify", "check", "leapfrog.call",
             _call("nova_manage.versions", {"suffix": suffix, "release": path[-1]},
                   {"at_head": True}, **FIRST_CONTROLLER),
             where="first controller", changes=f"nothing: the clones at {path[-1]}'s heads")


def rehearsal(facts):
    """orch.test_upgrade: the path's staged sync of nova and the other services' DB stages
    on clones of production; with a throwaway controller (pillar ``rehearsal:node``, unless
    the run says ``throwaway: false``) the clones served at the target by a VM of their own
    and checked through its APIs; production proved unchanged, the clones dropped and the
    VM removed (also after a failure)."""
    config, suffix, vm = facts["config"], facts["suffix"], facts.get("throwaway")
    path = config["releases"]["path"]
    plan = leapfrog_steps.Plan(
        "orch.test_upgrade", facts["cluster"], path[-1],
        f"Rehearse {' -> '.join(path)} of {facts['cluster']} on {suffix} clones"
        + (f", served by {vm['node']}" if vm else ""),
        why="production's databases are copied; only the copies are migrated",
        probe=False, schedules=False)  # its report: each step's and each check's time
    if vm:
        vhost = config["rehearsal"]["vhost"]
        plan.side_by_side(lambda: _rehearse_migrations(plan, facts, suffix, vhost),
                          lambda: _throwaway_create(plan, facts))
        _throwaway_serve(plan, facts, suffix)
    else:
        _rehearse_migrations(plan, facts, suffix)
    plan.add("production_unchanged", "compare", "leapfrog.unchanged_since",
             {"step": "snapshot", "run": facts["run"]}, where="database",
             changes="nothing: production compared with the snapshot")
    plan.add("drop_clones", "drop_clones", "leapfrog.call",
             _call("mysql_backup.drop_clone", {"suffix": suffix}, role="database"),
             where="database", changes="the clones dropped")
    _cleanups(plan, facts, suffix)
    return plan.check()


BUILDERS = {"orch.upgrade_control_plane": control_plane,
            "orch.upgrade_data_plane": data_plane,
            "orch.rollback_control_plane": rollback,
            "orch.test_upgrade": rehearsal}
