"""A tiny threaded HTTP server process: the lab's stand-in for an API server behind haproxy.

It answers ``200`` on ``GET /`` (and any other path), and ``GET /slow?s=N`` holds the request
for N seconds before answering, to keep a session in flight while haproxy drains the server.
One process may listen on several ports (one per API it stands in for), all on loopback.

Run alone::

    python -m lab.http_backend --name ctl01 --listen 127.0.0.1:18001 --listen 127.0.0.1:18002 \
        --pidfile /tmp/ctl01.pid

or from Python::

    backend = HTTPBackend("/tmp/lab/ctl01", "ctl01", ports=2)
    backend.start()          # picks free ports, waits until they accept connections
    backend.addresses        # ["127.0.0.1:41234", "127.0.0.1:41235"]
    backend.stop()           # SIGTERM to its PID (SIGKILL after a timeout)
    backend.start()          # again, same ports
"""
import argparse
import http.server
import ipaddress
import os
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
import urllib.parse

from lab.procs import free_port, pid_alive as _pid_alive, read_pid  # noqa: F401 (free_port re-exported)

MAX_SLOW = 120.0


def require_loopback(host):
    """Raise ``ValueError`` unless ``host`` is an IPv4 address in 127.0.0.0/8."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{host!r} is not an IP address; the lab listens on 127.0.0.0/8 only")
    if not address.is_loopback or address.version != 4:
        raise ValueError(f"{host} is not a loopback address (127.0.0.0/8); refused")
    return host


def split_address(text):
    host, _, port = text.rpartition(":")
    return require_loopback(host), int(port)


class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "lab-http-backend/1"
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802 (http.server's naming)
        url = urllib.parse.urlsplit(self.path)
        hold = 0.0
        if url.path == "/slow":
            query = urllib.parse.parse_qs(url.query)
            try:
                hold = min(float(query.get("s", ["1"])[0]), MAX_SLOW)
            except ValueError:
                hold = 1.0
        elif self.server.delay:
            hold = self.server.delay
        if hold > 0:
            time.sleep(hold)
        body = f"{self.server.name} {self.server.server_address[1]} {url.path}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Backend", self.server.name)
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, fmt, *args):  # quiet: haproxy's checks would fill the log
        if self.server.verbose:
            super().log_message(fmt, *args)


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def serve(name, addresses, pidfile=None, delay=0.0, verbose=False):
    """Serve on every ``host:port`` in ``addresses`` until SIGTERM/SIGINT (blocking)."""
    servers = []
    for text in addresses:
        server = _Server(split_address(text), _Handler)
        server.name, server.delay, server.verbose = name, delay, verbose
        servers.append(server)
    stop = threading.Event()

    def _stop(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.1},
                                daemon=True) for s in servers]
    for thread in threads:
        thread.start()
    if pidfile:
        tmp = f"{pidfile}.tmp"
        with open(tmp, "w") as handle:
            handle.write(f"{os.getpid()}\n")
        os.replace(tmp, pidfile)
    try:
        while not stop.wait(0.2):
            pass
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
        if pidfile:
            try:
                os.unlink(pidfile)
            except FileNotFoundError:
                pass


def _accepts(host, port, timeout=0.2):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class HTTPBackend:
    """One stand-in API server process (one name, one or more loopback ports)."""

    def __init__(self, run_dir, name, ports=1, host="127.0.0.1", delay=0.0):
        self.run_dir = os.path.abspath(run_dir)
        self.name = name
        self.host = require_loopback(host)
        self.delay = delay
        if isinstance(ports, int):
            ports = [free_port(host) for _ in range(ports)]
        self.ports = list(ports)
        self.pidfile = os.path.join(self.run_dir, f"{name}.pid")
        self.logfile = os.path.join(self.run_dir, f"{name}.log")
        self.process = None

    @property
    def addresses(self):
        return [f"{self.host}:{port}" for port in self.ports]

    @property
    def pid(self):
        return read_pid(self.pidfile)

    def running(self):
        pid = self.pid
        return pid is not None and _pid_alive(pid)

    def start(self, timeout=10.0):
        """Start the process and wait until every port accepts connections."""
        if self.running():
            return self
        os.makedirs(self.run_dir, exist_ok=True)
        repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        argv = [sys.executable, "-m", "lab.http_backend", "--name", self.name,
                "--pidfile", self.pidfile, "--delay", str(self.delay)]
        for address in self.addresses:
            argv += ["--listen", address]
        env = dict(os.environ, PYTHONPATH=repo + os.pathsep + os.environ.get("PYTHONPATH", ""))
        with open(self.logfile, "ab") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=log, env=env, cwd=repo,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"http backend {self.name} exited {self.process.returncode}; "
                                   f"see {self.logfile}")
            if self.pid == self.process.pid and all(_accepts(self.host, p) for p in self.ports):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"http backend {self.name} did not listen on {self.addresses} "
                           f"within {timeout}s; see {self.logfile}")

    def stop(self, timeout=5.0, sig=signal.SIGTERM):
        """Stop the process by its PID: ``sig`` (SIGTERM), then SIGKILL after ``timeout``."""
        pid = self.pid or (self.process.pid if self.process else None)
        if pid is None:
            return
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout
        while _pid_alive(pid) and time.monotonic() < deadline:
            if self.process is not None and self.process.pid == pid:
                if self.process.poll() is not None:
                    break
            time.sleep(0.02)
        else:
            if _pid_alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if self.process is not None:
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
            self.process = None
        try:
            os.unlink(self.pidfile)
        except FileNotFoundError:
            pass

    def kill(self):
        """Stop at once with SIGKILL (a crash, not a clean stop)."""
        self.stop(sig=signal.SIGKILL)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lab.http_backend", description=__doc__.split("\n")[0])
    parser.add_argument("--name", default="backend")
    parser.add_argument("--listen", action="append", required=True, metavar="HOST:PORT",
                        help="loopback address to listen on (repeatable)")
    parser.add_argument("--pidfile")
    parser.add_argument("--delay", type=float, default=0.0,
                        help="seconds every request (other than /slow) takes")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    serve(args.name, args.listen, pidfile=args.pidfile, delay=args.delay, verbose=args.verbose)


if __name__ == "__main__":
    main()
