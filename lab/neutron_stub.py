"""A minimal stand-in for neutron's API: the lab has no real neutron.

nova-api needs a ``network`` endpoint even for servers booted with ``--nic none`` (server
list/show fail with EndpointNotFound otherwise), and operators' checks list networks. This
answers, on loopback, without authentication:

- ``GET /`` and ``GET /v2.0``: the API version documents,
- ``GET /v2.0/<resource>`` (``.json`` suffix accepted): ``{"<resource>": []}`` (ports,
  networks, subnets, security-groups, floatingips, ...),
- ``GET /v2.0/extensions``: ``{"extensions": []}``,
- ``GET /v2.0/<resource>/<id>``: 404 in neutron's error shape,
- anything else: 404 (writes: 501).

    python -m lab.neutron_stub --listen 127.0.1.21:PORT [--pidfile FILE]

From Python: ``NeutronStub(run_dir, "127.0.1.21").start()`` runs it as its own process
(``.url``, ``.pid``, ``stop()`` by that PID).
"""
import argparse
import http.server
import json
import os
import signal
import socketserver
import subprocess
import sys
import time
import urllib.request

from lab.http_backend import require_loopback
from lab import procs
from lab.procs import free_port


class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "lab-neutron-stub/1"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet
        pass

    def _send(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _versions(self):
        base = f"http://{self.headers.get('Host') or self.server.server_address[0]}"
        return {"versions": [{"id": "v2.0", "status": "CURRENT",
                              "links": [{"rel": "self", "href": f"{base}/v2.0/"}]}]}

    def do_GET(self):  # noqa: N802 (http.server's naming)
        path = self.path.split("?", 1)[0].rstrip("/")
        if path in ("", "/"):
            return self._send(200, self._versions())
        parts = [p for p in path.split("/") if p]
        if parts[0] != "v2.0":
            return self._send(404, {"NeutronError": {"type": "HTTPNotFound", "message":
                                                     "Not found", "detail": ""}})
        if len(parts) == 1:
            return self._send(200, {"resources": []})
        resource = parts[1][:-5] if parts[1].endswith(".json") else parts[1]
        if len(parts) == 2:
            return self._send(200, {resource.replace("-", "_"): []})
        return self._send(404, {"NeutronError": {"type": f"{resource}NotFound", "message":
                                                 f"{resource} {parts[2]} could not be found",
                                                 "detail": ""}})

    def _write(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self._send(501, {"NeutronError": {"type": "NotImplemented", "message":
                                          "the lab's neutron stand-in is read-only",
                                          "detail": ""}})

    do_POST = do_PUT = do_DELETE = _write  # noqa: N815


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def serve(host, port, pidfile=None):
    server = _Server((require_loopback(host), port), _Handler)
    if pidfile:
        with open(pidfile, "w") as handle:
            handle.write(f"{os.getpid()}\n")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        server.server_close()


class NeutronStub:
    """The stand-in as its own process: ``start()``, ``stop()``, ``healthy()``, ``url``."""

    kind = "neutron-stub"

    def __init__(self, run_dir, address, port=None):
        self.run_dir = os.path.abspath(run_dir)
        self.address = require_loopback(address)
        self.port = port or free_port(self.address)
        self.pidfile = os.path.join(self.run_dir, "neutron-stub.pid")
        self.pid = None
        self._proc = None

    @property
    def url(self):
        return f"http://{self.address}:{self.port}"

    def healthy(self):
        try:
            with urllib.request.urlopen(self.url + "/v2.0/networks", timeout=2) as response:
                return json.load(response) == {"networks": []}
        except (OSError, ValueError):
            return False

    def running(self):
        if self._proc is not None:
            return self._proc.poll() is None
        pid = self._pid_from_file()
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                ours = self.pidfile.encode() in handle.read()
        except (OSError, TypeError):
            ours = False
        return ours

    def _pid_from_file(self):
        try:
            with open(self.pidfile) as handle:
                return int(handle.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def start(self, timeout=15):
        if self.running():
            return self
        os.makedirs(self.run_dir, exist_ok=True)
        repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ, PYTHONPATH=repo)
        with open(os.path.join(self.run_dir, "neutron-stub.log"), "ab") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "lab.neutron_stub", "--listen",
                 f"{self.address}:{self.port}", "--pidfile", self.pidfile],
                env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                start_new_session=True, cwd=self.run_dir)
        self.pid = self._proc.pid
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"neutron stub exited {self._proc.returncode}; see {self.run_dir}")
            if self.healthy():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"neutron stub not answering on {self.url}")

    def stop(self, timeout=5):
        if self._proc is None:  # started by another process: stop by the PID file's PID
            pid = self._pid_from_file()
            if pid and self.running():
                os.kill(pid, signal.SIGTERM)
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline and os.path.exists(f"/proc/{pid}"):
                    try:
                        os.waitpid(pid, os.WNOHANG)
                    except ChildProcessError:
                        pass
                    time.sleep(0.05)
            if os.path.exists(self.pidfile):
                os.unlink(self.pidfile)
            return
        procs.stop_child(self._proc, timeout, kill_wait=5)
        self._proc = None
        self.pid = None
        if os.path.exists(self.pidfile):
            os.unlink(self.pidfile)

    def rss_kb(self):
        from lab.openstack_service import rss_kb  # pylint: disable=import-outside-toplevel

        pid = self.pid or self._pid_from_file()
        return rss_kb(pid) if pid and self.running() else 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lab.neutron_stub",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--listen", required=True, metavar="HOST:PORT")
    parser.add_argument("--pidfile")
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    serve(host, int(port), args.pidfile)


if __name__ == "__main__":
    main()
