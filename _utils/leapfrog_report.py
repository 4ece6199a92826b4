"""The end-of-run report of an upgrade run: ``report.json``, ``report.md`` and ``timeline.svg``.

``build()`` turns a run journal (see ``leapfrog_journal``), the availability probe's summary
(see ``leapfrog_probe``) and optional facts gathered by the orchestration into one JSON-safe
dict; ``write()`` renders it into a folder; ``headline_text()`` gives the lines a terminal shows.

    report = leapfrog_report.build(journal.read(), probe=probe_summary, facts={
        "backups": [{"kind": "database", "name": "nova", "node": "dbs01", "id": "2026...",
                     "path": "/var/backups/leapfrog/mysql/2026.../nova.sql.gz",
                     "sha256": "9f2c...", "bytes": 1234, "verified": True}],
        "revisions": {"before": {"nova": "b30f573d3377"}, "after": {"nova": "13863f4e1612"}},
        "nodes": {"ctl01": {"role": "controller", "release_before": "2024.1",
                            "release": "2026.1", "oscodename": "noble", "rebuilt": True}},
    })
    paths = leapfrog_report.write(report, "/var/cache/salt/master/leapfrog/prod1/<run>")
    print(leapfrog_report.headline_text(report))

The files are 0600 in a 0700 folder. Only known fields are copied (allow-lists): step
results are short strings, dict keys whose name holds password/passwd/token/secret/key/
credential are dropped and secret shapes in free text are masked (``leapfrog_scrub``), so no
secret of a step result reaches a report file.
"""
import json
import os
import re
from xml.sax.saxutils import escape as xml_escape, quoteattr

import leapfrog_journal
import leapfrog_keystone
import leapfrog_scrub
import leapfrog_step_lines

SECRET_NAME = re.compile(r"password|passwd|token|secret|key|credential", re.I)
_XML_BAD = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
RESULT_LIMIT = 160
ERROR_LIMIT = 300
NODE_FIELDS = ("role", "release_before", "release", "oscodename_before", "oscodename",
               "osrelease", "os", "kernelrelease", "rebuilt", "note")
BACKUP_FIELDS = ("kind", "name", "node", "id", "path", "sha256", "bytes", "verified",
                 "created", "seqno", "tables", "paused_seconds")
PROBE_FIELDS = ("requests", "ok", "failures", "failure_rate", "longest_outage",
                "longest_outage_requests", "outages", "first_failure")
COLOURS = {"done": "#43a047", "failed": "#e53935", "skipped": "#9e9e9e",
           "running": "#fb8c00", "pending": "#e0e0e0"}
NOT_RECORDED = "not recorded"


# --------------------------------------------------------------------------- safe text
def scrub(text, limit=RESULT_LIMIT):
    """Free text made safe for a report: secrets masked, one line, at most ``limit`` chars.

    >>> scrub("mysql -u nova --password hunter2 (password=hunter2)")
    'mysql -u nova --password ****** (password=******)'
    """
    if text is None:
        return None
    text = leapfrog_scrub.scrub_text(" ".join(str(text).split()))
    return text if len(text) <= limit else text[:limit - 3] + "..."


def redact(value, depth=0):
    """A JSON value without dict keys that name a secret (recursively)."""
    if depth > 8:
        return "..."
    if isinstance(value, dict):
        return {str(k): redact(v, depth + 1) for k, v in value.items()
                if not SECRET_NAME.search(str(k))}
    if isinstance(value, (list, tuple)):
        return [redact(v, depth + 1) for v in value]
    if isinstance(value, str):
        return scrub(value, limit=1000)
    return value


def short_result(result, fallback=None, limit=RESULT_LIMIT):
    """One safe line for a step's result (the journal's own summary only as a fallback)."""
    if isinstance(result, dict):
        for key in ("summary", "comment", "message"):
            if isinstance(result.get(key), str):
                return scrub(result[key], limit)
    if result is not None and not (isinstance(result, dict) and result.get("truncated")):
        if isinstance(result, str):
            return scrub(result, limit)
        return scrub(json.dumps(redact(result), sort_keys=True, default=str), limit)
    return scrub(fallback, limit)


def _scalar(value, limit=200):
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return scrub(value, limit)


