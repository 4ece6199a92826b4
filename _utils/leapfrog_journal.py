"""The run journal, the cluster lock and step tracking, kept on the salt-master.

Layout under ``<master cachedir>/leapfrog`` (one folder per cluster, one per run)::

    <cluster>/lock.json              who runs on the cluster now (one run at a time)
    <cluster>/<run>/journal.json     the run: steps, statuses, times, results, approvals

Every write is atomic (temporary file + fsync + rename) and done under an ``flock`` so the
orchestration, ``leapfrog.approve`` and ``leapfrog.status`` can share a journal from
different processes. Files are 0600 in 0700 folders, and every result, error and event is
scrubbed of passwords, tokens and private keys (``leapfrog_scrub``) before it is written or
fired.

A run id is bound to its cluster (its folder), its orchestration and its target: a journal
begun by ``orch.upgrade_control_plane`` to 2025.1 is never resumed by another orchestration
or toward another target. The lock is never taken from a live holder: the holding process
refreshes its heartbeat from a thread, and only a holder whose process is gone (or, on
another host, whose heartbeat is older than ``stale_after``) is taken over. Only an approval
recorded in the journal (by ``leapfrog.approve`` on the master) opens a gate: an event on
the bus merely wakes the waiter to read the journal again.

A journal step moves ``pending -> running -> done | failed | skipped``. ``Tracker.run(step,
work)`` is the one way to execute a step: a step already ``done`` in an earlier attempt of
the same run is not executed again, its recorded result is returned (that is how a re-run
with the same run id resumes at the failed step). Each transition fires an event
``leapfrog/<cluster>/<run>/<step>/<status>`` and prints a progress line with elapsed times.
"""
import contextlib
import datetime
import fcntl
import json
import logging
import os
import re
import secrets
import socket
import threading
import time

import leapfrog_errors
import leapfrog_fault
import leapfrog_scrub

log = logging.getLogger(__name__)

STATUSES = ("pending", "running", "done", "failed", "skipped")
RUN_STATUSES = ("running", "done", "failed")
NAME = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
RESERVED = ("run", "approve")
DEFAULT_STALE_AFTER = 6 * 3600
HEARTBEAT_EVERY = 30
BINDING = ("orch", "target")
RESULT_LIMIT = 64 * 1024


class LockBusy(leapfrog_errors.LeapfrogError):
    """Another live run holds the cluster's lock; ``holder`` is its lock record."""

    def __init__(self, cluster, holder):
        self.holder = holder
        super().__init__(
            f"cluster {cluster} is busy: run {holder.get('run')} holds the lock (pid "
            f"{holder.get('pid')} on {holder.get('host')}, since {holder.get('taken_at')}); "
            f"follow it with: salt-run leapfrog.status cluster={cluster} run={holder.get('run')}")


class ApprovalExpired(leapfrog_errors.LeapfrogError):
    """No approval arrived before the expiry."""


def check_name(kind, value):
    """Cluster, run and step names become paths and event tags: keep them plain."""
    if not isinstance(value, str) or not NAME.match(value):
        raise leapfrog_errors.LeapfrogError(
            f"{kind} {value!r}: use 1-64 letters, digits, '_', '.', '-' (no '/')")
    return value


def new_run_id(now=None):
    """A sortable, unique run id: ``YYYYmmdd-HHMMSS-xxxx`` (UTC)."""
    now = time.time() if now is None else now
    stamp = datetime.datetime.fromtimestamp(now, datetime.timezone.utc)
    return f"{stamp:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def iso(epoch):
    """Epoch seconds -> ISO 8601 UTC with milliseconds."""
    stamp = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def parse_iso(text):
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def clock_text(seconds):
    """Elapsed seconds as ``m:ss.s`` or ``h:mm:ss``."""
    seconds = max(0.0, float(seconds))
    if seconds >= 3600:
        return f"{int(seconds // 3600)}:{int(seconds % 3600 // 60):02d}:{int(seconds % 60):02d}"
    return f"{int(seconds // 60)}:{seconds % 60:04.1f}"


