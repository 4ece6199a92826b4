"""The run core on the salt-master: a run's begin, its steps, the approval gate, its end
and its stop after a failure, where it stands, its probe and its report.

The runner's entry points (``_runners/leapfrog.py``) load a ``Master`` and call one
function here; a function raises ``leapfrog_errors.LeapfrogError`` (or ``Failed`` with the
result to return) and the entry point turns it into retcode 1. The journal lives under the
master's cachedir (``leapfrog/<cluster>/<run>/journal.json``), the lock beside it
(``leapfrog/<cluster>/lock.json``), the probe's figures and the report in the run's folder.
"""
import os

import salt.utils.event

import leapfrog_cluster
import leapfrog_errors
import leapfrog_fault
import leapfrog_history
import leapfrog_journal
import leapfrog_minions
import leapfrog_parse
import leapfrog_probe
import leapfrog_provision
import leapfrog_quorum
import leapfrog_schedules
import leapfrog_schema

# seconds a minion has to answer about its scheduler, and then to say it still works on it:
# a slower minion that says so (Salt's find_job) is waited for, a stopped controller (a
# rollback's) costs their sum once per begin and end
SCHEDULE_TIMEOUT, SCHEDULE_GATHER = 2, 2


def journal_root(opts):
    """Where the master keeps leapfrog's journals, locks and reports."""
    return os.path.join(opts["cachedir"], "leapfrog")


class Failed(leapfrog_errors.LeapfrogError):
    """A call that failed with a result to return whole (retcode 1)."""

    def __init__(self, result):
        super().__init__(result.get("error") or "failed")
        self.result = result


class Master:
    """What the run core needs of the master it runs on: its ``opts``, how a progress line
    reaches the operator (``say``), and the loader's runner functions and context (a step
    runs one in process, ``run_function``)."""

    def __init__(self, opts, say, functions=None, context=None):
        self.opts, self.say = opts, say
        self.functions = functions if functions is not None else {}
        self.context = context if context is not None else {}

    @property
    def root(self):
        return journal_root(self.opts)

    def load(self, cluster, pillar=None):
        return leapfrog_cluster.load(self.opts, cluster, pillar)

    def fire(self, tag, data):
        """Send ``data`` on the master's event bus under ``tag`` (never secrets)."""
        with salt.utils.event.get_master_event(self.opts, self.opts["sock_dir"],
                                               listen=False) as event:
            event.fire_event(data, tag)

    def listen(self):
        """The master's event bus, listening (the caller destroys it)."""
        return salt.utils.event.get_master_event(self.opts, self.opts["sock_dir"], listen=True)

    def journal(self, name, run):
        return leapfrog_journal.Journal(self.root, name, str(run))

    def run_dir(self, name, run):
        return os.path.join(self.root, name, leapfrog_journal.check_name("run", str(run)))

    def tracker(self, cluster, run, pillar=None, test=False, new_run=False):
        """Load the cluster and build the run's Tracker; returns (name, config, tracker)."""
        name, config = self.load(cluster, pillar)
        run = str(run) if run not in (None, "") else None  # salt-run may parse ids as numbers
        if not run:
            if not new_run:
                raise leapfrog_errors.LeapfrogError("name the run: run=<id> (leapfrog.begin "
                                                    "or leapfrog.run_id gives one)")
            run = leapfrog_journal.new_run_id()
        tracker = leapfrog_journal.Tracker(
            self.root, name, run, fire=self.fire, say=self.say, test=bool(test),
            faults=leapfrog_fault.Faults.from_config(config),
            stale_after=stale_after(config))
        return name, config, tracker

    def schedules(self, name):
        """The cluster's PausedSchedules, calling minions from this master."""
        def call_each(ids, fun):
            return leapfrog_minions.call_each(self.opts, "L@" + ",".join(ids), fun,
                                              timeout=SCHEDULE_TIMEOUT,
                                              gather=SCHEDULE_GATHER)
        return leapfrog_schedules.PausedSchedules(self.root, name, call_each)

    def run_function(self, function, args=None, kwargs=None):
        """Run the runner function ``function`` in this process (the loader's own
        functions, no runner client); raise with its error when it fails (its retcode)."""
        if function not in self.functions:
            raise leapfrog_errors.LeapfrogError(
                f"{function!r} is no runner function of this master (a step runs one, e.g. "
                "leapfrog.call)")
        before = self.context.pop("retcode", None)
        try:
            ret = self.functions[function](*(args or []), **(kwargs or {}))
            failed = self.context.get("retcode") or \
                (isinstance(ret, dict) and ret.get("retcode"))
        finally:
            self.context.pop("retcode", None)
            if before is not None:
                self.context["retcode"] = before
        if failed:
            error = ret.get("error") if isinstance(ret, dict) else None
            raise leapfrog_errors.LeapfrogError(  # its own error whole: it names the cause
                f"{function} failed: {error}" if isinstance(error, str)
                else f"{function} failed: {leapfrog_journal.summarize(ret, 400)}")
        return ret