def _pick(source, fields):
    return {k: _scalar(source[k]) for k in fields if k in source}


# --------------------------------------------------------------------------- build
def _epoch(text):
    try:
        return leapfrog_journal.parse_iso(text) if text else None
    except (TypeError, ValueError):
        return None


def _load_journal(journal):
    if hasattr(journal, "read"):
        journal = journal.read()
    elif isinstance(journal, str):
        journal = leapfrog_journal.read_json(journal)
    return journal or {}


def _probe_summary(probe):
    """(summary dict, start epoch or None) from a summary dict or a ``leapfrog_probe.Probe``."""
    if probe is None:
        return None, None
    if hasattr(probe, "summary"):
        return probe.summary(), getattr(probe, "started", None)
    return probe, probe.get("started")


def _steps(data, t0):
    steps = []
    for record in data.get("steps") or []:
        started, ended = _epoch(record.get("started")), _epoch(record.get("ended"))
        seconds = record.get("elapsed")
        if seconds is None and started is not None and ended is not None:
            seconds = round(ended - started, 3)
        step = {"name": scrub(record.get("name"), 64), "status": record.get("status"),
                "kind": record.get("kind"), "attempts": record.get("attempts", 0),
                "started": record.get("started"), "ended": record.get("ended"),
                "seconds": seconds,
                "offset": round(started - t0, 3) if started is not None and t0 else None}
        if record.get("notes"):
            step["notes"] = [scrub(text, ERROR_LIMIT) for text in record["notes"]]
        if record.get("error"):
            step["error"] = scrub(record["error"], ERROR_LIMIT)
        elif record.get("status") in ("done", "skipped"):
            told = leapfrog_step_lines.line(record.get("kind"), record.get("node"),
                                            record.get("result"))
            step["result"] = scrub(told, RESULT_LIMIT) if told else short_result(
                record.get("result"), record.get("summary"))
        steps.append(step)
    return steps


def _checks(data):
    """Each API check of the run's verify steps (``openstack_verify``'s report under the
    minion that ran it): step, where it asked (the auth URL's host), check, result, seconds,
    reason. A rehearsal's are its throwaway controller's checks on the clones."""
    out = []
    for record in data.get("steps") or []:
        result = record.get("result")
        if record.get("kind") != "verify" or not isinstance(result, dict):
            continue
        for answer in result.values():
            if not isinstance(answer, dict) or not isinstance(answer.get("checks"), dict):
                continue
            where = leapfrog_keystone.host_of(str(answer.get("auth_url") or ""))
            for name, check in answer["checks"].items():
                if isinstance(check, dict):
                    out.append({"step": scrub(record.get("name"), 64),
                                "where": scrub(where, 64),
                                "check": scrub(name, 64), "result": scrub(check.get("result"), 8),
                                "seconds": check.get("latency"),
                                "reason": scrub(check.get("reason"), RESULT_LIMIT)})
    return out


def _backups(raw):
    """Backups as a list of allow-listed entries; ``databases``/``disks`` maps of a backup
    result (name -> {"sha256", ...}) become its ``checksums``."""
    if isinstance(raw, dict):
        raw = [dict(entry, name=entry.get("name", name)) for name, entry in raw.items()
               if isinstance(entry, dict)]
    backups = []
    for entry in raw or []:
        if not isinstance(entry, dict):
            continue
        item = _pick(entry, BACKUP_FIELDS)
        checksums = dict(entry.get("checksums") or {})
        for part in ("databases", "disks"):
            for name, info in (entry.get(part) or {}).items():
                if isinstance(info, dict) and info.get("sha256"):
                    checksums[name] = info["sha256"]
        if checksums:
            item["checksums"] = {scrub(k, 64): scrub(v, 128) for k, v in sorted(checksums.items())}
        backups.append(item)
    return backups


def _revision_text(value):
    if isinstance(value, dict):
        value = redact(value)
        return scrub(", ".join(f"{k}={v}" for k, v in sorted(value.items())), 200)
    return _scalar(value)


def _revisions(raw):
    before, after = raw.get("before") or {}, raw.get("after") or {}
    return [{"database": scrub(db, 64),
             "before": _revision_text(before.get(db)) if db in before else NOT_RECORDED,
             "after": _revision_text(after.get(db)) if db in after else NOT_RECORDED}
            for db in sorted(set(before) | set(after), key=str)]


