"""The facts one run's plan is built from, gathered once (``leapfrog.run_plan`` then a
builder of ``leapfrog_builders``): the control plane's decision and the computes' releases
(nova's service versions, else the pillar), the controllers to roll, a data plane's canary
and batches, a rollback's sources, a rehearsal's clone suffix. Reads only: nothing here
changes the cloud.
"""
import logging

import leapfrog_errors
import leapfrog_history
import leapfrog_journal
import leapfrog_minions
import leapfrog_plan
import leapfrog_schema
import leapfrog_throwaway

log = logging.getLogger(__name__)


def compute_releases(opts, config, computes, timeout):
    """Compute -> release: from ``computes`` (a release, a mapping, or None = ask the
    compute role's minions through ``leapfrog.node_info``)."""
    if isinstance(computes, (str, int, float)):  # salt-run parses computes=2024.1 as a float
        return {leapfrog_journal.check_name("compute", mid): str(computes)
                for mid in leapfrog_minions.expected(opts, config["roles"]["compute"])}
    if isinstance(computes, dict):
        return {str(k): str(v) for k, v in computes.items()}
    answers = leapfrog_minions.ask_node_info(opts, config["roles"]["compute"], timeout)
    found, problems = {}, []
    for mid, info in sorted(answers.items()):
        release = info.get("release") if isinstance(info, dict) else None
        if isinstance(release, str):
            found[leapfrog_journal.check_name("compute", mid)] = release
        else:
            problems.append(f"compute {mid}: release not known from its pillar ({release!r})")
    if problems:
        raise leapfrog_errors.LeapfrogError("; ".join(problems))
    return found


def cloud_releases(opts, config, timeout):
    """``nova_service.releases`` on the first controller (the releases nova records for
    its conductors and computes), or {} when it cannot be read there (no database
    settings, no nova yet): the pillar's declared releases are used then."""
    try:
        first = leapfrog_minions.first(opts, config, "controller")
        out = leapfrog_minions.call(opts, f"L@{first}", "nova_service.releases",
                                    timeout=max(timeout, 30))[first]
    except leapfrog_errors.LeapfrogError as exc:
        log.info("leapfrog: releases from the pillar: nova's service versions unread (%s)", exc)
        return {}
    return out if isinstance(out, dict) and out.get("computes") else {}


def decide(opts, config, strategy=None, to=None, control=None, computes=None, timeout=10):
    """A control-plane run's decision (``leapfrog_plan.strategy``), the computes' releases
    and where they were read (nova's service versions, else the pillar)."""
    releases = config["releases"]
    facts, source = {}, "pillar"
    if computes is None:
        facts = cloud_releases(opts, config, timeout)
        source = "nova's service versions" if facts else source
    found = facts.get("computes") or compute_releases(opts, config, computes, timeout)
    control = control or facts.get("control") or releases["current"]
    decision = leapfrog_plan.strategy(
        releases["path"], strategy or releases["strategy"], str(control), found,
        to=str(to or releases["target"]))
    return decision, found, source