def private_dir(folder):
    """Create ``folder`` readable by its owner only (0700), with every parent it has to
    create; an existing ``folder`` with wider modes is narrowed to 0700."""
    missing, probe = [], os.path.abspath(folder)
    while not os.path.isdir(probe):
        missing.append(probe)
        probe = os.path.dirname(probe)
    for path in reversed(missing):
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
    if os.stat(folder).st_mode & 0o077:
        os.chmod(folder, 0o700)
    return folder


def private_open(path, mode="w"):
    """Open ``path`` for writing as a 0600 file (also when it existed with wider modes)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8")


def write_json(path, data):
    """Write ``data`` as JSON atomically: a crash leaves the old or the new file, whole.
    The file is 0600 in a 0700 folder (journals hold step results)."""
    folder = os.path.dirname(path)
    private_dir(folder)
    tmp = f"{path}.tmp.{os.getpid()}"
    with private_open(tmp) as handle:
        json.dump(data, handle, indent=1, sort_keys=True, default=str)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_json(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None


@contextlib.contextmanager
def flocked(path):
    """An exclusive ``flock`` on ``path`` (created if needed) for the ``with`` body."""
    private_dir(os.path.dirname(path))
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def json_safe(value):
    """The value as it will read back from the journal (JSON types only, secrets masked)."""
    return leapfrog_scrub.scrub(json.loads(json.dumps(value, default=str)))


def summarize(result, limit=160):
    """One line that says what a step returned."""
    if isinstance(result, dict):
        for key in ("summary", "comment", "message"):
            if isinstance(result.get(key), str):
                return result[key][:limit]
    text = json.dumps(result, default=str, sort_keys=True)
    return text if len(text) <= limit else text[:limit - 3] + "..."


# --------------------------------------------------------------------------- processes
def _stat(pid):
    """The fields of /proc/<pid>/stat after the command name (None if no such process)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            return handle.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None


def process_start(pid):
    """The start time of ``pid`` in clock ticks since boot (None if it does not exist)."""
    fields = _stat(pid)
    return int(fields[19]) if fields else None  # field 22 of stat: starttime


def parent_pid(pid):
    """The parent of ``pid`` (None if it does not exist)."""
    fields = _stat(pid)
    return int(fields[1]) if fields else None  # field 4 of stat: ppid


def is_my_ancestor(holder):
    """True when ``holder`` (a lock record) is a parent, grandparent... of this process on
    this host: a step the orchestration holding the lock runs side by side in a process of
    its own."""
    if holder.get("host") != socket.gethostname():
        return False
    pid = parent_pid(os.getpid())
    while pid and pid > 1:
        if pid == holder.get("pid") and process_start(pid) == holder.get("pid_start"):
            return True
        pid = parent_pid(pid)
    return False


PR_SET_PDEATHSIG = 1


def die_with_parent():
    """Ask the kernel to SIGKILL this process when its parent ends (a step run side by
    side dies with the orchestration, as a step run in its process does); True if set."""
    import ctypes  # pylint: disable=import-outside-toplevel
    import signal  # pylint: disable=import-outside-toplevel

    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if os.getppid() != parent:  # the parent ended before the request: end now
        os.kill(os.getpid(), signal.SIGKILL)
    return True


def me():
    """This process as a lock holder: pid, its start time and the host."""
    return {"pid": os.getpid(), "pid_start": process_start(os.getpid()),
            "host": socket.gethostname()}


def holder_alive(holder):
    """True/False for a holder on this host; None when it runs elsewhere (unknown)."""
    if holder.get("host") != socket.gethostname():
        return None
    started = process_start(holder.get("pid"))
    return started is not None and started == holder.get("pid_start")


def same_holder(a, b):
    return all(a.get(k) == b.get(k) for k in ("pid", "pid_start", "host"))