def _windows(timeline):
    """Runs of seconds with failed requests: ``[{"from", "to", "failed"}]`` (to exclusive)."""
    windows = []
    for slot in timeline:
        if not slot["fail"]:
            continue
        if windows and abs(slot["t"] - windows[-1]["to"]) < 0.01:
            windows[-1]["to"] = round(slot["t"] + 1, 3)
            windows[-1]["failed"] += slot["fail"]
        else:
            windows.append({"from": slot["t"], "to": round(slot["t"] + 1, 3),
                            "failed": slot["fail"]})
    return windows


def _availability(summary, probe_start, t0):
    available = {k: summary[k] for k in PROBE_FIELDS
                 if isinstance(summary.get(k), (int, float)) and not isinstance(summary[k], bool)}
    shift = round(probe_start - t0, 3) if probe_start and t0 else 0.0
    available["aligned"] = bool(probe_start and t0)
    available["offset"] = shift
    latency = summary.get("latency") or {}
    available["latency"] = {k: latency.get(k) for k in ("p50", "p95", "max")
                            if isinstance(latency.get(k), (int, float))}
    available["statuses"] = {scrub(k, 20): int(v) for k, v in
                             (summary.get("statuses") or {}).items()}
    available["errors"] = {scrub(k, 80): int(v) for k, v in
                           (summary.get("errors") or {}).items()}
    available["per_url"] = {scrub(url, 200): _pick(v, ("requests", "failures"))
                            for url, v in (summary.get("per_url") or {}).items()
                            if isinstance(v, dict)}
    available["timeline"] = [{"t": round(shift + int(s.get("second", 0)), 3),
                              "ok": int(s.get("ok", 0)), "fail": int(s.get("fail", 0))}
                             for s in summary.get("timeline") or [] if isinstance(s, dict)]
    available["outage_windows"] = _windows(available["timeline"])
    return available


def _rebuilt(facts, nodes, steps):
    if isinstance(facts.get("rebuilt"), (list, tuple)):
        return len(facts["rebuilt"])
    if any("rebuilt" in n for n in nodes.values()):
        return sum(1 for n in nodes.values() if n.get("rebuilt"))
    return sum(1 for s in steps if s.get("kind") == "rebuild" and s["status"] == "done")


def _provisioning(summary):
    """The provisioning probe's figures (leapfrog_provision.summarize), its records left
    out, its failures' texts scrubbed."""
    out = {key: summary.get(key) for key in ("cycles", "failed", "success_rate")}
    out["kinds"] = {scrub(kind, 32): _pick(part, ("cycles", "failed", "slowest"))
                    for kind, part in sorted((summary.get("kinds") or {}).items())
                    if isinstance(part, dict)}
    out["failures"] = [{"kind": scrub(f.get("kind"), 32), "at": f.get("at"),
                        "error": scrub(f.get("error"), ERROR_LIMIT)}
                       for f in summary.get("failures") or [] if isinstance(f, dict)]
    return out


def closing(data, step="report"):
    """The journal as the run's own report step sees it: the run is done once every other
    step is done or skipped (``leapfrog.finish`` marks the journal so a moment after the
    report is written), the report step with it. A run with a step failed, pending or
    still running elsewhere is left as it is.

    >>> closing({"status": "running", "steps": [{"name": "a", "status": "done"},
    ...          {"name": "report", "status": "running"}]})["status"]
    'done'
    """
    steps = data.get("steps") or []
    others = [s for s in steps if s.get("name") != step]
    if data.get("status") != "running" or len(others) == len(steps) or \
            any(s.get("status") not in ("done", "skipped") for s in others):
        return data
    return dict(data, status="done", steps=[dict(s, status="done") if s.get("name") == step
                                            else s for s in steps])


