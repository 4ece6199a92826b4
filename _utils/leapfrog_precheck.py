"""The pre-check's checks of the cloud itself (the runner's ``precheck`` adds the pillar,
the inventory and the strategy): nova's databases at the current release's heads,
``nova-status upgrade check``, the databases' own pre-check, every haproxy server UP, each
Galera node's state (``roles:galera``), the
services whose target code has offline migrations (refused for a rolling hop), and the
controllers a strategy needs. Every check runs; each problem is collected, none stops
the others.
"""
import time

import leapfrog_minions
import leapfrog_recipes
import leapfrog_schema

# seconds before a failed ``<service>-status upgrade check`` is asked again
RECHECK_SECONDS = 15


def _collect(problems, what, func):
    """Run one pre-check; its exception becomes a problem line instead of stopping."""
    try:
        return func()
    except Exception as exc:  # pylint: disable=broad-except
        problems.append(f"{what}: {exc}")
        return None


def _haproxy(opts, config, problems):
    answers = leapfrog_minions.call(opts, config["roles"]["haproxy"], "haproxy_admin.servers")
    for mid, records in answers.items():
        for rec in records:
            if not str(rec.get("status", "")).startswith(("UP", "no check")):
                problems.append(f"haproxy on {mid}: {rec['backend']}/{rec['server']} is "
                                f"{rec.get('status')}; bring it UP (or fix it) before the upgrade")
        _backup_node_standby(config, mid, records, problems)


def _backup_node_standby(config, mid, records, problems):
    """A physical backup's node must be a standby (``backup``) server of the DB frontend:
    the node taking the writes would not drain, and the backup's lock there would stall
    the cloud's writes."""
    if leapfrog_schema.db_backup(config) != "physical":
        return
    galera = config["database"]["galera"]
    frontend, server = galera["frontend"], galera["server"] or galera["backup_node"]
    found = [r for r in records if r.get("backend") == frontend and r.get("server") == server]
    if not found:
        problems.append(f"haproxy on {mid}: the DB frontend {frontend} has no server {server} "
                        f"(the backup's node {galera['backup_node']}); set database:galera:"
                        "frontend and database:galera:server to its haproxy names")
    elif not found[0].get("bck"):
        problems.append(f"haproxy on {mid}: {frontend}/{server}, the backup's node, is the DB "
                        "frontend's active server (it takes the writes); back up from a "
                        "standby (a server marked backup): set database:galera:backup_node "
                        "and database:galera:server to one")


def _databases(opts, config, problems, notes):
    answers = leapfrog_minions.call(
        opts, config["roles"]["database"], "mysql_backup.precheck",
        {"purge": leapfrog_recipes.purge_advice(config.get("services"))})
    for mid, out in answers.items():
        problems.extend(f"database on {mid}: {p}" for p in out.get("problems") or [])
        notes.extend(f"database on {mid}: {n}" for n in out.get("notes") or [])


def _galera(opts, config, problems):
    """Every Galera node: running, Synced, ready, not left desynced, room for a backup;
    all of them in one cluster (the same state UUID)."""
    target = config["roles"].get("galera")
    if not target:
        return
    answers, failures = leapfrog_minions.call_each(opts, target, "galera.precheck")
    problems.extend(f"galera on {mid}: {problem}" for mid, problem in sorted(failures.items()))
    uuids = {}
    for mid, out in sorted(answers.items()):
        problems.extend(f"galera on {mid}: {p}" for p in out.get("problems") or [])
        if (out.get("status") or {}).get("uuid"):
            uuids.setdefault(out["status"]["uuid"], []).append(mid)
    node = config["database"]["galera"].get("backup_node")
    if leapfrog_schema.db_backup(config) == "physical" and node not in answers \
            and node not in failures:
        problems.append(f"database:galera:backup_node: {node} is not a node of roles:galera "
                        f"({target}: {', '.join(sorted(answers)) or 'none'}); name one of them")
    if len(uuids) > 1:
        problems.append(
            "galera: the nodes are in different clusters (" + "; ".join(
                f"{', '.join(mids)}: {uuid}" for uuid, mids in sorted(uuids.items()))
            + "): roles:galera must target one cluster's nodes")


def _release(opts, config, control, problems):
    first = leapfrog_minions.first(opts, config, "controller")
    out = leapfrog_minions.call(opts, f"L@{first}", "nova_manage.versions",
                                {"release": control})[first]
    if not out.get("at_head"):
        problems.append(f"nova databases are not at {control}'s heads ({out.get('revisions')});"
                        f" set releases:current (or from=) to the release the cloud runs")


