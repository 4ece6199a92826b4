"""Which plan a call gets: the one a run stored at its begin (a resume, ``leapfrog.plan
run=``), or one built by ``leapfrog_builders`` from facts gathered once
(``leapfrog_facts``), with the newest rehearsal's times as its estimates
(``leapfrog_estimates``). Reads only; the run's begin stores what ``for_run`` returns.
"""
import leapfrog_builders
import leapfrog_errors
import leapfrog_estimates
import leapfrog_facts
import leapfrog_journal
import leapfrog_minions
import leapfrog_steps


def _kept(data):
    """The plan a run's journal ``data`` stored at its begin, as a Plan (None: none kept)."""
    stored = ((data or {}).get("meta") or {}).get("plan")
    if isinstance(stored, dict) and "steps" in stored:
        return leapfrog_steps.Plan.from_dict(stored)
    return None


def stored_plan(master, name, run):
    """The plan run ``run`` stored at its begin, as a Plan (None: no such run or no plan)."""
    return _kept(master.journal(name, run).read())


def control_plane(master, name, config, strategy=None, to=None, control=None, computes=None,
                  timeout=10, run=None):
    """The control plane's plan (``leapfrog.plan``): ``run``'s stored one when it has one,
    else the decision (raises ``leapfrog_plan.Impossible``) and the plan built from it."""
    kept = stored_plan(master, name, run) if run else None
    if kept:
        return {"cluster": name, "possible": True, "resumed": True, "run": str(run),
                "steps": kept.names(), "text": kept.render(), "plan": kept.to_dict()}
    decision, found, source = leapfrog_facts.decide(master.opts, config, strategy, to,
                                                    control, computes, timeout)
    out = {"cluster": name, "possible": True, "strategy": decision["strategy"],
           "why": decision["why"], "control": decision["control"], "releases_from": source,
           "hops": [list(h) for h in decision["hops"]], "computes": found}
    if not decision["hops"]:
        return dict(out, steps=[], text=f"Nothing to do: the control plane of {name} "
                                        f"already runs {decision['control']}")
    built = leapfrog_builders.control_plane({
        "cluster": name, "run": leapfrog_journal.new_run_id(), "config": config,
        "decision": decision, "computes": found,
        "controllers": leapfrog_minions.rolled_controllers(master.opts, config)})
    leapfrog_estimates.apply(built, master.root)
    return dict(out, steps=built.names(), text=built.render(), plan=built.to_dict())


def for_run(master, orch, name, config, args):
    """The plan of one run of ``orch`` (``leapfrog.run_plan``): with ``args["run"]`` naming a
    run that began, its stored plan (the binding to orchestration and target checked first);
    else one built from facts gathered now. Returns (run, plan, the journal's step statuses)."""
    if orch not in leapfrog_builders.BUILDERS:
        raise leapfrog_errors.LeapfrogError(
            f"orch must be one of {', '.join(leapfrog_builders.BUILDERS)}, got {orch!r}")
    run = leapfrog_journal.check_name("run", str(args["run"])) if args.get("run") \
        else leapfrog_journal.new_run_id()
    data = master.journal(name, run).read() or {}
    if data:  # a resume: the same orchestration, toward the same target
        wanted = args.get("upgrade_run" if "rollback" in orch else "to")
        leapfrog_journal.check_binding(name, run, data.get("meta") or {},
                                       {"orch": orch, "target": wanted})
    built = _kept(data)
    if built is None:
        built = leapfrog_estimates.apply(leapfrog_builders.BUILDERS[orch](
            leapfrog_facts.plan_facts(master.opts, master.root, orch, name, config, args, run)),
            master.root)
    return run, built, {s["name"]: s["status"] for s in data.get("steps") or []}