def build(journal, probe=None, facts=None, provision=None):
    """The report of one run as a JSON-safe dict.

    ``journal``: the journal data (``Journal.read()``), a ``Journal`` or a journal.json path.
    ``probe``: a ``leapfrog_probe`` summary (its ``started`` epoch, as ``python -m
    leapfrog_probe`` writes it, aligns it with the steps; else it is taken to start with the
    run) or a ``Probe``. ``facts`` (all optional): ``backups``, ``revisions``, ``nodes``,
    ``rebuilt`` (see the module docstring). ``provision``: the provisioning probe's summary
    (``leapfrog_provision``). Missing parts are left out, never guessed.

    >>> report = build({"cluster": "lab", "run": "r1", "status": "done", "steps": []})
    >>> report["headline"]["status"]
    'done'
    """
    data = _load_journal(journal)
    facts = facts or {}
    attempts = data.get("attempts") or []
    t0 = _epoch(attempts[0].get("started")) if attempts else None
    t0 = t0 or _epoch(data.get("created"))
    ends = [_epoch(a.get("ended")) for a in attempts]
    ends += [_epoch(s.get("ended")) for s in data.get("steps") or []]
    t1 = max([e for e in ends if e] or [_epoch(data.get("updated")) or 0]) or None
    steps = _steps(data, t0)
    report = {
        "version": 1,
        "run": scrub(data.get("run"), 64), "cluster": scrub(data.get("cluster"), 64),
        "orchestration": scrub((data.get("meta") or {}).get("orch"), 128),
        "status": data.get("status", "unknown"),
        "started": leapfrog_journal.iso(t0) if t0 else None,
        "ended": leapfrog_journal.iso(t1) if t1 and data.get("status") != "running" else None,
        "seconds": round(t1 - t0, 3) if t0 and t1 else None,
        "attempts": len(attempts),
        "steps": steps,
    }
    if data.get("error"):
        report["error"] = scrub(data["error"], ERROR_LIMIT)
    approvals = data.get("approvals") or {}
    if approvals:
        report["approvals"] = [{"step": scrub(step, 64), "at": scrub(a.get("at"), 40),
                                "by": scrub(a.get("by"), 64)}
                               for step, a in sorted(approvals.items()) if isinstance(a, dict)]
    checks = _checks(data)
    if checks:
        report["checks"] = checks
    if facts.get("backups"):
        report["backups"] = _backups(facts["backups"])
    if isinstance(facts.get("revisions"), dict):
        report["revisions"] = _revisions(facts["revisions"])
    nodes = {}
    if isinstance(facts.get("nodes"), dict):
        nodes = {scrub(name, 64): _pick(info, NODE_FIELDS)
                 for name, info in sorted(facts["nodes"].items()) if isinstance(info, dict)}
        report["nodes"] = nodes
    summary, probe_start = _probe_summary(probe)
    if summary:
        report["availability"] = _availability(summary, probe_start, t0)
    if isinstance(provision, dict) and provision.get("cycles"):
        report["provisioning"] = _provisioning(provision)
    counts = {}
    for step in steps:
        counts[step["status"]] = counts.get(step["status"], 0) + 1
    available = report.get("availability") or {}
    backups = report.get("backups") or []
    report["headline"] = {
        "status": report["status"],
        "seconds": report["seconds"],
        "steps": len(steps),
        "steps_by_status": counts,
        "requests": available.get("requests"),
        "failed_requests": available.get("failures"),
        "failed_by": available.get("errors") or {},
        "failure_rate": available.get("failure_rate"),
        "longest_outage": available.get("longest_outage"),
        "controllers_rebuilt": _rebuilt(facts, nodes, steps),
        "backups": len(backups),
        "backups_verified": sum(1 for b in backups if b.get("verified") is True),
        **{f"provisioning_{key}": (report.get("provisioning") or {}).get(key)
           for key in ("cycles", "failed", "success_rate")},
    }
    return leapfrog_journal.json_safe(report)


# --------------------------------------------------------------------------- text
def _clock(seconds):
    return leapfrog_journal.clock_text(seconds) if isinstance(seconds, (int, float)) else "-"


def _pct(rate):
    return f"{rate * 100:.2f} %" if isinstance(rate, (int, float)) else "-"


