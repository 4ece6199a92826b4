"""The end-of-run report: built from a real journal (Tracker) and a real probe run against a
local HTTP server that goes down for a moment, as an operator would read it."""
import http.server
import json
import re
import threading
import time
import xml.etree.ElementTree as ET

import pytest

import leapfrog_journal as lj
import leapfrog_probe
import leapfrog_report

SECRET = "Sup3rS3cret!"
STEPS = ["backup", "drain", "restart", "approve_gate", "noop", "ready", "verify"]
SVG = "{http://www.w3.org/2000/svg}"


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        code = 503 if self.server.down.is_set() else 200
        body = b"down" if code == 503 else b"ok"
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def api():
    """A tiny API on 127.0.0.1 that answers 503 while ``server.down`` is set."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.down = threading.Event()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture(scope="module")
def upgrade(api, tmp_path_factory):
    """A run of six planned steps with the probe loading the API meanwhile: the API is down
    during ``restart``, ``noop`` is skipped, ``ready`` fails, ``verify`` never runs."""
    root = str(tmp_path_factory.mktemp("journal"))
    tracker = lj.Tracker(root, "lab", "20260101-000000-abcd")
    url = f"http://127.0.0.1:{api.server_port}/v3"
    probe = leapfrog_probe.Probe([url], concurrency=2, duration=30, interval=0.02, timeout=2)
    probe.start()
    try:
        tracker.begin(STEPS, meta={"orch": "orch.upgrade_control_plane"})
        tracker.run("backup", lambda: {"user": "nova", "db_password": SECRET, "rows": 3})

        def drain():
            time.sleep(0.3)
            return {"comment": "ctl01 drained | 0 sessions <left>"}
        tracker.run("drain", drain)

        def restart():
            api.down.set()
            time.sleep(0.8)
            api.down.clear()
            time.sleep(0.2)
            return {"comment": "ctl01 restarted"}
        tracker.run("restart", restart)
        lj.record_approval(tracker.journal, "approve_gate", by="alice")
        tracker.run("approve_gate", lambda: {"comment": "approved by alice"}, kind="approval")
        tracker.run("noop", lambda: {"skipped": True, "comment": "nothing to do"})

        def ready():
            time.sleep(0.1)
            raise RuntimeError(f"backend not ready <b>&amp; password={SECRET} "
                               f"(mysql://nova:{SECRET}@127.0.0.1/nova)")
        with pytest.raises(lj.StepFailed):
            tracker.run("ready", ready)
    finally:
        summary = dict(probe.stop(), started=probe.started)
    journal = tracker.journal.read()
    assert SECRET not in json.dumps(journal)  # the journal scrubs what it records ...
    # ... and the report scrubs again: a journal written before that, with the secrets in
    journal["steps"][0]["result"]["db_password"] = SECRET
    failed = next(s for s in journal["steps"] if s["name"] == "ready")
    failed["error"] = (f"backend not ready <b>&amp; password={SECRET} "
                       f"(mysql://nova:{SECRET}@127.0.0.1/nova)")
    assert SECRET in json.dumps(journal)
    return journal, summary


FACTS = {
    "backups": [
        {"kind": "database", "name": "nova", "node": "dbs01", "id": "20260101T000001.000Z",
         "path": "/var/backups/leapfrog/mysql/20260101T000001.000Z/nova.sql.gz",
         "sha256": "a" * 64, "bytes": 1234, "verified": True, "password": SECRET},
        {"kind": "disk", "name": "ctl01", "node": "kvm01", "id": "ctl01-20260101",
         "path": "/var/backups/leapfrog/vm/ctl01-20260101",
         "disks": {"vda": {"sha256": "b" * 64, "bytes": 10}}, "verified": False},
    ],
    "revisions": {"before": {"nova": "b30f573d3377", "nova_api": {"api_db": 5, "token": SECRET}},
                  "after": {"nova": "13863f4e1612"}},
    "nodes": {"ctl01": {"release_before": "2024.1", "release": "2026.1",
                        "oscodename": "noble", "rebuilt": True, "admin_token": SECRET},
              "ctl02": {"release": "2024.1", "oscodename": "jammy", "rebuilt": False}},
}


@pytest.fixture(scope="module")
def written(upgrade, tmp_path_factory):
    journal, summary = upgrade
    report = leapfrog_report.build(journal, probe=summary, facts=FACTS)
    folder = str(tmp_path_factory.mktemp("report"))
    paths = leapfrog_report.write(report, folder)
    return report, paths, summary


def cells(line):
    """The cells of a markdown table row, unescaped as a reader sees them."""
    return [re.sub(r"\\(.)", r"\1", c.strip()) for c in re.split(r"(?<!\\)\|", line)[1:-1]]


def section(text, title):
    body = text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    return [cells(line) for line in body.splitlines() if line.startswith("|")][2:]


def test_the_markdown_lists_the_steps_in_order_with_their_status(written):
    report, paths, _ = written
    text = open(paths["markdown"], encoding="utf-8").read()
    rows = section(text, "Steps")
    assert [r[1].split(" ")[0] for r in rows] == STEPS
    assert [r[2] for r in rows] == ["done", "done", "done", "done", "skipped", "failed",
                                    "pending"]
    assert all(len(r) == 7 for r in rows)  # a "|" in a result did not break the table
    assert "approve_gate (approval)" in [r[1] for r in rows]
    assert "backend not ready &lt;b&gt;" in rows[5][6]
    restart = rows[2]
    assert float(restart[4]) >= 1.0
    assert text.startswith("# leapfrog run 20260101-000000-abcd on lab: FAILED")
    assert "**Error:** step ready failed" in text


def test_failed_requests_are_the_probes_and_the_outage_is_during_the_restart(written):
    report, paths, summary = written
    assert summary["failures"] > 0
    head = report["headline"]
    assert head["failed_requests"] == summary["failures"] == report["availability"]["failures"]
    assert head["requests"] == summary["requests"]
    assert head["longest_outage"] == summary["longest_outage"] > 0.3
    text = open(paths["markdown"], encoding="utf-8").read()
    assert f"{summary['requests']}, {summary['failures']} failed" in text
    windows = report["availability"]["outage_windows"]
    assert sum(w["failed"] for w in windows) == summary["failures"]
    restart = next(s for s in report["steps"] if s["name"] == "restart")
    begin, end = restart["offset"], restart["offset"] + restart["seconds"]
    assert any(w["from"] < end and w["to"] > begin for w in windows)


def test_the_svg_parses_with_one_bar_per_step_that_ran_and_the_outages_marked(written):
    report, paths, _ = written
    root = ET.parse(paths["svg"]).getroot()
    rects = root.iter(f"{SVG}rect")
    bars = [r for r in root.iter(f"{SVG}rect") if r.get("class", "").startswith("bar ")]
    ran = [s for s in report["steps"] if s["started"]]
    assert [b.get("data-step") for b in bars] == [s["name"] for s in ran] == STEPS[:-1]
    assert [b.get("class") for b in bars][-2:] == ["bar skipped", "bar failed"]
    xs = [float(b.get("x")) for b in bars]
    assert xs == sorted(xs)
    outages = [r for r in rects if r.get("class") == "outage"]
    assert len(outages) == len(report["availability"]["outage_windows"]) >= 1
    fails = [r for r in root.iter(f"{SVG}rect") if r.get("class") == "fail"]
    assert len(fails) == sum(1 for s in report["availability"]["timeline"] if s["fail"])
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "verify" in texts and "pending (not run)" in texts
    assert "seconds since the run started" in texts
    title = next(root.iter(f"{SVG}title")).text
    assert title.startswith("leapfrog run 20260101-000000-abcd on lab: failed")


def test_json_round_trips_and_the_headline_names_the_report(written):
    report, paths, summary = written
    assert json.load(open(paths["json"], encoding="utf-8")) == report
    assert report["files"] == paths
    line = leapfrog_report.headline_text(report)
    assert paths["markdown"] in line and "failed after" in line
    assert f"{summary['failures']} failed of {summary['requests']} requests" in line
    # what failed, in the terminal too (the probe's errors: HTTP status or exception name)
    assert report["headline"]["failed_by"] == report["availability"]["errors"] != {}
    assert "failed requests: " + ", ".join(
        f"{k} x{n}" for k, n in sorted(report["availability"]["errors"].items())) in line
    assert report["headline"]["controllers_rebuilt"] == 1
    assert report["headline"]["backups"] == 2 and report["headline"]["backups_verified"] == 1
    assert report["approvals"] == [{"step": "approve_gate", "at": report["approvals"][0]["at"],
                                    "by": "alice"}]


def test_backups_revisions_and_versions_are_in_the_markdown(written):
    _, paths, _ = written
    text = open(paths["markdown"], encoding="utf-8").read()
    backups = section(text, "Backups")
    assert backups[0][1] == "nova" and backups[0][5] == "a" * 64 and backups[0][6] == "yes"
    assert backups[1][5] == "vda: " + "b" * 64 and backups[1][6] == "NO"
    revisions = section(text, "Database revisions")
    assert revisions == [["nova", "b30f573d3377", "13863f4e1612"],
                         ["nova_api", "api_db=5", "not recorded"]]
    nodes = section(text, "Versions per node")
    assert nodes[0][:3] == ["ctl01", "2024.1", "2026.1"]


def test_no_secret_from_a_result_error_or_fact_reaches_any_file(written):
    report, paths, _ = written
    for path in paths.values():
        assert SECRET not in open(path, encoding="utf-8").read(), path
    assert SECRET not in leapfrog_report.headline_text(report)
    backup = next(s for s in report["steps"] if s["name"] == "backup")
    assert backup["result"] == '{"rows": 3, "user": "nova"}'


def test_missing_facts_and_probe_do_not_crash(upgrade, tmp_path):
    journal, _ = upgrade
    for report in (leapfrog_report.build(journal),
                   leapfrog_report.build({}, facts={"backups": None, "revisions": {}}),
                   leapfrog_report.build(journal, probe={"requests": 0, "timeline": []},
                                         facts={"nodes": {"ctl01": "oops"}}),
                   leapfrog_report.build(journal, probe={"requests": "x", "timeline": [
                       1, {"second": 0, "ok": 1, "fail": 1}]})):
        paths = leapfrog_report.write(report, str(tmp_path / str(id(report))))
        text = open(paths["markdown"], encoding="utf-8").read()
        assert "not recorded" in text
        ET.parse(paths["svg"])
        assert json.load(open(paths["json"], encoding="utf-8")) == report
        assert leapfrog_report.headline_text(report)
    bare = leapfrog_report.build(journal)
    assert "availability" not in bare and bare["headline"]["failed_requests"] is None
    assert "API through the VIP: not recorded" in leapfrog_report.headline_text(bare)


def test_provisioning_during_the_run_is_in_the_headline_and_the_markdown(upgrade, tmp_path):
    import leapfrog_provision  # pylint: disable=import-outside-toplevel

    journal, _ = upgrade
    records = [{"kind": kind, "at": 1_700_000_000 + i, "seconds": 2.5 + i, "ok": ok,
                "error": None if ok else f"volume available: not within 120 s password={SECRET}"}
               for i, (kind, ok) in enumerate([("network", True), ("network", True),
                                               ("volume", True), ("volume", False),
                                               ("server", True)])]
    summary = leapfrog_provision.summarize(records)
    assert (summary["cycles"], summary["failed"], summary["success_rate"]) == (5, 1, 80.0)
    report = leapfrog_report.build(journal, provision=summary)
    head = report["headline"]
    assert (head["provisioning_cycles"], head["provisioning_failed"],
            head["provisioning_success_rate"]) == (5, 1, 80.0)
    assert ("provisioning during the run: 4 of 5 cycles succeeded (80.0 %): network 2/2, "
            "server 1/1, volume 1/2") in leapfrog_report.headline_text(report)
    paths = leapfrog_report.write(report, str(tmp_path / "r"))
    text = open(paths["markdown"], encoding="utf-8").read()
    assert "| volume cycles | 1 of 2 succeeded, slowest 5.5 s |" in text
    assert "volume available: not within 120 s" in text and SECRET not in text
    assert "provisioning" not in leapfrog_report.build(journal)
    assert leapfrog_provision.summarize([])["success_rate"] is None


def test_scrub_masks_secret_shapes_in_free_text():
    text = leapfrog_report.scrub(
        f'token={SECRET} "password": "{SECRET}" --os-password {SECRET} '
        f"http://admin:{SECRET}@127.0.0.1/ api_key: {SECRET}", limit=1000)
    assert SECRET not in text
    assert leapfrog_report.redact({"a": {"OS_PASSWORD": 1, "b": [{"apikey": 2, "c": 3}]}}) == \
        {"a": {"b": [{"c": 3}]}}


def test_gateway_steps_say_which_routers_moved_where_and_back():
    import leapfrog_step_lines  # pylint: disable=import-outside-toplevel

    moved = {"ctl01": {"chassis": "ctl01", "moved": [
        {"port": "lrp-1", "from": "ctl01", "to": "ctl02"}], "stuck": ["lrp-9"]}}
    assert leapfrog_step_lines.line("gateways", "ctl01", moved) == (
        "lrp-1 ctl01 -> ctl02; left on ctl01 (no other chassis): lrp-9")
    back = {"ctl01": {"chassis": "ctl01", "restored": [
        {"port": "lrp-1", "to": "ctl01", "priority": 2}]}}
    assert leapfrog_step_lines.line("gateways", "ctl01", back) == "lrp-1 back to ctl01"
    none = {"ctl02": {"chassis": "ctl02", "moved": [], "stuck": []}}
    assert leapfrog_step_lines.line("gateways", "ctl02", none) == (
        "no gateway active on ctl02")


def test_an_ovsdb_backup_has_its_line():
    import leapfrog_step_lines  # pylint: disable=import-outside-toplevel

    assert leapfrog_step_lines.line("backup_ovsdb", None, {"dbs01": {
        "id": "b-1", "databases": {"OVN_Southbound": {"rows": 30},
                                   "OVN_Northbound": {"rows": 12}}}}) == (
        "OVN_Northbound 12 rows, OVN_Southbound 30 rows backed up on dbs01 as b-1")


def test_a_galera_backup_has_its_line_and_a_steps_notes_their_section(upgrade, tmp_path):
    import leapfrog_step_lines  # pylint: disable=import-outside-toplevel

    assert leapfrog_step_lines.line("backup_db", "dbs03", {"dbs03": {
        "kind": "galera", "id": "g-1", "seqno": 42, "tables": 180,
        "paused_seconds": 1.26}}) == (
        "the Galera cluster backed up on dbs03 as g-1 at seqno 42 (180 tables), the node "
        "paused 1.3 s")
    journal, _ = upgrade
    journal["steps"][0]["notes"] = ["the Galera cluster has 2 of its 3 nodes in its Primary "
                                    "component (dbs03: not running)"]
    report = leapfrog_report.build(journal)
    assert report["steps"][0]["notes"] == journal["steps"][0]["notes"]
    text = open(leapfrog_report.write(report, str(tmp_path / "r"))["markdown"],
                encoding="utf-8").read()
    assert "## Notes" in text
    assert (f"| {journal['steps'][0]['name']} | the Galera cluster has 2 of its 3 nodes in its "
            "Primary component (dbs03: not running) |") in text


def test_the_report_step_reports_a_run_whose_other_steps_are_done_as_done():
    """The report is written by the run's last step, before leapfrog.finish marks the
    journal: it must not tell the operator the run is still running."""
    steps = [{"name": "a", "status": "done"}, {"name": "b", "status": "skipped"},
             {"name": "report", "status": "running"}]
    data = {"run": "r1", "cluster": "lab", "status": "running", "steps": steps}
    closed = leapfrog_report.closing(data)
    assert closed["status"] == "done" and closed["steps"][-1]["status"] == "done"
    assert leapfrog_report.build(closed)["headline"]["status"] == "done"
    assert data["status"] == "running"  # the journal's copy is left alone
    for other in ("failed", "pending", "running"):
        open_run = dict(data, steps=[dict(steps[0], status=other)] + steps[1:])
        assert leapfrog_report.closing(open_run)["status"] == "running"
    assert leapfrog_report.closing(dict(data, steps=steps[:2]))["status"] == "running"


def test_each_api_check_of_a_verify_step_is_in_the_report_with_its_time(tmp_path):
    """A dress rehearsal's throwaway checks: where they asked, each check's result and time;
    nothing of the report's credentials (openstack_verify never returns them)."""
    checked = {"ctl01": {"auth_url": "http://admin:pw@127.0.1.41:5000/v3", "checks": {
        "servers": {"result": "pass", "latency": 0.0412, "reason": "3 servers"},
        "images": {"result": "fail", "latency": 1.5, "reason": "HTTP 500 from GET /v2/images"},
    }}}
    journal = {"cluster": "lab", "run": "r1", "status": "failed", "steps": [
        {"name": "upg01_verify", "kind": "verify", "status": "failed", "result": checked},
        {"name": "clone", "kind": "clone", "status": "done", "result": {"dbs01": {}}}]}
    report = leapfrog_report.build(journal)
    assert report["checks"] == [
        {"step": "upg01_verify", "where": "127.0.1.41", "check": "servers", "result": "pass",
         "seconds": 0.0412, "reason": "3 servers"},
        {"step": "upg01_verify", "where": "127.0.1.41", "check": "images", "result": "fail",
         "seconds": 1.5, "reason": "HTTP 500 from GET /v2/images"}]
    text = open(leapfrog_report.write(report, str(tmp_path))["markdown"], encoding="utf-8").read()
    assert "| upg01_verify | 127.0.1.41 | servers | pass | 0.041 | 3 servers |" in text
    assert "pw" not in json.dumps(report)
    assert "checks" not in leapfrog_report.build({"steps": [{"kind": "verify", "result": "x"}]})