def stale_after(config):
    return (config.get("lock") or {}).get("stale_after", leapfrog_journal.DEFAULT_STALE_AFTER)


def cluster_minions(master, config):
    """Every minion of the cluster's roles (the nodes a run may touch)."""
    return sorted({mid for target in leapfrog_schema.roles(config).values()
                   for mid in leapfrog_minions.expected(master.opts, target)})


# ------------------------------------------------------------------ the minions' schedulers
def _record_schedules(tracker, key, outcome):
    """Keep a pause/resume outcome in the run's journal and say what did not answer."""
    with tracker.journal.edit() as data:
        data.setdefault("schedules", {})[key] = dict(
            outcome, at=leapfrog_journal.iso(tracker.clock()))
    verb = {"paused": "paused", "resumed": "turned back on"}[key]
    tracker.say(f"schedulers {verb}: {', '.join(outcome[key]) or 'none'}")
    for problem in outcome["silent"].values():
        tracker.say(f"WARNING: scheduler not {verb}: {problem}; "
                    + ("check the minion before going on" if key == "paused" else
                       f"run: salt-run leapfrog.resume_schedules cluster={tracker.cluster}"))


def pause_schedules(master, config, tracker):
    try:
        outcome = master.schedules(tracker.cluster).pause(cluster_minions(master, config),
                                                          tracker.run_id)
    except leapfrog_errors.LeapfrogError as exc:  # e.g. the roles match no minion
        outcome = {"paused": [], "already_off": [], "silent": {"*": str(exc)}}
    _record_schedules(tracker, "paused", outcome)
    return outcome


def resume_run_schedules(master, tracker):
    try:
        outcome = master.schedules(tracker.cluster).resume()
    except leapfrog_errors.LeapfrogError as exc:
        outcome = {"resumed": [], "silent": {"*": str(exc)}}
    _record_schedules(tracker, "resumed", outcome)
    return outcome


def resume_schedules(master, cluster=None, pillar=None):
    """Turn the cluster's paused schedulers back on, refused while a live run holds the
    lock (``leapfrog.resume_schedules``)."""
    name, config = master.load(cluster, pillar)
    lock = leapfrog_journal.ClusterLock(master.root, name, stale_after=stale_after(config))
    holder = lock.read()
    if holder and lock.why_free(holder) is None:
        raise leapfrog_journal.LockBusy(name, holder)
    outcome = master.schedules(name).resume()
    if outcome["silent"]:
        raise Failed({"cluster": name, **outcome,
                      "error": "; ".join(outcome["silent"].values())})
    return {"cluster": name, **outcome}