def headline_text(report):
    """A few lines for the terminal: status, time, failed requests, outage, report path.

    >>> print(headline_text({"run": "r1", "cluster": "lab", "headline": {"status": "done"}}))
    ... # doctest: +ELLIPSIS
    run r1 on lab: done ...
    """
    head = report.get("headline") or {}
    counts = head.get("steps_by_status") or {}
    lines = [f"run {report.get('run')} on {report.get('cluster')}: {head.get('status')} "
             f"after {_clock(head.get('seconds'))} "
             f"({', '.join(f'{n} {s}' for s, n in sorted(counts.items())) or 'no steps'})"]
    if head.get("requests") is not None:
        lines.append(f"API through the VIP: {head.get('failed_requests')} failed of "
                     f"{head.get('requests')} requests ({_pct(head.get('failure_rate'))}), "
                     f"longest outage {head.get('longest_outage') or 0:.1f} s")
        if head.get("failed_requests") and head.get("failed_by"):
            lines.append("failed requests: " + ", ".join(
                f"{reason} x{n}" for reason, n in sorted(head["failed_by"].items())))
    else:
        lines.append(f"API through the VIP: {NOT_RECORDED}")
    provisioning = report.get("provisioning") or {}
    if provisioning.get("cycles"):
        kinds = ", ".join(f"{kind} {p['cycles'] - p['failed']}/{p['cycles']}"
                          for kind, p in provisioning["kinds"].items())
        lines.append(f"provisioning during the run: {provisioning['cycles'] - provisioning['failed']}"
                     f" of {provisioning['cycles']} cycles succeeded "
                     f"({provisioning['success_rate']} %): {kinds}")
    if report.get("error"):
        lines.append(f"error: {report['error']}")
    files = report.get("files") or {}
    if files.get("markdown"):
        lines.append(f"report: {files['markdown']} (timeline: {files.get('svg')})")
    return "\n".join(lines)


def md(value):
    """Text safe inside a markdown table cell (no HTML, no markup, one line)."""
    if value is None:
        return "-"
    text = " ".join(str(value).split())
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = re.sub(r"([\\`*\[\]|~])", r"\\\1", text)
    return re.sub(r"(?<!\w)_|_(?!\w)", r"\\_", text)  # snake_case stays readable


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(md(c) for c in row) + " |" for row in rows]
    return lines


def _offset(seconds):
    return f"+{_clock(seconds)}" if isinstance(seconds, (int, float)) else "-"