# --------------------------------------------------------------------------- lock
class ClusterLock:
    """One run per cluster. The record names the run and its process; a holder whose
    process is gone (same host: pid + start time) is taken over, so a crashed run never
    blocks forever. A live holder on this host is never taken over, however old its
    heartbeat; a holder on another host (its process cannot be seen) is taken over once
    its heartbeat is older than ``stale_after`` seconds (the holder refreshes it from a
    thread, see ``Heartbeat``)."""

    def __init__(self, root, cluster, stale_after=DEFAULT_STALE_AFTER, clock=time.time):
        self.cluster = check_name("cluster", cluster)
        self.path = os.path.join(root, cluster, "lock.json")
        self.guard = os.path.join(root, cluster, ".lock.flock")
        self.stale_after = float(stale_after)
        self.clock = clock

    def read(self):
        return read_json(self.path)

    def why_free(self, holder):
        """None if ``holder`` still counts, else why it may be taken over."""
        alive = holder_alive(holder)
        if alive is False:
            return (f"its process (pid {holder.get('pid')} on {holder.get('host')}) "
                    "is gone")
        if alive:
            return None
        age = self.clock() - float(holder.get("heartbeat", 0))
        if age > self.stale_after:
            return (f"its last heartbeat is {age:.0f} s old (stale after "
                    f"{self.stale_after:.0f} s)")
        return None

    def relation(self, run):
        """How this process stands to the lock of ``run``: ``holder`` (it holds it),
        ``child`` (a process the holder started: a step run side by side) or None."""
        holder = self.read()
        if not holder or holder.get("run") != run:
            return None
        if same_holder(holder, me()):
            return "holder"
        return "child" if is_my_ancestor(holder) else None

    def acquire(self, run):
        """Take the lock for ``run`` (re-entrant for this process and for the processes it
        starts: those leave the record to their parent); return a dict with
        ``taken_over`` (the previous holder, or None). Raise ``LockBusy`` otherwise."""
        mine = me()
        with flocked(self.guard):
            holder = self.read()
            taken_over = None
            if holder and holder.get("run") == run and is_my_ancestor(holder):
                return {"lock": holder, "taken_over": None, "child": True}
            if holder and not (holder.get("run") == run and same_holder(holder, mine)):
                reason = self.why_free(holder)
                if reason is None:
                    raise LockBusy(self.cluster, holder)
                taken_over = dict(holder, reason=reason)
                log.warning("leapfrog: cluster %s: taking over the lock of run %s: %s",
                            self.cluster, holder.get("run"), reason)
            now = self.clock()
            keep = holder and not taken_over and holder.get("taken_at")
            record = dict(mine, run=run, cluster=self.cluster, heartbeat=now,
                          taken_at=keep or iso(now))
            write_json(self.path, record)
        return {"lock": record, "taken_over": taken_over}

    def heartbeat(self, run):
        """Refresh the heartbeat if this process holds the lock for ``run``."""
        with flocked(self.guard):
            holder = self.read()
            if holder and holder.get("run") == run and same_holder(holder, me()):
                holder["heartbeat"] = self.clock()
                write_json(self.path, holder)
                return True
        return False

    def release(self, run):
        """Drop the lock if ``run`` holds it (from any process of that run)."""
        with flocked(self.guard):
            holder = self.read()
            if holder and holder.get("run") == run:
                os.unlink(self.path)
                return True
        return False


class Heartbeat:
    """Refreshes a held lock's heartbeat every ``every`` seconds from a daemon thread, as
    long as this process holds the lock for the run (one thread per lock and run)."""

    _running = {}
    _guard = threading.Lock()

    @classmethod
    def start(cls, lock, run, every=HEARTBEAT_EVERY):
        key = (lock.path, run)
        with cls._guard:
            thread = cls._running.get(key)
            if thread is not None and thread.is_alive():
                return thread
            stop = threading.Event()

            def beat():
                while not stop.wait(every):
                    try:
                        if not lock.heartbeat(run):
                            break
                    except OSError as exc:  # a full disk must not kill the run
                        log.warning("leapfrog: heartbeat of run %s: %s", run, exc)
                with cls._guard:
                    cls._running.pop(key, None)

            thread = threading.Thread(target=beat, name=f"leapfrog-heartbeat-{run}",
                                      daemon=True)
            thread.stop = stop
            cls._running[key] = thread
            thread.start()
            return thread

    @classmethod
    def stop(cls, lock, run):
        with cls._guard:
            thread = cls._running.pop((lock.path, run), None)
        if thread is not None:
            thread.stop.set()