# ------------------------------------------------------------------ a run: begin, steps, end
def begin(master, cluster=None, run=None, steps=None, orch=None, plan=None, pillar=None,  # pylint: disable=redefined-outer-name
          test=False, target=None, schedules=False):
    """Lock the cluster and open or resume the run (``leapfrog.begin``)."""
    name, config, tracker = master.tracker(cluster, run, pillar, test, new_run=True)
    if test:
        data = tracker.journal.read() or {"steps": []}
        leapfrog_journal.check_binding(name, tracker.run_id, data.get("meta") or {},
                                       {"orch": orch, "target": target})
        done = {s["name"] for s in data["steps"] if s["status"] in ("done", "skipped")}
        lines = [f"run {tracker.run_id} on {name} (test: nothing changes)"] + [
            f"  {s}: {'done, not repeated' if s in done else 'would run'}"
            for s in (steps or [])]
        return {"cluster": name, "run": tracker.run_id, "test": True,
                "text": "\n".join(lines)}
    meta = {key: value for key, value in (("orch", orch), ("plan", plan),
                                          ("target", target)) if value}
    data = tracker.begin(steps or [], meta=meta or None)
    paused = pause_schedules(master, config, tracker) if schedules else None
    out = {"cluster": name, "run": tracker.run_id, "status": data["status"],
           "attempt": len(data["attempts"]),
           "done": [s["name"] for s in data["steps"] if s["status"] == "done"]}
    return dict(out, schedules=paused) if paused else out


def step(master, cluster=None, run=None, step=None, function=None, function_args=None,  # pylint: disable=redefined-outer-name
         function_kwargs=None, pillar=None, test=False, kind=None, node=None):
    """Run one step of the run once (``leapfrog.step``)."""
    name, config, tracker = master.tracker(cluster, run, pillar, test)
    if not step or not function:
        raise leapfrog_errors.LeapfrogError("step= and function= are required")
    step = str(step)
    if tracker.lock.relation(tracker.run_id) == "child":
        leapfrog_journal.die_with_parent()  # run side by side: ends with the run
    notes = []

    def work():
        if kind in leapfrog_quorum.GUARDED_KINDS:  # no data changed without a DB quorum
            notes.append(leapfrog_quorum.check(master.opts, config))
        again = (tracker.journal.step(step) or {}).get("attempts", 0) > 1
        with leapfrog_minions.for_step(f"{name}/{tracker.run_id}/{step}", again) as jobs:
            try:
                return master.run_function(function, function_args, function_kwargs)
            finally:
                notes.append(jobs.note())

    result, ran = tracker.run(step, work, describe=function, kind=kind, node=node)
    for text in filter(None, notes):
        tracker.note(step, text)
    return {"cluster": name, "run": tracker.run_id, "step": step, "ran": ran,
            "result": result}


def cleanup(master, cluster=None, run=None, step=None, function=None, function_kwargs=None,
            reopen=None, pillar=None):
    """A cleanup step after a failure, then the steps whose work it undid pending again
    (``leapfrog.cleanup``)."""
    name, _, tracker = master.tracker(cluster, run, pillar)
    if not step or not function:
        raise leapfrog_errors.LeapfrogError("step= and function= are required")
    result = master.run_function(function, None, dict(function_kwargs or {}, cluster=name))
    reopened = tracker.reopen(reopen or [], f"its work was undone by {step} after the run "
                              "failed: a resume does it again")
    return {"cluster": name, "run": tracker.run_id, "step": step, "result": result,
            "reopened": reopened}


def finish(master, cluster=None, run=None, pillar=None, test=False):
    """Close a run whose steps are all done (``leapfrog.finish``)."""
    name, _, tracker = master.tracker(cluster, run, pillar, test)
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
    resumed = resume_run_schedules(master, tracker)
    data = tracker.end("done")
    return {"cluster": name, "run": run, "status": data["status"],
            "steps": {s["name"]: s["status"] for s in data["steps"]},
            "schedules_resumed": resumed["resumed"]}


