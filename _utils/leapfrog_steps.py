"""A run's plan as data: the one object that is printed (``salt-run leapfrog.plan``,
``test=True``), approved, stored whole in the journal at begin and executed by the
orchestration (``orch/run.jinja``), as COU's plans are (``cou/steps``).

A ``Step`` says what runs (a runner ``function`` and its ``kwargs``), what kind of work it
is (``kind``: report, rollback and status read kinds, never names), the node or host it is
about (``node``), where it acts and what it changes, its expected impact, the steps it
``needs`` (the plan is a graph) and whether a rollback can still undo the cloud after it
(``irreversible``: the point of no return). A ``Plan`` holds the steps of one run with its
orchestration, cluster, target and title.
"""
import leapfrog_errors
import leapfrog_journal

# kind -> what a step of that kind does, for the plan's legend and checks
KINDS = {
    "precheck": "checks the cluster; changes nothing",
    "revisions": "records the services' DB revisions (the first before, the last after)",
    "inventory": "records each controller's OS and release",
    "record": "reads and records state; changes nothing",
    "backup_db": "backs up the databases",
    "backup_ovsdb": "backs up OVN's northbound and southbound databases",
    "verify_backup": "verifies a backup on its minion",
    "db_node_out": "takes a Galera node out of the DB frontend (for the backup)",
    "db_node_in": "puts a Galera node back in the DB frontend",
    "approval": "waits for salt-run leapfrog.approve",
    "drain": "takes a controller out of every haproxy backend",
    "backup_disk": "stops a controller's VM and backs up its disk",
    "rebuild": "rebuilds a controller's VM on the new OS image",
    "redeploy": "deploys a controller's services at the target, stopped",
    "db_sync": "migrates a service's database (expand, migrate, sync)",
    "start": "starts a controller's services",
    "check": "checks a controller's own endpoints",
    "ready": "puts a controller back in haproxy",
    "gateways": "moves routers' gateways off a controller's chassis, or back",
    "ovn": "sets in OVN's northbound DB what neutron's new servers read (as neutron would)",
    "stop_compute": "stops nova-compute on a compute (servers keep running)",
    "switch_compute": "switches computes to the target release",
    "guard": "checks on the cluster what the next step needs (no older server runs)",
    "db_finish": "finishes a service's migrations (online migrations, contract)",
    "restart": "restarts a controller's services with new settings",
    "verify": "verifies the cloud through its API",
    "prestage": "installs the target's code ahead, nothing restarted",
    "pause": "waits between batches",
    "unpin": "lifts the compute RPC cap",
    "stop_vm": "stops a controller's VM",
    "restore_db": "restores the databases from a backup",
    "stop_db_node": "stops a Galera node (the whole cluster is restored)",
    "join_db_node": "starts a Galera node into the restored cluster (a full SST)",
    "restore_key": "accepts a node's old minion key again",
    "restore_disk": "restores a controller's disk from a backup and starts it",
    "start_vm": "starts a controller's VM",
    "start_compute": "starts nova-compute on a compute",
    "snapshot": "records production's structure to compare with later",
    "clone": "clones the production databases (the rehearsal's copies)",
    "isolate": "points the clones at each other, never at production",
    "compare": "proves production unchanged since a snapshot",
    "drop_clones": "drops the rehearsal's clones",
    "throwaway": "makes the rehearsal's throwaway controller (a VM of its own)",
    "rehome": "points the clones' catalog at the throwaway controller",
    "discard": "removes the throwaway controller (domain, disk, key)",
    "discover": "maps a compute host into its cell (nova-manage cell_v2 discover_hosts)",
    "provision": "creates and deletes what users create (server, network, volume)",
}

FIELDS = ("name", "kind", "function", "kwargs", "node", "where", "changes", "impact",
          "needs", "irreversible")


class PlanError(leapfrog_errors.LeapfrogError):
    """A plan that cannot run: an unknown kind, a repeated name, a need that is not a step."""