class RunMismatch(leapfrog_errors.LeapfrogError):
    """A run id given to another orchestration or target than the one it was begun for."""


def check_binding(cluster, run, recorded, wanted):
    """Refuse resuming run ``run`` with an orchestration or target other than its own."""
    for key in BINDING:
        old, new = recorded.get(key), wanted.get(key)
        if old is not None and new is not None and str(old) != str(new):
            raise RunMismatch(
                f"run {run} of cluster {cluster} was begun with {key} {old}, not {new}: a run "
                f"id resumes only its own run; start a new run (leave run= out), or resume it "
                f"with {key} {old}")


# --------------------------------------------------------------------------- journal
class Journal:
    """The journal of one run of one cluster (``journal.json``)."""

    def __init__(self, root, cluster, run, clock=time.time):
        self.cluster = check_name("cluster", cluster)
        self.run = check_name("run", run)
        self.folder = os.path.join(root, cluster, run)
        self.path = os.path.join(self.folder, "journal.json")
        self.guard = os.path.join(self.folder, ".journal.flock")
        self.clock = clock

    def exists(self):
        return os.path.exists(self.path)

    def read(self):
        """The journal as a dict (None when the run has no journal yet)."""
        return read_json(self.path)

    def _empty(self):
        now = iso(self.clock())
        return {"version": 1, "cluster": self.cluster, "run": self.run, "status": "running",
                "created": now, "updated": now, "attempts": [], "steps": [],
                "approvals": {}, "meta": {}}

    @contextlib.contextmanager
    def edit(self):
        """Read-modify-write under the journal's flock; yields the data to change."""
        with flocked(self.guard):
            data = self.read() or self._empty()
            yield data
            data["updated"] = iso(self.clock())
            write_json(self.path, data)

    @staticmethod
    def find(data, step):
        for record in data["steps"]:
            if record["name"] == step:
                return record
        return None

    @classmethod
    def ensure(cls, data, step):
        record = cls.find(data, step)
        if record is None:
            record = {"name": step, "status": "pending", "attempts": 0}
            data["steps"].append(record)
        return record

    def step(self, step):
        """The record of ``step`` (None if unknown)."""
        data = self.read()
        return self.find(data, step) if data else None


def list_runs(root, cluster):
    """The runs recorded for ``cluster``, newest first: (run, journal) pairs."""
    folder = os.path.join(root, check_name("cluster", cluster))
    runs = []
    if os.path.isdir(folder):
        for name in os.listdir(folder):
            if name.startswith(".") or not os.path.isdir(os.path.join(folder, name)):
                continue
            data = read_json(os.path.join(folder, name, "journal.json"))
            if data:
                runs.append((name, data))
    runs.sort(key=lambda item: (item[1].get("created", ""), item[0]), reverse=True)
    return runs


# --------------------------------------------------------------------------- tracker
class StepFailed(leapfrog_errors.LeapfrogError):
    """A tracked step failed; the journal, the events and the lock are already updated."""


