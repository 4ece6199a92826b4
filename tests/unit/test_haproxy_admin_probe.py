"""leapfrog_probe (the availability probe behind the drain benchmarks): loopback-only targets,
bounded runs, and the summary's arithmetic (outages, timeline)."""
import http.server
import socketserver
import threading
import time

import pytest

import leapfrog_errors
import leapfrog_probe


@pytest.mark.parametrize("url", [
    "http://10.0.0.10:5000/", "http://192.168.1.1/", "http://example.com/",
    "http://localhost.example.com/", "ftp://127.0.0.1/", "http://[2001:db8::1]/",
    "http://0.0.0.0:80/", "127.0.0.1:80", "http://169.254.169.254/latest/meta-data",
])
def test_non_loopback_targets_are_refused(url):
    with pytest.raises(leapfrog_probe.ProbeRefused):
        leapfrog_probe.Probe([url])
    with pytest.raises(leapfrog_errors.LeapfrogError):
        leapfrog_probe.run(["http://127.0.0.1:1/", url], duration=1)


@pytest.mark.parametrize("url", ["http://127.0.0.1:5000/v3", "http://127.0.1.100:8774/",
                                 "http://localhost/", "http://[::1]:80/", "https://127.9.9.9/x?y=1"])
def test_loopback_targets_are_accepted(url):
    assert leapfrog_probe.check_url(url)[1] in url


@pytest.mark.parametrize("kwargs", [{"concurrency": 0}, {"concurrency": 1000}, {"duration": 0},
                                    {"duration": 1e6}, {"max_requests": -1}])
def test_limits_are_bounded(kwargs):
    with pytest.raises(leapfrog_probe.ProbeRefused):
        leapfrog_probe.Probe(["http://127.0.0.1:1/"], **kwargs)
    with pytest.raises(leapfrog_probe.ProbeRefused):
        leapfrog_probe.Probe([])


def rec(offset, ok, latency=0.01, url="u"):
    return {"offset": offset, "ok": ok, "latency": latency, "url": url,
            "status": 200 if ok else 503, "t": 0}


def test_summary_longest_outage_and_timeline():
    records = [rec(0.1, True), rec(0.5, False), rec(0.9, False, latency=0.2), rec(1.2, True),
               rec(1.5, False), rec(2.2, True)]
    out = leapfrog_probe.summarize(records, ["u"])
    assert out["requests"] == 6 and out["failures"] == 3 and out["ok"] == 3
    assert out["outages"] == 2
    assert out["longest_outage"] == pytest.approx(0.6)   # 0.5 -> 0.9 + 0.2
    assert out["longest_outage_requests"] == 2
    assert out["first_failure"] == 0.5
    assert out["timeline"] == [{"second": 0, "ok": 1, "fail": 2},
                               {"second": 1, "ok": 1, "fail": 1},
                               {"second": 2, "ok": 1, "fail": 0}]
    assert out["statuses"] == {"200": 3, "503": 3}
    assert out["per_url"] == {"u": {"requests": 6, "failures": 3}}
    empty = leapfrog_probe.summarize([], ["u"])
    assert empty["requests"] == 0 and empty["longest_outage"] == 0.0


HITS = []  # one entry per request the tiny server answered


@pytest.fixture
def tiny_server():
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            HITS.append(self.path)
            status = 500 if self.path == "/broken" else 200
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_probe_stops_by_itself(tiny_server):
    started = time.monotonic()
    out = leapfrog_probe.run([tiny_server + "/", tiny_server + "/broken"], concurrency=3,
                             duration=20, max_requests=40)
    assert time.monotonic() - started < 10
    assert out["requests"] == 40
    assert out["per_url"][tiny_server + "/"] == {"requests": 20, "failures": 0}
    assert out["per_url"][tiny_server + "/broken"] == {"requests": 20, "failures": 20}
    assert out["errors"] == {"HTTP 500": 20}

    started = time.monotonic()
    out = leapfrog_probe.run(tiny_server + "/", concurrency=2, duration=0.5, interval=0.01)
    assert 0.4 < time.monotonic() - started < 3 and out["failures"] == 0


def test_probe_as_context_manager_records_refused_connections(tiny_server):
    with leapfrog_probe.Probe(["http://127.0.0.1:1/"], concurrency=2, duration=30,
                              interval=0.01) as probe:
        time.sleep(0.3)
    out = probe.summary()
    assert not probe.running
    assert out["ok"] == 0 and out["failures"] > 3
    assert out["errors"] == {"ConnectionRefusedError": out["failures"]}
    assert out["longest_outage"] > 0.2


def test_probe_runs_as_its_own_process_and_stops_on_sigterm(tiny_server, tmp_path):
    import json
    import os
    import signal
    import subprocess
    import sys

    from tests.conftest import REPO

    out = tmp_path / "probe.json"
    env = dict(os.environ, PYTHONPATH=os.path.join(REPO, "_utils"))
    proc = subprocess.Popen([sys.executable, "-m", "leapfrog_probe", "--duration", "60",
                             "--concurrency", "2", "--interval", "0.01", "--out", str(out),
                             tiny_server + "/"], env=env)
    HITS.clear()
    deadline = time.monotonic() + 30  # started (its handler set) once it sends requests
    while len(HITS) < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    summary = json.loads(out.read_text())
    assert summary["requests"] > 10 and summary["failures"] == 0
    assert summary["urls"] == [tiny_server + "/"]
    refused = subprocess.run([sys.executable, "-m", "leapfrog_probe", "http://10.1.1.1/"],
                             env=env, capture_output=True, text=True, timeout=30)
    assert refused.returncode == 2 and "not a loopback address" in refused.stderr
