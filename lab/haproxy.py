"""The lab's haproxy: a private haproxy 2.6 (Debian's package) with an admin socket.

No systemd: the config, PID file, sockets and log live under ``run_dir``; haproxy runs in
master-worker mode (``-W -D -p PIDFILE``), reloads with SIGUSR2 to the master and stops by
its PID. Frontends and backends are data: one frontend per API, each with a backend of the
same name whose servers carry HTTP health checks (``option httpchk``). A ``mode: tcp``
frontend is a database's (as kolla and OSA put Galera behind haproxy): its ``backup``
servers take connections only while the active one is down, a failed connection marks the
active one down at once (the retry goes to a backup), and when it is back the backups'
sessions are cut (one node takes the writes). Loopback only.

    proxy = HAProxy("/tmp/lab/haproxy", frontends={
        "keystone": {"bind": "127.0.1.100:0",               # port 0 or absent: a free port
                     "servers": {"ctl01": "127.0.0.1:41001", "ctl02": "127.0.0.1:41002"}},
    })
    proxy.start()
    proxy.admin_socket                 # unix path of the admin socket (level admin)
    proxy.frontend_url("keystone")     # http://127.0.1.100:PORT
    proxy.stop()

Alone: ``python -m lab.haproxy RUN_DIR --frontend keystone=127.0.0.1:0 \\
--server keystone/ctl01=127.0.0.1:41001`` starts it and prints the sockets and URLs
(``--stop RUN_DIR`` stops it).
"""
import argparse
import json
import os
import signal
import socket
import subprocess
import time

from lab.http_backend import require_loopback
from lab.procs import free_port, pid_alive as _pid_alive

HAPROXY = "/usr/sbin/haproxy"

DEFAULT_CHECK = {"inter": "300ms", "fall": 2, "rise": 2}
DEFAULT_TIMEOUTS = {"connect": "2s", "client": "60s", "server": "60s", "queue": "10s",
                    "check": "1s", "http-request": "10s"}


def _split(address):
    host, _, port = str(address).rpartition(":")
    return require_loopback(host), int(port or 0)


# a database's connections live for hours in a pool (oslo.db recycles them hourly)
TCP_IDLE = "1h"


def _tcp_sections(name, spec):
    """A database frontend: one active server, the others standby; see the docstring."""
    lines = ["", f"frontend {name}", "    mode tcp", f"    bind {spec['bind']}",
             f"    timeout client {TCP_IDLE}", f"    default_backend {name}",
             "", f"backend {name}", "    mode tcp", "    option tcp-check",
             "    option redispatch 1", "    retries 3", f"    timeout server {TCP_IDLE}"]
    for server, address in spec["servers"].items():
        standby = " backup" if server in spec.get("backup", ()) else ""
        lines.append(f"    server {server} {address} check{standby} observe layer4 "
                     "error-limit 1 on-error mark-down "
                     "on-marked-up shutdown-backup-sessions")
    return lines