class Tracker:
    """Runs the steps of one run: journal + lock + events + progress + fault switch.

    ``fire(tag, data)`` sends an event, ``say(line)`` shows a progress line; both are
    injected (the runner passes Salt's master event bus and ``__jid_event__``).
    """

    def __init__(self, root, cluster, run, fire=None, say=None, faults=None,
                 stale_after=DEFAULT_STALE_AFTER, clock=time.time, test=False):
        self.cluster, self.run_id = cluster, run
        self.journal = Journal(root, cluster, run, clock=clock)
        self.lock = ClusterLock(root, cluster, stale_after=stale_after, clock=clock)
        self.fire_cb = fire
        self.say_cb = say
        self.faults = faults or leapfrog_fault.Faults()
        self.clock = clock
        self.test = test

    # -- outputs
    def tag(self, *parts):
        return "/".join(("leapfrog", self.cluster, self.run_id) + parts)

    def fire(self, data, *parts):
        data = leapfrog_scrub.scrub(dict(data, cluster=self.cluster, run=self.run_id))
        if self.fire_cb:
            try:
                self.fire_cb(self.tag(*parts), data)
            except Exception as exc:  # pylint: disable=broad-except
                log.warning("leapfrog: could not fire event %s: %s", self.tag(*parts), exc)

    def say(self, line):
        line = leapfrog_scrub.scrub_text(f"[{self.cluster} {self.run_id}] {line}")
        log.info("leapfrog: %s", line)
        if self.say_cb:
            try:
                self.say_cb(line)
            except Exception as exc:  # pylint: disable=broad-except
                log.debug("leapfrog: progress line not shown: %s", exc)

    def run_elapsed(self, data):
        return self.clock() - parse_iso(data["attempts"][-1]["started"]) \
            if data.get("attempts") else 0.0

    # -- run level
    def begin(self, steps=(), meta=None):
        """Lock the cluster and open (or resume) the run; returns the journal.

        ``meta`` may carry the run's binding (``orch``, ``target``): a journal begun with
        other values is refused (``RunMismatch``) before anything is written or locked."""
        for step in steps:  # a bad name refuses the run before anything is locked
            self.ensure_step_name(step)
        binding = {k: (meta or {}).get(k) for k in BINDING}
        recorded = (self.journal.read() or {}).get("meta") or {}
        check_binding(self.cluster, self.run_id, recorded, binding)
        taken = self.lock.acquire(self.run_id)
        Heartbeat.start(self.lock, self.run_id)
        resumed = self.journal.exists()
        with self.journal.edit() as data:
            check_binding(self.cluster, self.run_id, data["meta"], binding)
            previous = data["status"]
            now = iso(self.clock())
            for attempt in data["attempts"]:
                if attempt.get("status") == "running":
                    attempt["status"] = "interrupted"
            data["attempts"].append({"started": now, "status": "running",
                                     **{k: v for k, v in me().items()}})
            if taken["taken_over"]:
                data["attempts"][-1]["took_over"] = {
                    k: taken["taken_over"].get(k) for k in ("run", "pid", "host", "reason")}
            for step in steps:
                self.ensure_step_name(step)
                self.journal.ensure(data, step)
            if meta:
                data["meta"].update(meta)
            if self.faults:
                data["attempts"][-1]["faults"] = self.faults.describe()
            data["status"] = "running"
            data.pop("error", None)  # an earlier attempt's: its attempt record keeps it
            snapshot = json_safe(data)
        if taken["taken_over"]:
            self.say(f"lock taken over from run {taken['taken_over'].get('run')}: "
                     f"{taken['taken_over']['reason']}")
        if resumed:
            done = [s["name"] for s in snapshot["steps"] if s["status"] == "done"]
            nxt = next((s["name"] for s in snapshot["steps"] if s["status"] != "done"), None)
            self.say(f"resuming run (was {previous}; attempt {len(snapshot['attempts'])}): "
                     f"{len(done)} step(s) done" + (f", next: {nxt}" if nxt else ""))
        else:
            self.say(f"run started: {len(snapshot['steps'])} step(s) planned")
        self.fire({"status": "running", "attempt": len(snapshot["attempts"]),
                   "resumed": resumed}, "run", "running")
        return snapshot

    def end(self, status, error=None, release=True):
        """Close the run (``done`` or ``failed``) and release the lock (``release=False``:
        a step run side by side leaves it to the orchestration, whose other steps may
        still run; ``leapfrog.stopped`` releases it)."""
        error = leapfrog_scrub.scrub_text(error)
        with self.journal.edit() as data:
            now = self.clock()
            data["status"] = status
            if data["attempts"]:
                attempt = data["attempts"][-1]
                attempt.update(status=status, ended=iso(now))
                if error:
                    attempt["error"] = error
            if error:
                data["error"] = error
            elapsed = self.run_elapsed(data)
            snapshot = json_safe(data)
        if release:
            self.release_lock()
        self.say(f"run {status} after {clock_text(elapsed)}" + (f": {error}" if error else ""))
        self.fire({"status": status, "elapsed": round(elapsed, 3),
                   **({"error": error} if error else {})}, "run", status)
        return snapshot

    def release_lock(self):
        """Stop the heartbeat and drop the cluster's lock if this run holds it."""
        Heartbeat.stop(self.lock, self.run_id)
        return self.lock.release(self.run_id)

    @staticmethod
    def ensure_step_name(step):
        check_name("step", step)
        if step in RESERVED:
            raise leapfrog_errors.LeapfrogError(
                f"step name {step!r} is reserved ({', '.join(RESERVED)})")

    # -- steps
    def run(self, step, work, describe=None, kind=None, node=None):
        """Run ``work()`` as step ``step`` once per run.

        Returns ``(result, ran)``: the recorded result and ``ran=False`` when the step was
        done in an earlier attempt. A failure (any exception) is recorded, the run marked
        failed, the lock released and ``StepFailed`` raised with the cause.
        """
        self.ensure_step_name(step)
        record = self.journal.step(step)
        if record and record["status"] in ("done", "skipped"):
            self.say(f"step {step}: {record['status']} at {record.get('ended')} "
                     f"(attempt {record.get('attempt')}), not repeated")
            self.fire({"status": record["status"], "resumed": True}, step, "resumed")
            return record.get("result"), False
        if self.test:
            self.say(f"step {step}: would run" + (f": {describe}" if describe else ""))
            return {"test": True, "would_run": describe or step}, False
        child = self.lock.acquire(self.run_id).get("child", False)
        if not child:
            Heartbeat.start(self.lock, self.run_id)
        started = self.clock()
        with self.journal.edit() as data:
            record = self.journal.ensure(data, step)
            interrupted = record["status"] == "running"
            record.update(status="running", started=iso(started), ended=None, error=None,
                          attempts=record.get("attempts", 0) + 1,
                          attempt=len(data["attempts"]))
            record.update({k: v for k, v in (("kind", kind), ("node", node)) if v})
            if interrupted:
                record["interrupted"] = record.get("interrupted", 0) + 1
            if data["status"] != "running":
                data["status"] = "running"
            run_elapsed = self.run_elapsed(data)
        self.say(f"step {step}: started" + (f" ({describe})" if describe else "")
                 + (" again after an interrupted attempt" if interrupted else "")
                 + f" [run {clock_text(run_elapsed)}]")
        self.fire({"status": "running", "step": step, "attempt": record["attempts"]},
                  step, "running")
        try:
            self._fault(step, "start")
            result = work()
            self._fault(step, "end")
        except Exception as exc:  # pylint: disable=broad-except
            error = leapfrog_scrub.scrub_text(str(exc) or type(exc).__name__)
            self._finish(step, started, "failed", error=error)
            self.end("failed", error=f"step {step} failed: {error}", release=not child)
            raise StepFailed(f"step {step} failed: {error}") from None
        status = "skipped" if isinstance(result, dict) and result.get("skipped") else "done"
        self._finish(step, started, status, result=result)
        return json_safe(result), True

    def _fault(self, step, boundary):
        """The test-only fault switch at ``step``'s ``boundary``; a stall is noted first (a
        fault matrix waits for that note before it strikes)."""
        if self.faults.stalls(step, boundary):
            self.note(step, leapfrog_fault.STALL_NOTE.format(boundary=boundary))
        self.faults.check(step, boundary)

    def reopen(self, steps, why):
        """Make the recorded steps of ``steps`` pending again (a resume runs them), each
        noting ``why``; returns their names."""
        reopened = []
        with self.journal.edit() as data:
            for record in data["steps"]:
                if record["name"] in steps and record["status"] != "pending":
                    record.update(status="pending", ended=None)
                    record.setdefault("notes", []).append(why)
                    reopened.append(record["name"])
        for step in reopened:
            self.say(f"step {step}: {why}")
        return reopened

    def note(self, step, text):
        """Add ``text`` to the step's notes (what the report tells about its run, e.g. a
        DB node that was out)."""
        with self.journal.edit() as data:
            self.journal.ensure(data, step).setdefault("notes", []).append(text)
        self.say(f"step {step}: {text}")

    def _finish(self, step, started, status, result=None, error=None):
        ended = self.clock()
        elapsed = ended - started
        with self.journal.edit() as data:
            record = self.journal.ensure(data, step)
            record.update(status=status, ended=iso(ended), elapsed=round(elapsed, 3))
            if error is not None:
                record["error"] = error
            else:
                safe = json_safe(result)
                record["summary"] = summarize(safe)
                record["result"] = safe if len(json.dumps(safe)) <= RESULT_LIMIT \
                    else {"truncated": True, "summary": record["summary"]}
            run_elapsed = self.run_elapsed(data)
        self.lock.heartbeat(self.run_id)
        detail = f": {error}" if error else ""
        self.say(f"step {step}: {status} in {clock_text(elapsed)} "
                 f"[run {clock_text(run_elapsed)}]{detail}")
        self.fire({"status": status, "step": step, "elapsed": round(elapsed, 3),
                   **({"error": error} if error else {})}, step, status)

    def step(self, step, describe=None):
        """Decorator form of ``run``: ``@tracker.step("backup")`` wraps a function whose
        call returns the recorded result when the step was already done."""
        def wrap(func):
            def wrapper(*args, **kwargs):
                return self.run(step, lambda: func(*args, **kwargs), describe)[0]
            return wrapper
        return wrap