def stopped(master, cluster=None, run=None, orch=None, rollback=None):
    """After a failure: the lock dropped, the schedulers back on, the failed run's report,
    and the commands that resume it and roll it back (``leapfrog.stopped``)."""
    name, _, tracker = master.tracker(cluster, run, None)
    data = tracker.journal.read() or {"steps": []}
    failed = [s for s in data["steps"] if s["status"] == "failed"]
    tracker.release_lock()  # a step run side by side left it to this process
    resumed = resume_run_schedules(master, tracker)
    try:  # the failed run's report (its probe stopped: it would run on until its end)
        written = write_report(master, name, run)
    except Exception as exc:  # pylint: disable=broad-except
        written = {"error": f"no report: {exc}"}
        probe_stop(master, cluster=name, run=run)

    def cmd(orchestration, key):
        return (f"salt-run state.orch {orchestration} pillar='{{\"cluster\": \"{name}\", "
                f"\"{key}\": \"{run}\"}}'")

    out = {"cluster": name, "run": run,
           "failed_step": failed[0]["name"] if failed else None,
           "error": (failed[0].get("error") if failed else None),
           "resume": cmd(orch or "<orchestration>", "run"),
           "report": written.get("paths") or written.get("error"),
           "schedules_resumed": resumed["resumed"]}
    if rollback:
        out["rollback"] = cmd(rollback, "upgrade_run")
    for key in ("failed_step", "resume", "rollback"):
        if out.get(key):
            master.say(f"leapfrog: {key.replace('_', ' ')}: {out[key]}")
    return out


# ------------------------------------------------------------------ the approval gate
def wait_approval(master, cluster=None, run=None, step="approve_gate", expiry=None,  # pylint: disable=redefined-outer-name
                  pillar=None, test=False):
    """Wait as step ``step`` until the run is approved (``leapfrog.wait_approval``)."""
    name, config, tracker = master.tracker(cluster, run, pillar, test)
    step = str(step)
    seconds = leapfrog_parse.seconds(
        expiry if expiry not in (None, "") else config["approval"]["expiry"], "expiry",
        minimum=0.1)
    tag = tracker.tag("approve")
    event = None if test else master.listen()

    def next_event(timeout):
        found = event.get_event(wait=timeout, tag=tag, full=True)
        if found and found.get("tag") == tag:
            return found.get("data") or {}
        return None

    def work():
        tracker.say(f"step {step}: waiting for approval (expires in {seconds:g} s): "
                    f"salt-run leapfrog.approve cluster={name} run={tracker.run_id}")
        ahead = leapfrog_history.next_no_return(tracker.journal.read() or {}, step)
        if ahead:
            tracker.say(f"step {step}: after approval the run passes its point of no "
                        f"return at step {ahead['name']} ({ahead.get('changes')}): "
                        "a rollback is refused after it")
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
    return {"cluster": name, "run": tracker.run_id, "step": step, "ran": ran,
            "result": result}


def approve(master, cluster=None, run=None, step=None, by="unknown"):  # pylint: disable=redefined-outer-name
    """Record ``by``'s approval of the gate the run waits on, or of ``step``, and announce
    it on the bus (``leapfrog.approve``)."""
    name, _ = master.load(cluster)
    journal = master.journal(name, run or "")
    if not journal.read():
        raise leapfrog_errors.LeapfrogError(f"cluster {name} has no run {run}")
    gate = step or leapfrog_journal.waiting_gate(journal)
    if not gate:
        raise leapfrog_errors.LeapfrogError(
            f"no step of run {run} waits for approval now; name one with step=")
    leapfrog_journal.check_name("step", gate)
    leapfrog_journal.record_approval(journal, gate, by)
    master.fire(f"leapfrog/{name}/{journal.run}/approve", {"cluster": name, "run": journal.run,
                                                            "step": gate, "by": by})
    return {"cluster": name, "run": journal.run, "approved": gate, "by": by}