def data_plane_hosts(opts, config, canary=None, batch=None):
    """{canary, batches, pause} of a data-plane run: the canary subset (``canary`` or
    ``data_plane:canary``: a list, glob or compound target) and the rest of the compute
    role in batches of ``batch`` (``data_plane:batch``: a count or a percentage)."""
    plane = config["data_plane"]
    computes = leapfrog_minions.expected(opts, config["roles"]["compute"])
    if not computes:
        raise leapfrog_errors.LeapfrogError(
            f"role compute: {config['roles']['compute']!r} matches no minion")
    wanted = canary if canary is not None else plane["canary"]
    if isinstance(wanted, (list, tuple)):
        wanted = "L@" + ",".join(wanted)
    picked = leapfrog_minions.expected(opts, wanted) if wanted else []
    first = [h for h in computes if h in picked]
    rest = [h for h in computes if h not in first]
    for host in computes:
        leapfrog_journal.check_name("compute", host)
    size = batch if batch is not None else plane["batch"]
    problem = leapfrog_schema.batch_problem(size)
    if problem:
        raise leapfrog_errors.LeapfrogError(f"batch: {problem}")
    if isinstance(size, str) and size.endswith("%"):
        size = max(1, -(-len(rest) * int(size[:-1]) // 100))
    size = max(1, int(size))
    batches = [rest[i:i + size] for i in range(0, len(rest), size)]
    return {"canary": first, "batches": batches, "pause": plane["pause"]}


def plan_facts(opts, root, orch, name, config, args, run):
    """The facts of one run of ``orch``, gathered once (see ``leapfrog_builders``); ``root``
    is the journals' folder (a rollback reads the upgrade run's)."""
    facts = {"cluster": name, "run": run, "config": config}
    if orch == "orch.upgrade_control_plane":
        decision, found, _ = decide(opts, config, args.get("strategy"), args.get("to"))
        if not decision["hops"]:
            raise leapfrog_errors.LeapfrogError(
                f"nothing to do: the control plane already runs {decision['control']}")
        if decision["strategy"] == "rolling" and len(decision["hops"]) != 1:
            raise leapfrog_errors.LeapfrogError(
                "orch.upgrade_control_plane runs one rolling hop per run; the plan asks for "
                f"{len(decision['hops'])} hops: name the hop with to=<release>, or choose "
                "strategy=fast_forward")
        facts.update(decision=decision, computes=found,
                     controllers=leapfrog_minions.rolled_controllers(opts, config))
    elif orch == "orch.upgrade_data_plane":
        facts.update(to=str(args.get("to") or config["releases"]["path"][-1]),
                     hosts=data_plane_hosts(opts, config, args.get("canary"), args.get("batch")),
                     switch={k: args[k] for k in ("servers", "timeout") if args.get(k)},
                     expiry=args.get("expiry"))
    elif orch == "orch.test_upgrade":
        suffix = str(args.get("suffix", "_upgrade"))
        problem = leapfrog_schema.clone_suffix(suffix, config["database"]["databases"])
        if problem:
            raise leapfrog_errors.LeapfrogError(problem)
        facts.update(suffix=suffix, throwaway=throwaway(config, args.get("throwaway")))
    elif orch == "orch.rollback_control_plane":
        sources = leapfrog_history.rollback_sources(
            opts, root, name, config, args.get("upgrade_run"),
            args.get("force", False))
        facts.update(sources=sources, controllers=leapfrog_minions.rolled_controllers(opts, config))
    return facts


def throwaway(config, wanted=None):
    """The rehearsal's throwaway controller (``leapfrog_throwaway.target``) when pillar
    ``rehearsal:node`` names one and the run does not say ``throwaway: false``; else None.
    ``throwaway: true`` without ``rehearsal:node`` is refused."""
    if wanted not in (None, True, False):
        raise leapfrog_errors.LeapfrogError(
            f"throwaway: expected true or false, got {wanted!r}")
    if wanted is False:
        return None
    if not config["rehearsal"]["node"] and wanted is None:
        return None
    return leapfrog_throwaway.target(config)


def inventory(opts, config, timeout):
    """The cluster's nodes by role, each asked through its role's compound target:
    ({role: {target, nodes, not_responding}}, [problem]); a role that matches no minion or
    a node that does not answer is a problem."""
    roles, problems = {}, []
    for role, target in sorted(leapfrog_schema.roles(config).items()):
        expected = leapfrog_minions.expected(opts, target)
        answers = leapfrog_minions.ask_node_info(opts, target, timeout)
        nodes = {mid: info for mid, info in sorted(answers.items()) if isinstance(info, dict)}
        silent = sorted(set(expected) - set(nodes))
        roles[role] = {"target": target, "nodes": nodes, "not_responding": silent}
        if not expected and not nodes:
            problems.append(f"role {role}: target {target!r} matches no minion")
        for mid in silent:
            problems.append(f"role {role}: minion {mid} did not answer within {timeout} s")
    return roles, problems
