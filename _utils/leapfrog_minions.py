"""Run an execution module function on a cluster's minions from the master, and fail
loudly: a target that matches nothing, a minion that does not answer, or a minion whose
function failed (retcode != 0, e.g. a CommandExecutionError) is an error naming them.

Runners use it for every cross-minion step; secrets never travel in the call: minion-side
functions read them from the minion's own pillar.

Within a step (``for_step``, set by ``leapfrog_run.step``) every job carries the step as
Salt job metadata (``leapfrog_step: cluster/run/step``). A job outlives the salt-run that
sent it (killed, or gave up waiting): so before a step runs again, its minions are asked
(``saltutil.running``) for a job of an earlier attempt of that step, and the new one waits
until it has ended: a resume never runs a step's work twice at once.
"""
import contextlib
import contextvars
import time

import salt.client
import salt.utils.minions

import leapfrog_errors

ERROR_TAIL = 600
# Seconds after which Salt first asks the minions whether they still run a job, then again
# every gather_job_timeout while they do: a job is waited for however long it runs, and a
# minion that died or stopped fails its step within about half a minute instead of after
# the step's whole timeout (Salt waits the timeout out before it asks).
ALIVE_CHECK = 20
EARLIER_JOB_TIMEOUT = 3600  # seconds a resumed step waits for an earlier attempt's job
METADATA_KEY = "leapfrog_step"
_STEP = contextvars.ContextVar("leapfrog_step", default=None)


class StepJobs:
    """The step the calls of this context belong to, whether it ran before (then its
    minions are asked for an earlier attempt's job first) and the jobs waited for."""

    def __init__(self, tag, again):
        self.tag, self.again, self.waited = tag, bool(again), {}

    def note(self):
        """A line for the step's journal record, or None when nothing was waited for."""
        if not self.waited:
            return None
        jobs = "; ".join(f"{mid}: {', '.join(jids)}" for mid, jids in sorted(self.waited.items()))
        return (f"an earlier attempt's job of this step still ran ({jobs}): waited for it to "
                "end before running the step again")


@contextlib.contextmanager
def for_step(tag, again=False):
    """Tag every job sent in this context with step ``tag`` (``cluster/run/step``);
    ``again``: the step ran before in this run. Yields the StepJobs."""
    jobs = StepJobs(tag, again)
    token = _STEP.set(jobs)
    try:
        yield jobs
    finally:
        _STEP.reset(token)


def earlier_jobs(client, ids, tag):
    """{minion: [jid, ...]} of the jobs of step ``tag`` still running on ``ids`` (a minion
    that does not answer has none to wait for)."""
    answers = client.cmd(ids, "saltutil.running", tgt_type="list", timeout=30) or {}
    found = {}
    for mid, jobs in answers.items():
        jids = [str(job.get("jid")) for job in jobs if isinstance(job, dict)
                and (job.get("metadata") or {}).get(METADATA_KEY) == tag] \
            if isinstance(jobs, list) else []
        if jids:
            found[mid] = jids
    return found


def wait_earlier_jobs(client, ids, jobs, timeout=EARLIER_JOB_TIMEOUT, clock=time.monotonic,
                      sleep=time.sleep):
    """Return once no job of an earlier attempt of ``jobs.tag`` runs on ``ids`` (recorded
    in ``jobs.waited``); raise, naming them and the fix, after ``timeout`` s."""
    deadline = clock() + timeout
    while True:
        found = earlier_jobs(client, ids, jobs.tag)
        if not found:
            return
        for mid, jids in found.items():
            known = jobs.waited.setdefault(mid, [])
            known.extend(j for j in jids if j not in known)
        if clock() > deadline:
            running = "; ".join(f"{mid}: {', '.join(jids)}" for mid, jids in sorted(found.items()))
            raise leapfrog_errors.LeapfrogError(
                f"step {jobs.tag}: job(s) of an earlier attempt still run after {timeout:g} s "
                f"({running}): let them finish, or end them with `salt MINION "
                "saltutil.kill_job JID`, then re-run with the same run id")
        sleep(2)


def expected(opts, target):
    """Minion ids the master expects ``target`` (compound) to match."""
    found = salt.utils.minions.CkMinions(opts).check_minions(target, tgt_type="compound")
    return sorted(found.get("minions", []))


def _tail(value):
    text = str(value).strip()
    return text if len(text) <= ERROR_TAIL else "..." + text[-ERROR_TAIL:]