def markdown(report):
    """The report as markdown (what ``report.md`` holds)."""
    head = report.get("headline") or {}
    counts = head.get("steps_by_status") or {}
    out = [f"# leapfrog run {md(report.get('run'))} on {md(report.get('cluster'))}: "
           f"{md(str(report.get('status')).upper())}", ""]
    rows = [("Orchestration", report.get("orchestration") or NOT_RECORDED),
            ("Status", report.get("status")),
            ("Started", report.get("started")), ("Ended", report.get("ended")),
            ("Total time", _clock(head.get("seconds"))),
            ("Attempts", report.get("attempts")),
            ("Steps", ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none")]
    if head.get("requests") is not None:
        rows += [("API requests through the VIP", f"{head['requests']}, "
                  f"{head.get('failed_requests')} failed ({_pct(head.get('failure_rate'))})"),
                 ("Longest outage", f"{head.get('longest_outage') or 0:.3f} s")]
    else:
        rows.append(("API availability", NOT_RECORDED))
    rows.append(("Controllers rebuilt", head.get("controllers_rebuilt")))
    if "backups" in report:
        rows.append(("Backups verified",
                     f"{head.get('backups_verified')} of {head.get('backups')}"))
    out += _table(("Headline", "Value"), rows)
    if report.get("error"):
        out += ["", f"**Error:** {md(report['error'])}"]

    out += ["", "## Steps", ""]
    out += _table(("#", "Step", "Status", "Start", "Seconds", "Attempts", "Result or error"),
                  [(i, s["name"] + (f" ({s['kind']})" if s.get("kind") else ""), s["status"],
                    _offset(s.get("offset")),
                    f"{s['seconds']:.1f}" if isinstance(s.get("seconds"), (int, float)) else "-",
                    s.get("attempts"), s.get("error") or s.get("result") or "")
                   for i, s in enumerate(report.get("steps") or [], 1)])
    noted = [(s["name"], text) for s in report.get("steps") or []
             for text in s.get("notes") or []]
    if noted:
        out += ["", "## Notes", ""]
        out += _table(("Step", "Note"), noted)
    if report.get("approvals"):
        out += ["", "## Approvals", ""]
        out += _table(("Step", "Approved at", "By"),
                      [(a["step"], a["at"], a["by"]) for a in report["approvals"]])

    out += ["", "## Backups", ""]
    if report.get("backups"):
        rows = []
        for b in report["backups"]:
            sums = [f"{k}: {v}" for k, v in (b.get("checksums") or {}).items()]
            if b.get("sha256"):
                sums.insert(0, b["sha256"])
            verified = {True: "yes", False: "NO"}.get(b.get("verified"), NOT_RECORDED)
            rows.append((b.get("kind"), b.get("name"), b.get("node"), b.get("id"),
                         b.get("path"), "; ".join(sums) or NOT_RECORDED, verified))
        out += _table(("Kind", "Name", "Node", "Id", "Path", "sha256", "Verified"), rows)
    else:
        out.append(f"Backups: {NOT_RECORDED}.")

    out += ["", "## Database revisions", ""]
    if report.get("revisions"):
        out += _table(("Database", "Before", "After"),
                      [(r["database"], r["before"], r["after"]) for r in report["revisions"]])
    else:
        out.append(f"Revisions: {NOT_RECORDED}.")

    out += ["", "## Versions per node", ""]
    if report.get("nodes"):
        fields = [f for f in NODE_FIELDS if any(f in n for n in report["nodes"].values())]
        out += _table(["Node"] + [f.replace("_", " ") for f in fields],
                      [[name] + [info.get(f, "-") for f in fields]
                       for name, info in report["nodes"].items()])
    else:
        out.append(f"Versions: {NOT_RECORDED}.")

    out += ["", "## API availability through the VIP", ""]
    available = report.get("availability")
    if available:
        latency = available.get("latency") or {}
        rows = [("Requests", available.get("requests")), ("Failed", available.get("failures")),
                ("Failure rate", _pct(available.get("failure_rate"))),
                ("Longest outage", f"{available.get('longest_outage') or 0:.3f} s "
                 f"({available.get('longest_outage_requests') or 0} requests)"),
                ("Outages", available.get("outages")),
                ("Latency p50 / p95 / max", " / ".join(
                    f"{latency[k] * 1000:.0f} ms" if k in latency else "-"
                    for k in ("p50", "p95", "max")))]
        rows += [(f"Seconds with failures {_offset(w['from'])} to {_offset(w['to'])}",
                  f"{w['failed']} failed") for w in available.get("outage_windows") or []]
        rows += [(f"URL {url}", f"{v.get('requests')} requests, {v.get('failures')} failed")
                 for url, v in (available.get("per_url") or {}).items()]
        rows += [(f"Error {name}", n)
                 for name, n in sorted((available.get("errors") or {}).items())]
        out += _table(("Probe", "Value"), rows)
        if not available.get("aligned"):
            out += ["", "(The probe's start time was not recorded: its timeline is drawn "
                        "from the start of the run.)"]
    else:
        out.append(f"Availability: {NOT_RECORDED}.")
    if report.get("checks"):
        out += ["", "## API checks", ""]
        out += _table(("Step", "Asked at", "Check", "Result", "Seconds", "Reason"),
                      [(c["step"], c["where"], c["check"], c["result"],
                        f"{c['seconds']:.3f}" if isinstance(c["seconds"], (int, float))
                        else "-", c["reason"]) for c in report["checks"]])
    provisioning = report.get("provisioning")
    if provisioning:
        out += ["", "## Provisioning during the run", ""]
        rows = [("Cycles", provisioning["cycles"]), ("Failed", provisioning["failed"]),
                ("Success rate", f"{provisioning['success_rate']} %")]
        rows += [(f"{kind} cycles", f"{p['cycles'] - p['failed']} of {p['cycles']} "
                                    f"succeeded, slowest {p['slowest']:.1f} s")
                 for kind, p in provisioning["kinds"].items()]
        rows += [(f"Failed {f['kind']} at {leapfrog_journal.iso(f['at']) if f['at'] else '-'}",
                  f["error"]) for f in provisioning["failures"]]
        out += _table(("Provisioning", "Value"), rows)
    out += ["", "## Timeline", "", "![timeline of steps and API availability](timeline.svg)", ""]
    return "\n".join(out)


# --------------------------------------------------------------------------- svg
def _x(text):
    return xml_escape(_XML_BAD.sub("?", str(text)))


def _attr(text):
    """A quoted XML attribute value."""
    return quoteattr(_XML_BAD.sub("?", str(text)))


def _tick(span):
    for step in (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200):
        if span / step <= 10:
            return step
    return 14400


def svg(report, timeline=None, width=1000):
    """The timeline picture: one bar per step that ran (row per step, coloured by status) and
    below, on the same axis, requests per second through the VIP (ok green, failed red) with
    the seconds that had failures marked in red across both parts."""
    steps = report.get("steps") or []
    available = report.get("availability") or {}
    timeline = (available.get("timeline") or []) if timeline is None else timeline
    windows = _windows(timeline)
    ends = [report.get("seconds") or 0]
    ends += [(s["offset"] or 0) + (s["seconds"] or 0) for s in steps
             if s.get("offset") is not None and s.get("seconds") is not None]
    ends += [slot["t"] + 1 for slot in timeline]
    span = max(ends + [1.0])
    left, right, top, row = 220, 20, 44, 20
    plot = width - left - right
    steps_h = max(1, len(steps)) * row
    band_top = top + steps_h + 30
    band_h = 90 if timeline else 0
    axis_y = band_top + band_h + 10 if timeline else top + steps_h + 10
    height = axis_y + 60

    def xpos(t):
        return left + plot * max(0.0, min(t, span)) / span

    title = (f"leapfrog run {report.get('run')} on {report.get('cluster')}: "
             f"{report.get('status')}, {_clock(report.get('seconds'))}")
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
           f"<title>{_x(title)}</title>",
           f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
           f'<text x="10" y="22" font-size="15" font-weight="bold">{_x(title)}</text>']
    for w in windows:
        x0, x1 = xpos(w["from"]), xpos(w["to"])
        tip = f"{_offset(w['from'])} to {_offset(w['to'])}: {w['failed']} failed requests"
        out.append(f'<rect class="outage" x="{x0:.1f}" y="{top - 4}" '
                   f'width="{max(1.0, x1 - x0):.1f}" height="{axis_y - top + 4}" '
                   f'fill="#e53935" fill-opacity="0.15"><title>{_x(tip)}</title></rect>')
    for i, step in enumerate(steps):
        y = top + i * row
        label = step["name"] if len(step["name"]) <= 30 else step["name"][:29] + "…"
        out.append(f'<text x="{left - 8}" y="{y + 14}" text-anchor="end">{_x(label)}</text>')
        if step.get("offset") is None:
            out.append(f'<text class="not-run" x="{left + 4}" y="{y + 14}" fill="#757575">'
                       f"{_x(step['status'])} (not run)</text>")
            continue
        seconds = step.get("seconds")
        if seconds is None and step["status"] == "running":
            seconds = span - step["offset"]  # still running: up to the end of the picture
        x0 = xpos(step["offset"])
        x1 = xpos(step["offset"] + (seconds or 0))
        colour = COLOURS.get(step["status"], "#757575")
        tip = f"{step['name']}: {step['status']}, {_clock(step.get('seconds'))}"
        if step.get("error"):
            tip += f": {step['error']}"
        out.append(f'<rect class={_attr("bar " + str(step["status"]))} '
                   f'data-step={_attr(step["name"])} '
                   f'x="{x0:.1f}" y="{y + 3}" width="{max(2.0, x1 - x0):.1f}" height="{row - 6}" '
                   f'fill="{colour}"><title>{_x(tip)}</title></rect>')
        duration = _clock(step.get("seconds"))
        if x1 + 60 < width:
            out.append(f'<text x="{max(x1, x0 + 2) + 4:.1f}" y="{y + 14}" fill="#616161" '
                       f'font-size="10">{_x(duration)}</text>')
        else:
            out.append(f'<text x="{x0 - 4:.1f}" y="{y + 14}" fill="#616161" font-size="10" '
                       f'text-anchor="end">{_x(duration)}</text>')
    if timeline:
        peak = max(max(s["ok"] + s["fail"] for s in timeline), 1)
        base = band_top + band_h
        out.append(f'<text x="{left - 8}" y="{band_top + band_h / 2:.0f}" text-anchor="end">'
                   f"API via VIP (req/s)</text>")
        out.append(f'<text x="{left - 8}" y="{band_top + band_h / 2 + 14:.0f}" '
                   f'text-anchor="end" fill="#757575">peak {peak}</text>')
        out.append(f'<line x1="{left}" y1="{band_top}" x2="{left + plot}" y2="{band_top}" '
                   f'stroke="#eeeeee"/>')
        out.append('<g class="availability" shape-rendering="crispEdges">')
        for slot in timeline:
            x0, x1 = xpos(slot["t"]), xpos(slot["t"] + 1)
            w = x1 - x0 - 0.5 if x1 - x0 > 4 else x1 - x0 + 0.3  # thin columns: no seams
            ok_h = band_h * slot["ok"] / peak
            fail_h = band_h * slot["fail"] / peak
            if slot["ok"]:
                out.append(f'<rect class="ok" x="{x0:.1f}" y="{base - ok_h:.1f}" width="{w:.1f}" '
                           f'height="{ok_h:.1f}" fill="#43a047"/>')
            if slot["fail"]:
                out.append(f'<rect class="fail" x="{x0:.1f}" y="{base - ok_h - fail_h:.1f}" '
                           f'width="{w:.1f}" height="{fail_h:.1f}" fill="#e53935">'
                           f"<title>{_x(_offset(slot['t']))}: {slot['fail']} failed, "
                           f"{slot['ok']} ok</title></rect>")
        out.append("</g>")
    # time axis
    out.append(f'<line x1="{left}" y1="{axis_y}" x2="{left + plot}" y2="{axis_y}" '
               f'stroke="#424242"/>')
    step, index = _tick(span), 0
    while index * step <= span + 1e-9:
        t = round(index * step, 3)
        x = xpos(t)
        out.append(f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{axis_y + 4}" '
                   f'stroke="#bdbdbd" stroke-dasharray="2,3"/>')
        out.append(f'<text x="{x:.1f}" y="{axis_y + 18}" text-anchor="middle">{t:g}</text>')
        index += 1
    out.append(f'<text x="{left + plot / 2:.0f}" y="{axis_y + 36}" text-anchor="middle">'
               f"seconds since the run started</text>")
    legend_x = 10
    for name in ("done", "failed", "skipped", "running"):
        out.append(f'<rect x="{legend_x}" y="{height - 16}" width="10" height="10" '
                   f'fill="{COLOURS[name]}"/><text x="{legend_x + 14}" y="{height - 7}">'
                   f"{name}</text>")
        legend_x += 80
    out.append(f'<rect x="{legend_x}" y="{height - 16}" width="10" height="10" fill="#e53935" '
               f'fill-opacity="0.3"/><text x="{legend_x + 14}" y="{height - 7}">'
               f"seconds with failed API requests</text>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- files
def _write_text(path, text):
    tmp = f"{path}.tmp.{os.getpid()}"
    with leapfrog_journal.private_open(tmp) as handle:
        handle.write(text)
    os.replace(tmp, path)


def write(report, directory, timeline=None):
    """Write ``report.json``, ``report.md`` and ``timeline.svg`` into ``directory``.

    ``timeline``: per-second ``[{"t", "ok", "fail"}]`` (seconds since the run started) to
    draw instead of the report's own probe timeline. The paths are stored in
    ``report["files"]`` and returned: ``{"json": ..., "markdown": ..., "svg": ...}``.

    >>> paths = write(build(journal_data), "/var/cache/salt/master/leapfrog/lab/r1")
    ... # doctest: +SKIP
    """
    leapfrog_journal.private_dir(directory)
    paths = {"json": os.path.join(directory, "report.json"),
             "markdown": os.path.join(directory, "report.md"),
             "svg": os.path.join(directory, "timeline.svg")}
    report["files"] = paths
    _write_text(paths["svg"], svg(report, timeline))
    _write_text(paths["markdown"], markdown(report))
    leapfrog_journal.write_json(paths["json"], report)
    return dict(paths)