# ------------------------------------------------------------------ where a run stands
def status(master, cluster=None, run=None):
    """A run's steps, the step it stopped at, the lock and how to resume
    (``leapfrog.status``)."""
    name, _ = master.load(cluster)
    runs = leapfrog_journal.list_runs(master.root, name)
    if run:
        data = master.journal(name, run).read()
        if not data:
            raise leapfrog_errors.LeapfrogError(f"cluster {name} has no run {run}")
    elif runs:
        data = runs[0][1]
    else:
        return {"cluster": name, "runs": [], "comment": f"no run recorded for {name}"}
    lock = leapfrog_journal.ClusterLock(master.root, name).read()
    steps, lines, stopped_at = [], [], None
    for record in data["steps"]:
        entry = {k: record.get(k) for k in ("name", "status", "started", "ended", "elapsed",
                                             "attempts", "summary", "error") if record.get(k)
                 is not None}
        steps.append(entry)
        if stopped_at is None and record["status"] in ("running", "failed", "pending"):
            stopped_at = record["name"]
        took = f" {record['elapsed']:.1f} s" if record.get("elapsed") is not None else ""
        note = record.get("error") or record.get("summary") or ""
        lines.append(f"{record['status']:>8} {record['name']}{took}"
                     + (f"  {note}" if note else ""))
    out = {"cluster": name, "run": data["run"], "status": data["status"],
           "created": data["created"], "updated": data["updated"],
           "attempts": len(data["attempts"]), "steps": steps, "text": "\n".join(lines),
           "approvals": data.get("approvals", {})}
    if stopped_at:
        out["at_step"] = stopped_at
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


# ------------------------------------------------------------------ the probe and the report
def probe_start(master, cluster=None, run=None, pillar=None, duration=3600):
    """Start the run's availability probe on ``haproxy:probe_urls``
    (``leapfrog.probe_start``)."""
    name, config = master.load(cluster, pillar)
    provision = {}
    if config.get("provision_probe"):  # users' provisioning, beside the API probe
        provision = {"provision": leapfrog_provision.start(
            master.run_dir(name, run), config["provision_probe"], duration)["provision"]}
    urls = config["haproxy"].get("probe_urls") or []
    if not urls:
        return {"cluster": name, "run": run, "probe": "none (haproxy:probe_urls not set)",
                **provision}
    started = leapfrog_probe.start_process(master.run_dir(name, run), urls, duration)
    return {"cluster": name, "run": run, **started, **provision,
            **({"urls": urls} if started["probe"] == "started" else {})}


def probe_stop(master, cluster=None, run=None, pillar=None, timeout=30):
    """Stop the run's probe and its provisioning probe; the summary of its probes merged
    (``leapfrog.probe_stop``)."""
    name, _ = master.load(cluster, pillar)
    leapfrog_provision.stop(master.run_dir(name, run))
    return leapfrog_probe.stop_process(master.run_dir(name, run), timeout)


def write_report(master, name, run, pillar=None):
    """Stop the run's probe, build its report from the journal and write it beside it."""
    import leapfrog_report  # pylint: disable=import-outside-toplevel

    probe = probe_stop(master, cluster=name, run=run, pillar=pillar)
    provision = leapfrog_provision.merged(master.run_dir(name, run))
    data = leapfrog_report.closing(master.journal(name, run).read())
    built = leapfrog_report.build(data, probe=probe, provision=provision,
                                   facts=leapfrog_history.report_facts(data))
    paths = leapfrog_report.write(built, os.path.join(master.run_dir(name, run), "report"))
    for line in leapfrog_report.headline_text(built).splitlines():
        master.say(line)
    return {"paths": paths, "headline": built.get("headline")}


def report(master, cluster=None, run=None, pillar=None):
    """The run's report, written as a journaled step (``leapfrog.report``)."""
    name, _, tracker = master.tracker(cluster, run, pillar)
    result, _ = tracker.run("report", lambda: write_report(master, name, run, pillar),
                            describe="leapfrog.report")
    return {"cluster": name, "run": run, **(result or {})}