# --------------------------------------------------------------------------- approval
def record_approval(journal, step, by, clock=time.time):
    """Write an approval of ``step`` into the run's journal."""
    with journal.edit() as data:
        data["approvals"][step] = {"at": iso(clock()), "by": by}


def waiting_gate(journal):
    """The approval step this run is waiting on now (None if none)."""
    data = journal.read() or {}
    for record in data.get("steps", []):
        if record.get("kind") == "approval" and record.get("status") == "running":
            return record["name"]
    return None


def wait_approval(journal, step, expiry, next_event, clock=time.monotonic, poll=1.0,
                  heartbeat=None):
    """Block until ``step`` of the run is approved, or raise ``ApprovalExpired``.

    ``next_event(timeout)`` returns the data of an approval event (or None after
    ``timeout`` seconds). Only the journal counts: ``leapfrog.approve`` on the master writes
    the approval there before it fires the event, and the event only wakes this loop to read
    the journal again (an event any minion can send never opens the gate). The journal is
    re-read between events, so an approval recorded before we started listening is seen
    too. Returns the approval record.
    """
    deadline = clock() + float(expiry)
    while True:
        data = journal.read() or {}
        approval = (data.get("approvals") or {}).get(step)
        if approval:
            return approval
        left = deadline - clock()
        if left <= 0:
            raise ApprovalExpired(
                f"approval of step {step} (run {journal.run}, cluster {journal.cluster}) "
                f"expired after {float(expiry):g} s: nothing after this step ran. "
                f"Approve with: salt-run leapfrog.approve cluster={journal.cluster} "
                f"run={journal.run}, then re-run with the same run id to resume")
        event = next_event(min(poll, left))
        if heartbeat:
            heartbeat()
        if event is not None and not (journal.read() or {}).get("approvals", {}).get(step):
            log.warning("leapfrog: an approval event for run %s step %s without an approval "
                        "in the journal was ignored (only salt-run leapfrog.approve approves)",
                        journal.run, step)