def _nova_status(opts, config, control, problems, notes):
    first = leapfrog_minions.first(opts, config, "controller")
    out = leapfrog_minions.call(opts, f"L@{first}", "nova_manage.upgrade_check",
                                {"release": control})[first]
    problems.extend(f"nova-status upgrade check: {name} failed" for name in out.get("failed") or [])
    notes.extend(f"nova-status upgrade check: {name} warns" for name in out.get("warnings") or [])


def _offline(opts, config, target, strategy, problems, notes):
    """Services whose target code has migrations only stopped servers survive (neutron's
    contract branch): a rolling hop cannot run them."""
    checked = [r for r in leapfrog_recipes.recipes(config["services"]) if r.offline_check]
    first = leapfrog_minions.first(opts, config, "controller") if checked else None
    for recipe in checked:
        out = leapfrog_minions.call(opts, f"L@{first}", "openstack_db.offline_migrations",
                                    {"service": recipe.service, "release": target})[first]
        if not out.get("pending"):
            continue
        line = (f"{recipe.service}: {target}'s code has migrations that need every "
                f"{recipe.service} server stopped (offline migrations pending)")
        if strategy == "rolling":
            problems.append(f"{line}: a rolling hop cannot run them with servers up; use "
                            "strategy=fast_forward (the API is closed meanwhile)")
        else:
            notes.append(f"{line}: the fast-forward runs them with the API closed")


def _service_status(opts, config, target, problems, notes):
    """The listed services' own ``<service>-status upgrade check`` with the target's code
    (neutron, cinder), on the first controller: failures stop the run, warnings are notes."""
    checked = [r for r in leapfrog_recipes.recipes(config["services"]) if r.status_check]
    first = leapfrog_minions.first(opts, config, "controller") if checked else None
    for recipe in checked:
        def check(service=recipe.service):
            return leapfrog_minions.call(opts, f"L@{first}", "openstack_db.upgrade_check",
                                         {"service": service, "release": target})[first]
        out = check()
        tool = f"{recipe.service}-status upgrade check ({target})"
        if out.get("failed"):
            # its checks read a live cloud: cinder's "Service UUIDs" fails while a volume
            # is still being scheduled (no service yet). Asked again once: only a failure
            # seen twice is a problem
            time.sleep(RECHECK_SECONDS)
            first_failed, out = out["failed"], check()
            notes.extend(f"{tool}: {name} failed once, passed when asked again "
                         f"{RECHECK_SECONDS} s later (a transient state)"
                         for name in first_failed if name not in (out.get("failed") or []))
        if out.get("result") == "Skipped":
            notes.append(f"{tool}: not run: {out.get('comment')}")
        problems.extend(f"{tool}: {name} failed" for name in out.get("failed") or [])
        notes.extend(f"{tool}: {name} warns" for name in out.get("warnings") or [])


def collect(opts, config, control, strategy, problems, notes, target=None):
    """Run every check, appending to ``problems`` (what must be fixed) and ``notes``;
    ``target``: the release the run goes to (default ``releases:target``)."""
    target = str(target or config["releases"]["target"])
    _collect(problems, "release check", lambda: _release(opts, config, control, problems))
    _collect(problems, "nova-status", lambda: _nova_status(opts, config, control, problems,
                                                           notes))
    _collect(problems, "database pre-check", lambda: _databases(opts, config, problems, notes))
    _collect(problems, "haproxy", lambda: _haproxy(opts, config, problems))
    _collect(problems, "galera", lambda: _galera(opts, config, problems))
    _collect(problems, "offline migrations",
             lambda: _offline(opts, config, target, strategy, problems, notes))
    _collect(problems, "services' upgrade checks",
             lambda: _service_status(opts, config, target, problems, notes))
    controllers = leapfrog_minions.expected(opts, config["roles"]["controller"])
    if strategy == "rolling" and len(controllers) < 2:
        problems.append(
            f"a rolling upgrade needs at least two controllers behind haproxy (one serves, "
            f"and answers the others' token requests, while the other is upgraded); found "
            f"{', '.join(controllers) or 'none'}: use strategy=fast_forward (the API is "
            "closed meanwhile)")
    no_vm = [n for n in controllers if n not in config["vms"]["nodes"]]
    if no_vm:
        problems.append(f"controller(s) {', '.join(no_vm)} have no VM in vms:nodes; add "
                        "{hypervisor, domain} for each")