def _failed_states(ret):
    """'<state id>: <comment>' of every failed state in a state run's return ([] if none;
    a list return is a render error)."""
    if isinstance(ret, list):
        return [_tail("; ".join(str(r) for r in ret))]
    if not isinstance(ret, dict):
        return []
    return [f"{r.get('__id__', key)}: {_tail(r.get('comment', ''))}"
            for key, r in ret.items() if isinstance(r, dict) and r.get("result") is False]


def first(opts, config, role):
    """The first minion (sorted ids) of a cluster role: where "once" calls run."""
    ids = expected(opts, config["roles"][role])
    if not ids:
        raise leapfrog_errors.LeapfrogError(f"role {role}: {config['roles'][role]!r} matches "
                                            "no minion")
    return ids[0]


def rolled_controllers(opts, config):
    """The controller role's minions that have a VM in ``vms:nodes``: the ones an upgrade
    rolls, in order."""
    return [node for node in expected(opts, config["roles"]["controller"])
            if node in config["vms"]["nodes"]]


def ask_node_info(opts, target, timeout):
    """``leapfrog.node_info`` of the minions of compound ``target``: {id: answer}."""
    client = salt.client.get_local_client(opts["conf_file"])
    try:
        return client.cmd(target, "leapfrog.node_info", tgt_type="compound", timeout=timeout)
    finally:
        client.destroy()


def call(opts, target, fun, kwargs=None, first=False, timeout=600):
    """Run ``fun(**kwargs)`` on the minions of compound ``target``; return {id: return}.

    ``first=True`` runs it on the first matching minion only (sorted ids): the "once, on
    the first controller" steps. Any minion's failure raises, naming each.
    """
    results, problems = call_each(opts, target, fun, kwargs, first=first, timeout=timeout)
    if problems:
        raise leapfrog_errors.LeapfrogError("; ".join(problems.values()))
    return results


def call_each(opts, target, fun, kwargs=None, first=False, timeout=600, gather=None):
    """Like :func:`call`, in parallel on the minions, without raising for one minion's
    failure: return ({id: return} of those that succeeded, {id: problem text}). A minion
    that has not returned within ``timeout`` s (at most ``ALIVE_CHECK``) is asked whether it
    still runs the job, for ``gather`` s (Salt's ``gather_job_timeout``): a stopped minion
    costs that much, a running job is waited for."""
    ids = expected(opts, target)
    if not ids:
        raise leapfrog_errors.LeapfrogError(f"target {target!r} matches no minion")
    if first:
        ids = ids[:1]
    step = _STEP.get()
    extra = {"gather_job_timeout": gather} if gather else {}
    if step is not None:
        extra["metadata"] = {METADATA_KEY: step.tag}
    client = salt.client.get_local_client(opts["conf_file"])
    try:
        if step is not None and step.again:
            wait_earlier_jobs(client, ids, step)
        answers = client.cmd(ids, fun, kwarg=dict(kwargs or {}), tgt_type="list",
                             timeout=min(timeout, ALIVE_CHECK), full_return=True, **extra)
    finally:
        client.destroy()
    problems, results = {}, {}
    for mid in ids:
        answer = answers.get(mid)
        if not isinstance(answer, dict) or "ret" not in answer:
            problems[mid] = (f"{mid}: no answer to {fun}: the minion does not run it (stopped, "
                             f"restarting or unreachable? `salt {mid} test.ping`)")
            continue
        failed_states = _failed_states(answer["ret"]) if fun.startswith("state.") else []
        if failed_states:
            problems[mid] = f"{mid}: {fun} failed: {'; '.join(failed_states)}"
            continue
        if answer.get("retcode", 0) != 0 or answer.get("success") is False:
            problems[mid] = f"{mid}: {fun} failed: {_tail(answer['ret'])}"
            continue
        results[mid] = answer["ret"]
    return results, problems


def differences(before, after):
    """Tables whose checksum or row count changed between two ``mysql_backup.checksums``
    results ({database: {table: {...}}}); [] when identical."""
    changed = []
    for database in sorted(set(before) | set(after)):
        old, new = before.get(database) or {}, after.get(database) or {}
        if not isinstance(old, dict) or not isinstance(new, dict):
            if old != new:
                changed.append(database)
            continue
        for table in sorted(set(old) | set(new)):
            if old.get(table) != new.get(table):
                changed.append(f"{database}.{table}")
    return changed