class Step:
    """One step of a plan (see the module docstring for the fields)."""

    def __init__(self, name, kind, function, kwargs=None, node=None, where=None,
                 changes="nothing", impact="none", needs=(), irreversible=False):
        self.name = leapfrog_journal.check_name("step", name)
        if kind not in KINDS:
            raise PlanError(f"step {name}: unknown kind {kind!r}; kinds: {', '.join(KINDS)}")
        self.kind, self.function, self.kwargs = kind, function, dict(kwargs or {})
        self.node, self.where, self.changes, self.impact = node, where, changes, impact
        self.needs, self.irreversible = list(needs), bool(irreversible)

    def to_dict(self):
        return {key: getattr(self, key) for key in FIELDS}

    @classmethod
    def from_dict(cls, data):
        return cls(**{key: data[key] for key in FIELDS if key in data})

    def line(self):
        """One line an operator reads: name, kind, where, what changes, impact."""
        text = f"{self.name} [{self.kind}]"
        if self.where:
            text += f" on {self.where}"
        text += f": {self.changes}"
        if self.impact and self.impact != "none":
            text += f" (impact: {self.impact})"
        if self.irreversible:
            text += " -- POINT OF NO RETURN: a rollback cannot undo this"
        return text


class Plan:
    """The steps of one run; ``add`` appends a step that needs the plan's current tips
    (the step before, or the ends of the branches ``side_by_side`` just added) unless
    ``needs`` says otherwise."""

    def __init__(self, orch, cluster, target, title, why="", steps=(), probe=True,
                 report=True, expiry=None, cleanup=(), schedules=True, estimates=None):
        self.orch, self.cluster, self.target = orch, cluster, str(target)
        self.title, self.why = title, why
        self.steps = list(steps)
        self.probe, self.report, self.expiry = bool(probe), bool(report), expiry
        self.cleanup = list(cleanup)  # steps run when one of their ``needs`` fails
        self.schedules = bool(schedules)  # the minions' schedulers off while it runs
        self.tips = [self.steps[-1].name] if self.steps else []
        # what a rehearsal measured (leapfrog_estimates): {"rehearsal": run, "steps":
        # {step: {"seconds": s, "scope": "hop"|"path"}}}; None when no rehearsal ran
        self.estimates = estimates or None

    def on_failure(self, name, kind, function, kwargs, of, **fields):
        """A cleanup step: runs (not journaled) when any step of ``of`` fails."""
        step = Step(name, kind, function, kwargs, needs=of, **fields)
        self.cleanup.append(step)
        return step

    def add(self, name, kind, function=None, kwargs=None, needs=None, **fields):
        step = Step(name, kind, function, kwargs,
                    needs=list(self.tips) if needs is None else needs, **fields)
        self.steps.append(step)
        self.tips = [step.name]
        return step

    def side_by_side(self, *branches):
        """Add each branch (a callable adding steps) from the same tips: the branches run
        at the same time; the next step added needs the end of every branch."""
        if not branches:
            return
        start, ends = list(self.tips), []
        for branch in branches:
            self.tips = list(start)
            branch()
            ends += [tip for tip in self.tips if tip not in ends]
        self.tips = ends

    def names(self):
        return [s.name for s in self.steps]

    def of_kind(self, *kinds):
        return [s for s in self.steps if s.kind in kinds]

    def check(self):
        """Raise PlanError for a repeated name or a need that is no earlier step."""
        seen = set()
        for step in self.steps:
            if step.name in seen:
                raise PlanError(f"plan {self.title!r}: step {step.name} appears twice")
            missing = [n for n in step.needs if n not in seen]
            if missing:
                raise PlanError(f"plan {self.title!r}: step {step.name} needs "
                                f"{', '.join(missing)}, which no earlier step is")
            seen.add(step.name)
        for step in self.cleanup:
            missing = [n for n in step.needs if n not in seen]
            if missing or step.name in seen:
                raise PlanError(f"plan {self.title!r}: cleanup {step.name} must follow "
                                f"steps of the plan, not {', '.join(missing) or step.name}")
        return self

    def side_by_side_steps(self):
        """Names of the steps that may run while another does: those with a step that is
        neither before nor after them in the graph."""
        before = {}
        for step in self.steps:  # needs always name earlier steps (check)
            before[step.name] = set(step.needs).union(*(before[n] for n in step.needs))
        names = self.names()
        return [a for a in names if any(
            b != a and a not in before[b] and b not in before[a] for b in names)]

    def parallel_steps(self):
        """Names of the steps the orchestration runs in a process of their own (Salt's
        ``parallel``): the side-by-side steps and every step that needs one (a join).
        Salt's loop waits in place for the running requisites of a state that is not
        parallel, so a plain join would hold back the branches not yet started; a
        parallel one waits aside. The others run in the orchestration's own process:
        ``parallel`` costs a fork and a 10 ms polling loop over every waiting state."""
        side = set(self.side_by_side_steps())
        return [s.name for s in self.steps if s.name in side or side.intersection(s.needs)]

    def ends(self):
        """Names of the steps no other step needs (the graph's sinks): every step comes
        before one of them, so a failure anywhere fails one of them too (Salt marks the
        states after a failed one failed)."""
        needed = {n for step in self.steps for n in step.needs}
        return [name for name in self.names() if name not in needed]

    def to_dict(self):
        out = {"orch": self.orch, "cluster": self.cluster, "target": self.target,
               "title": self.title, "why": self.why, "probe": self.probe,
               "report": self.report, "expiry": self.expiry, "schedules": self.schedules,
               "steps": [s.to_dict() for s in self.steps],
               "parallel": self.parallel_steps(), "ends": self.ends(),
               "cleanup": [s.to_dict() for s in self.cleanup]}
        if self.estimates:
            out["estimates"] = self.estimates
        return out

    @classmethod
    def from_dict(cls, data):
        if not isinstance(data, dict) or not isinstance(data.get("steps"), list):
            raise PlanError("not a plan: expected a mapping with a list of steps")
        return cls(data["orch"], data["cluster"], data["target"], data["title"],
                   why=data.get("why", ""), probe=data.get("probe", True),
                   report=data.get("report", True), expiry=data.get("expiry"),
                   schedules=data.get("schedules", True), steps=[Step.from_dict(s) for s in data["steps"]],
                   cleanup=[Step.from_dict(s) for s in data.get("cleanup") or []],
                   estimates=data.get("estimates")).check()

    def _estimate(self, step):
        found = ((self.estimates or {}).get("steps") or {}).get(step.name)
        if not found:
            return ""
        scope = " (the whole path at once)" if found.get("scope") == "path" else ""
        return f" ~{found['seconds']:.1f} s on a copy{scope}"

    def render(self, status=None):
        """The plan as text: the title, why, then one line per step (with its journal
        status when ``status`` maps names to one, e.g. on a resume)."""
        lines = [self.title]
        if self.why:
            lines.append(f"why: {self.why}")
        if self.estimates:
            steps = self.estimates["steps"]
            lines.append(f"estimates: {len(steps)} DB step(s) took "
                         f"{sum(e['seconds'] for e in steps.values()):.1f} s in all on a copy "
                         f"of this cluster's data (rehearsal {self.estimates['rehearsal']}, "
                         "orch.test_upgrade)")
        lines.append(f"steps ({len(self.steps)}):")
        previous = []
        for number, step in enumerate(self.steps, 1):
            state = (status or {}).get(step.name)
            mark = f" <{state}>" if state else ""
            after = "" if step.needs == previous else \
                f" [after {', '.join(step.needs)}]" if step.needs else " [at the start]"
            lines.append(f"  {number:2d}. {step.line()}{self._estimate(step)}{after}{mark}")
            previous = [step.name]
        for step in self.cleanup:
            lines.append(f"  on a failure of {', '.join(step.needs)}: {step.line()}")
        return "\n".join(lines)
