"""Availability probe: a bounded HTTP load loop that measures what users of an API would see.

N client threads send ``GET`` requests round-robin over the given URLs (the haproxy
frontends, i.e. the VIP) until ``duration`` seconds have passed or ``max_requests`` were
sent, or ``stop()`` is called — it always stops by itself. Every request is recorded (start
time, URL, status or error, latency) and ``summary()`` gives: requests, failures, the longest
outage (seconds of consecutive failures) and a per-second timeline of ok/fail counts.

Loopback only: any URL whose host is not a literal 127.0.0.0/8 (or ::1) address, or
``localhost``, is refused before a single request is sent.

    with leapfrog_probe.Probe(["http://127.0.1.100:5000/"], concurrency=8, duration=60) as probe:
        ... drain, restart, ready ...
    print(probe.summary()["failures"])

or, blocking: ``leapfrog_probe.run(urls, duration=10)`` returns the summary; or in its own
process beside a long operation: ``python -m leapfrog_probe --duration 3600 --out F.json URL...``
(stops by itself, or on SIGTERM, and writes the summary).
"""
import http.client
import ipaddress
import itertools
import os
import threading
import time
import urllib.parse

import leapfrog_errors
import leapfrog_journal

MAX_DURATION = 3600.0
MAX_CONCURRENCY = 64
MAX_REQUESTS = 1_000_000


_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


class ProbeRefused(leapfrog_errors.LeapfrogError):
    """The probe was asked to target something other than loopback, or with bad limits."""