class HAProxy:
    """A private haproxy process: config from data, admin socket, start/reload/stop by PID."""

    def __init__(self, run_dir, frontends, check=None, timeouts=None, retries=2,
                 user_socket=True, tcp_admin=False, extra_defaults=()):
        self.run_dir = os.path.abspath(run_dir)
        # unix socket paths are limited to 107 bytes: callers give a short run_dir
        self.admin_socket = os.path.join(self.run_dir, "admin.sock")
        if len(self.admin_socket) > 100:
            raise ValueError(f"run_dir too long for a unix socket path: {self.run_dir}")
        self.user_socket = os.path.join(self.run_dir, "user.sock") if user_socket else None
        self.admin_tcp = f"127.0.0.1:{free_port()}" if tcp_admin else None
        self.config_path = os.path.join(self.run_dir, "haproxy.cfg")
        self.pidfile = os.path.join(self.run_dir, "haproxy.pid")
        self.logfile = os.path.join(self.run_dir, "haproxy.log")
        self.check = dict(DEFAULT_CHECK, **(check or {}))
        self.timeouts = dict(DEFAULT_TIMEOUTS, **(timeouts or {}))
        self.retries = retries
        self.extra_defaults = list(extra_defaults)
        self.frontends = {}
        for name, spec in frontends.items():
            self.add_frontend(name, spec.get("bind", "127.0.0.1:0"), spec.get("servers", {}),
                              mode=spec.get("mode", "http"), backup=spec.get("backup", ()))

    # -- configuration -------------------------------------------------------------------
    def add_frontend(self, name, bind, servers, mode="http", backup=()):
        """Add (or replace) frontend ``name`` and its backend; takes effect on start/reload.
        ``mode="tcp"``: a database frontend, ``backup`` naming its standby servers."""
        if mode not in ("http", "tcp") or (backup and mode != "tcp"):
            raise ValueError(f"frontend {name}: mode {mode!r} with backup {list(backup)}: "
                             "use mode http, or tcp with its standby servers in backup")
        unknown = [b for b in backup if b not in servers]
        if unknown:
            raise ValueError(f"frontend {name}: backup server(s) {unknown} not in its servers")
        host, port = _split(bind)
        if not port:
            port = free_port(host)
        checked = {}
        for server, address in servers.items():
            shost, sport = _split(address)
            if not sport:
                raise ValueError(f"server {name}/{server}: a port is required ({address!r})")
            checked[server] = f"{shost}:{sport}"
        self.frontends[name] = {"bind": f"{host}:{port}", "servers": checked, "mode": mode,
                                "backup": list(backup)}

    def frontend_url(self, name):
        return f"http://{self.frontends[name]['bind']}"

    def frontend_address(self, name):
        host, port = _split(self.frontends[name]["bind"])
        return host, port

    def render(self):
        """Return the haproxy.cfg text for the current data."""
        check = " ".join(f"{k} {v}" for k, v in self.check.items())
        lines = [
            "global",
            f"    stats socket {self.admin_socket} mode 600 level admin expose-fd listeners",
        ]
        if self.user_socket:
            lines.append(f"    stats socket {self.user_socket} mode 600 level user")
        if self.admin_tcp:
            lines.append(f"    stats socket ipv4@{self.admin_tcp} level admin")
        lines += [
            "    stats timeout 30s",
            "    maxconn 2000",
            "",
            "defaults",
            "    mode http",
            f"    retries {self.retries}",
            "    option httpchk GET /",
            f"    default-server {check}",
        ]
        lines += [f"    timeout {k} {v}" for k, v in self.timeouts.items()]
        lines += [f"    {extra}" for extra in self.extra_defaults]
        for name, spec in self.frontends.items():
            if spec.get("mode") == "tcp":
                lines += _tcp_sections(name, spec)
                continue
            lines += ["", f"frontend {name}", f"    bind {spec['bind']}",
                      f"    default_backend {name}",
                      "", f"backend {name}", "    balance roundrobin"]
            lines += [f"    server {server} {address} check"
                      for server, address in spec["servers"].items()]
        return "\n".join(lines) + "\n"

    def write_config(self):
        os.makedirs(self.run_dir, exist_ok=True)
        tmp = self.config_path + ".tmp"
        with open(tmp, "w") as handle:
            handle.write(self.render())
        result = subprocess.run([HAPROXY, "-c", "-q", "-f", tmp], capture_output=True,
                                text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"haproxy rejected its config ({tmp}):\n{result.stderr.strip()}")
        os.replace(tmp, self.config_path)

    # -- process ---------------------------------------------------------------------------
    @property
    def pid(self):
        """PID of the master process, from the PID file."""
        try:
            with open(self.pidfile) as handle:
                return int(handle.read().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None

    def running(self):
        pid = self.pid
        return pid is not None and _pid_alive(pid)

    def start(self, timeout=10.0):
        """Write the config, start haproxy (master-worker, daemon) and wait for its sockets."""
        if self.running():
            return self
        self.write_config()
        for stale in (self.admin_socket, self.user_socket, self.pidfile):
            if stale and os.path.exists(stale):
                os.unlink(stale)
        with open(self.logfile, "ab") as log:
            result = subprocess.run(
                [HAPROXY, "-W", "-D", "-f", self.config_path, "-p", self.pidfile],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL, cwd=self.run_dir,
                check=False, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"haproxy exited {result.returncode}; see {self.logfile}")
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout, old_worker=None):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                info = self.command("show info")
                worker = _info_pid(info)
                if old_worker is None or (worker and worker != old_worker):
                    if all(self._listening(name) for name in self.frontends):
                        return
            except OSError as exc:
                last = exc
            time.sleep(0.05)
        raise RuntimeError(f"haproxy not ready within {timeout}s ({last}); see {self.logfile}")

    def _listening(self, name):
        host, port = self.frontend_address(name)
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return True
        except OSError:
            return False

    def worker_pid(self):
        return _info_pid(self.command("show info"))

    def reload(self, timeout=10.0):
        """Rewrite the config and reload (SIGUSR2 to the master); wait for the new worker."""
        if not self.running():
            return self.start(timeout)
        self.write_config()
        old = self.worker_pid()
        os.kill(self.pid, signal.SIGUSR2)
        self._wait_ready(timeout, old_worker=old)
        return self

    def stop(self, timeout=10.0):
        """Stop haproxy by its master PID (SIGTERM, SIGKILL after ``timeout``)."""
        pid = self.pid
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout
        while _pid_alive(pid) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.02)
        if _pid_alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            _reap(pid)
        for path in (self.pidfile, self.admin_socket, self.user_socket):
            if path and os.path.exists(path):
                try:
                    os.unlink(path)
                except OSError:
                    pass

    def command(self, line, timeout=5.0):
        """Send one command to the admin socket and return the answer (for the lab's use)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(self.admin_socket)
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                chunks.append(data)
        return b"".join(chunks).decode()

    def describe(self):
        return {
            "pid": self.pid,
            "config": self.config_path,
            "admin_socket": self.admin_socket,
            "user_socket": self.user_socket,
            "admin_tcp": self.admin_tcp,
            "frontends": {name: self.frontend_url(name) for name in self.frontends},
            "backends": {name: spec["servers"] for name, spec in self.frontends.items()},
        }

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def _info_pid(info):
    for line in info.splitlines():
        if line.startswith("Pid:"):
            return int(line.split(":", 1)[1])
    return None


def _reap(pid):
    """Collect a child's exit status if ``pid`` is our child (no zombie left behind)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lab.haproxy",
                                     description="Start (or stop) a private lab haproxy.")
    parser.add_argument("run_dir")
    parser.add_argument("--frontend", action="append", default=[], metavar="NAME=HOST:PORT",
                        help="a frontend and its bind address (port 0: a free one)")
    parser.add_argument("--server", action="append", default=[], metavar="NAME/SERVER=HOST:PORT",
                        help="a server of frontend NAME's backend (repeatable)")
    parser.add_argument("--tcp-admin", action="store_true", help="also an admin socket on TCP")
    parser.add_argument("--stop", action="store_true", help="stop the haproxy of RUN_DIR")
    args = parser.parse_args(argv)
    if args.stop:
        with open(os.path.join(args.run_dir, "haproxy.pid")) as handle:
            pid = int(handle.read().split()[0])
        os.kill(pid, signal.SIGTERM)
        print(f"sent SIGTERM to haproxy master {pid}")
        return
    frontends = {}
    for item in args.frontend:
        name, _, bind = item.partition("=")
        frontends[name] = {"bind": bind, "servers": {}}
    for item in args.server:
        key, _, address = item.partition("=")
        name, _, server = key.partition("/")
        frontends.setdefault(name, {"bind": "127.0.0.1:0", "servers": {}})
        frontends[name]["servers"][server] = address
    proxy = HAProxy(args.run_dir, frontends, tcp_admin=args.tcp_admin)
    proxy.start()
    print(json.dumps(proxy.describe(), indent=2))


if __name__ == "__main__":
    main()