def check_url(url):
    """Return ``(scheme, host, port, path)`` for a loopback http(s) URL; raise otherwise."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ProbeRefused(f"probe refused {url!r}: only http:// or https:// URLs")
    host = parts.hostname or ""
    if host != "localhost":
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            raise ProbeRefused(
                f"probe refused {url!r}: the host must be a loopback IP address "
                "(127.0.0.0/8 or ::1), not a name")
        if not address.is_loopback:
            raise ProbeRefused(f"probe refused {url!r}: {host} is not a loopback address; "
                               "the probe only loads 127.0.0.0/8")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ProbeRefused(f"probe refused {url!r}: bad port")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return parts.scheme, host, port, path


class Probe:
    """A bounded load loop; use as a context manager or ``start()``/``stop()``."""

    def __init__(self, urls, concurrency=4, duration=60.0, max_requests=None, timeout=5.0,
                 interval=0.0, ok_status=range(200, 400), keepalive=False):
        if isinstance(urls, str):
            urls = [urls]
        if not urls:
            raise ProbeRefused("probe needs at least one URL")
        self.targets = [(url, check_url(url)) for url in urls]
        self.concurrency = int(concurrency)
        self.duration = float(duration)
        self.max_requests = int(max_requests) if max_requests else None
        if not 1 <= self.concurrency <= MAX_CONCURRENCY:
            raise ProbeRefused(f"concurrency must be 1..{MAX_CONCURRENCY}, got {concurrency}")
        if not 0 < self.duration <= MAX_DURATION:
            raise ProbeRefused(f"duration must be in (0, {MAX_DURATION:g}] seconds, got {duration}")
        if self.max_requests is not None and not 0 < self.max_requests <= MAX_REQUESTS:
            raise ProbeRefused(f"max_requests must be 1..{MAX_REQUESTS}, got {max_requests}")
        self.timeout = float(timeout)
        self.interval = float(interval)
        self.ok_status = ok_status
        # keepalive: each client keeps its connections open between requests (as API clients
        # with a requests.Session do); otherwise one connection per request
        self.keepalive = bool(keepalive)
        self.records = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = []
        self._sent = 0
        self._next = itertools.cycle(range(len(self.targets)))
        self.started = None
        self.ended = None

    # -- running -----------------------------------------------------------------------
    def start(self):
        if self._threads:
            raise ProbeRefused("probe already started")
        self.started = time.time()
        self._t0 = time.monotonic()
        for index in range(self.concurrency):
            thread = threading.Thread(target=self._client, name=f"probe-{index}", daemon=True)
            self._threads.append(thread)
            thread.start()
        return self

    def stop(self):
        """Stop sending; wait for requests in flight (at most ``timeout``) and return summary."""
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 1.0)
        if self.ended is None:
            self.ended = time.time()
        return self.summary()

    def wait(self):
        """Block until the probe stops by itself (duration or max_requests reached)."""
        for thread in self._threads:
            thread.join()
        if self.ended is None:
            self.ended = time.time()
        return self.summary()

    @property
    def running(self):
        return any(thread.is_alive() for thread in self._threads)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _take(self):
        with self._lock:
            if self._stop.is_set():
                return None
            if time.monotonic() - self._t0 >= self.duration:
                return None
            if self.max_requests is not None and self._sent >= self.max_requests:
                return None
            self._sent += 1
            return next(self._next)

    def _client(self):
        connections = {}
        try:
            while True:
                index = self._take()
                if index is None:
                    return
                self._one(index, connections)
                if self.interval and self._stop.wait(self.interval):
                    return
        finally:
            for conn in connections.values():
                conn.close()

    def _one(self, index, connections):
        url, (scheme, host, port, path) = self.targets[index]
        began = time.time()
        t0 = time.monotonic()
        status, error = None, None
        headers = {"User-Agent": "leapfrog-probe"}
        if not self.keepalive:
            headers["Connection"] = "close"
        conn = connections.pop(index, None)
        reused = conn is not None
        while True:
            if conn is None:
                conn_class = (http.client.HTTPSConnection if scheme == "https"
                              else http.client.HTTPConnection)
                conn = conn_class(host, port, timeout=self.timeout)
            try:
                conn.request("GET", path, headers=headers)
                response = conn.getresponse()
                response.read()
                status = response.status
                if self.keepalive and not response.will_close:
                    connections[index] = conn
                    conn = None
            except _STALE as exc:
                conn.close()
                conn = None
                if reused:  # an idle kept-alive connection the proxy had closed: retry once
                    reused = False      # on a new one, as HTTP clients do (RFC 9112 9.3.1)
                    continue
                error = f"{type(exc).__name__}: {exc}"[:200]
            except Exception as exc:  # every failure is a data point, not a crash
                error = f"{type(exc).__name__}: {exc}"[:200]
            finally:
                if conn is not None and index not in connections:
                    conn.close()
            break
        latency = time.monotonic() - t0
        ok = status is not None and status in self.ok_status
        record = {"t": began, "offset": round(t0 - self._t0, 4), "url": url,
                  "status": status, "ok": ok, "latency": round(latency, 4)}
        if error:
            record["error"] = error
        with self._lock:
            self.records.append(record)

    # -- results -----------------------------------------------------------------------
    def summary(self):
        with self._lock:
            records = sorted(self.records, key=lambda r: r["offset"])
        return summarize(records, [url for url, _ in self.targets])


def _outages(records):
    """Return the runs of consecutive failures as ``(start, end, count)`` (by start time)."""
    runs, current = [], None
    for record in records:
        end = record["offset"] + record["latency"]
        if record["ok"]:
            if current:
                runs.append(tuple(current))
                current = None
        elif current is None:
            current = [record["offset"], end, 1]
        else:
            current[1] = max(current[1], end)
            current[2] += 1
    if current:
        runs.append(tuple(current))
    return runs


def summarize(records, urls=None):
    """Summarise probe records (sorted by ``offset``): counts, outages, timeline, latency."""
    failures = [r for r in records if not r["ok"]]
    runs = _outages(records)
    longest = max(runs, key=lambda run: run[1] - run[0]) if runs else None
    timeline = {}
    for record in records:
        second = int(record["offset"])
        slot = timeline.setdefault(second, {"second": second, "ok": 0, "fail": 0})
        slot["ok" if record["ok"] else "fail"] += 1
    statuses = {}
    for record in records:
        key = str(record["status"]) if record["status"] is not None else "error"
        statuses[key] = statuses.get(key, 0) + 1
    latencies = sorted(r["latency"] for r in records)

    def pct(p):
        if not latencies:
            return None
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))]

    per_url = {}
    for url in urls or sorted({r["url"] for r in records}):
        mine = [r for r in records if r["url"] == url]
        per_url[url] = {"requests": len(mine), "failures": sum(1 for r in mine if not r["ok"])}
    errors = {}
    for record in failures:
        reason = record.get("error") or f"HTTP {record['status']}"
        reason = reason.split(":")[0] if record.get("error") else reason
        errors[reason] = errors.get(reason, 0) + 1
    return {
        "requests": len(records),
        "ok": len(records) - len(failures),
        "failures": len(failures),
        "failure_rate": round(len(failures) / len(records), 4) if records else 0.0,
        "longest_outage": round(longest[1] - longest[0], 3) if longest else 0.0,
        "longest_outage_requests": longest[2] if longest else 0,
        "outages": len(runs),
        "first_failure": failures[0]["offset"] if failures else None,
        "statuses": statuses,
        "errors": errors,
        "latency": {"p50": pct(0.5), "p95": pct(0.95), "max": latencies[-1] if latencies else None},
        "per_url": per_url,
        "timeline": [timeline[s] for s in sorted(timeline)],
    }


def run(urls, concurrency=4, duration=10.0, max_requests=None, timeout=5.0, interval=0.0,
        keepalive=False):
    """Run a probe to completion (blocking) and return its summary."""
    probe = Probe(urls, concurrency=concurrency, duration=duration, max_requests=max_requests,
                  timeout=timeout, interval=interval, keepalive=keepalive)
    probe.start()
    return probe.wait()


def main(argv=None):
    """``python -m leapfrog_probe [options] URL...``: run a probe in its own process.

    Prints (or writes with ``--out``) the summary as JSON when it stops by itself or on
    SIGTERM/SIGINT — so an orchestration or a benchmark can run it beside a long operation
    and read the figure afterwards.
    """
    import argparse
    import json
    import signal

    parser = argparse.ArgumentParser(prog="python -m leapfrog_probe",
                                     description="Bounded availability probe (loopback only).")
    parser.add_argument("urls", nargs="+", metavar="URL")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--max-requests", type=int, default=None)
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--interval", type=float, default=0.05)
    parser.add_argument("--keepalive", action="store_true")
    parser.add_argument("--records", action="store_true", help="include every request")
    parser.add_argument("--out", help="write the JSON summary to this file")
    args = parser.parse_args(argv)
    try:
        probe = Probe(args.urls, concurrency=args.concurrency, duration=args.duration,
                      max_requests=args.max_requests, timeout=args.timeout,
                      interval=args.interval, keepalive=args.keepalive)
    except ProbeRefused as exc:
        parser.exit(2, f"{exc}\n")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.set())
    probe.start()
    while probe.running and not stop.wait(0.1):
        pass
    summary = probe.stop()
    summary["urls"] = args.urls
    summary["started"], summary["ended"] = probe.started, probe.ended
    if args.records:
        summary["records"] = sorted(probe.records, key=lambda r: r["offset"])
    text = json.dumps(summary, indent=2)
    if args.out:
        tmp = args.out + ".tmp"
        with leapfrog_journal.private_open(tmp) as handle:
            handle.write(text + "\n")
        os.replace(tmp, args.out)
    else:
        print(text)
    return 0


# ------------------------------------------------------------------ a run's probe process:
# started beside the run (``probe.pid`` and one ``probe-N.json`` per attempt in its folder;
# the provisioning probe the same way as ``provision``: leapfrog_provision)
def spawn(folder, name, module, args):
    """Start ``python -m module ARGS --out <folder>/<name>-N.json`` in its own session (the
    next N); nothing when the folder's ``name`` process runs. Returns ``{name: "started"|
    "running", "pid": ...}``."""
    import subprocess  # pylint: disable=import-outside-toplevel
    import sys  # pylint: disable=import-outside-toplevel

    folder = leapfrog_journal.private_dir(folder)
    pid_file = os.path.join(folder, f"{name}.pid")
    pid = leapfrog_journal.read_json(pid_file) if os.path.exists(pid_file) else None
    if pid and leapfrog_journal.holder_alive(pid):
        return {name: "running", "pid": pid["pid"]}
    count = len([f for f in os.listdir(folder) if f.startswith(f"{name}-")])
    out = os.path.join(folder, f"{name}-{count + 1}.json")
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(folder, f"{name}.log"), "ab") as log_file:
        proc = subprocess.Popen(  # pylint: disable=consider-using-with
            [sys.executable, "-m", module, "--out", out, *args], env=env, stdout=log_file,
            stderr=log_file, stdin=subprocess.DEVNULL, start_new_session=True)
    me = leapfrog_journal.me()
    leapfrog_journal.write_json(pid_file, {"pid": proc.pid, "host": me["host"], "out": out,
                                           "pid_start": leapfrog_journal.process_start(proc.pid)})
    return {name: "started", "pid": proc.pid}


def terminate(folder, name, timeout=30):
    """SIGTERM the folder's ``name`` process by its recorded PID and wait until it wrote its
    figures and exited."""
    import signal  # pylint: disable=import-outside-toplevel

    pid_file = os.path.join(folder, f"{name}.pid")
    record = leapfrog_journal.read_json(pid_file) if os.path.exists(pid_file) else None
    if record and leapfrog_journal.holder_alive(record):
        os.kill(record["pid"], signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while leapfrog_journal.holder_alive(record) and time.monotonic() < deadline:
            try:  # started by this process (same salt-run): reap it, or it stays a zombie
                os.waitpid(record["pid"], os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.2)


def start_process(folder, urls, duration=3600):
    """Start ``python -m leapfrog_probe`` on ``urls`` in its own session, its figures going
    to the next ``probe-N.json`` of ``folder``; nothing when the folder's probe runs.
    Returns ``{"probe": "started"|"running", "pid": ...}``."""
    return spawn(folder, "probe", "leapfrog_probe", ["--duration", str(duration), *urls])


def stop_process(folder, timeout=30):
    """Stop ``folder``'s probe (SIGTERM by its recorded PID; it writes its figures) and
    return the summary of every probe of the folder merged (``merged_summary``)."""
    terminate(folder, "probe", timeout)
    return merged_summary(folder)


def merged_summary(folder):
    """Merge the folder's probe files (one per attempt of a run) into one summary, or None."""
    summaries = []
    for entry in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        if entry.startswith("probe-") and entry.endswith(".json"):
            data = leapfrog_journal.read_json(os.path.join(folder, entry))
            if isinstance(data, dict):
                summaries.append(data)
    if not summaries:
        return None
    if len(summaries) == 1:
        return summaries[0]
    merged = dict(summaries[-1])
    merged["requests"] = sum(s.get("requests", 0) for s in summaries)
    merged["failures"] = sum(s.get("failures", 0) for s in summaries)
    merged["longest_outage"] = max(s.get("longest_outage", 0) for s in summaries)
    merged["timeline"] = [row for s in summaries for row in s.get("timeline") or []]
    return merged


if __name__ == "__main__":
    raise SystemExit(main())
