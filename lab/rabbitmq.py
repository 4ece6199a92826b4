"""A private RabbitMQ for the lab (Debian's rabbitmq-server, no systemd).

Everything lives under ``run_dir``: HOME (the Erlang cookie), the mnesia and log bases, the
PID files, ``rabbitmq.conf`` (``loopback_users = none``, one listener on ``address``) and an
empty enabled-plugins file. Its own epmd runs on a private port (started by us, so we know
its PID); the node's AMQP and distribution ports are chosen free at start. Loopback only.

    mq = RabbitMQ("/tmp/lf-mq")
    mq.start()                 # rabbitmq-server -detached, wait until AMQP answers
    mq.transport_url()         # rabbit://guest:guest@127.0.0.1:PORT/
    mq.stop()                  # TERM the node and its epmd by their own PIDs, KILL on timeout

From a shell: ``python -m lab.rabbitmq up|down|status RUN_DIR``.
"""
import json
import os
import socket
import subprocess
import sys
import time

from lab.http_backend import require_loopback
from lab.procs import (free_port, listening, pid_alive as _alive, read_pid, stop_pid as _stop_pid,
                       tail, vm_rss_kb)

SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
EPMD = "/usr/bin/epmd"
CTL = "/usr/lib/rabbitmq/bin/rabbitmqctl"


class RabbitMQError(RuntimeError):
    """The lab RabbitMQ could not start or stop."""


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, TypeError):
        return ""


def _nodename():
    return f"lf{os.getpid()}x{int(time.time() * 1000) % 100000}@localhost"


class RabbitMQ:
    """One private RabbitMQ node: ``start()``, ``stop()``, ``running()``, ``transport_url()``.

    Attributes: ``run_dir``, ``address``, ``port`` (AMQP), ``dist_port``, ``epmd_port``,
    ``nodename``, ``pid`` (the Erlang VM), ``epmd_pid``, ``user``/``password`` (guest/guest,
    reachable on loopback only).
    """

    user = "guest"
    password = "guest"

    def __init__(self, run_dir, address="127.0.0.1", port=None):
        self.run_dir = os.path.abspath(run_dir)
        self.address = require_loopback(address)
        self.fixed_port = port
        self.port = port
        self.dist_port = None
        self.epmd_port = None
        self.nodename = _nodename()
        self.home = os.path.join(self.run_dir, "home")
        self.pid_file = os.path.join(self.run_dir, "rabbit.pid")
        self.log_dir = os.path.join(self.run_dir, "log")
        self.state_file = os.path.join(self.run_dir, "state.json")
        self.pid = None
        self.epmd_pid = None
        self.started_seconds = None
        self._load()

    # -- state on disk so `down` in another process finds the node -------------------------
    def _load(self):
        try:
            with open(self.state_file) as handle:
                state = json.load(handle)
        except (OSError, ValueError):
            return
        for key in ("port", "dist_port", "epmd_port", "nodename", "pid", "epmd_pid"):
            if state.get(key) is not None:
                setattr(self, key, state[key])

    def _save(self):
        os.makedirs(self.run_dir, exist_ok=True)
        with open(self.state_file, "w") as handle:
            json.dump(self.info(), handle, indent=1)

    def info(self):
        return {"run_dir": self.run_dir, "address": self.address, "port": self.port,
                "dist_port": self.dist_port, "epmd_port": self.epmd_port,
                "nodename": self.nodename, "pid": self.pid, "epmd_pid": self.epmd_pid}

    def env(self):
        """Environment for rabbitmq-server and rabbitmqctl on this node."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        env.update({
            "HOME": self.home,
            "RABBITMQ_NODENAME": self.nodename,
            "RABBITMQ_NODE_IP_ADDRESS": self.address,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_MNESIA_BASE": os.path.join(self.run_dir, "mnesia"),
            "RABBITMQ_LOG_BASE": self.log_dir,
            "RABBITMQ_PID_FILE": self.pid_file,
            "RABBITMQ_CONFIG_FILE": os.path.join(self.run_dir, "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": os.path.join(self.run_dir, "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": os.path.join(self.run_dir, "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": os.path.join(self.run_dir, "enabled_plugins"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "+S 1:1 +A 4",
        })
        return env

    def transport_url(self, vhost="/"):
        return f"rabbit://{self.user}:{self.password}@{self.address}:{self.port}{vhost}"

    def running(self):
        return _alive(self.pid) and self._ours(self.pid)

    def ctl(self, *args, timeout=60):
        """``rabbitmqctl ARGS`` on this node; its output lines (an error names the exit)."""
        proc = subprocess.run([CTL, "-n", self.nodename, "-q", *args], env=self.env(),
                              capture_output=True, text=True, timeout=timeout, check=False)
        if proc.returncode != 0:
            raise RabbitMQError(f"rabbitmqctl {' '.join(args)} exited {proc.returncode}: "
                                f"{(proc.stderr or proc.stdout).strip()[-300:]}")
        return proc.stdout.splitlines()

    def vhosts(self):
        return [line.strip() for line in self.ctl("list_vhosts", "--no-table-headers")
                if line.strip()]

    def reset_vhost(self, vhost):
        """``vhost`` made afresh (deleted with every queue in it, when there), this node's
        user allowed everything in it. The default vhost ``/`` is refused."""
        if vhost in ("", "/"):
            raise RabbitMQError("refusing to reset the default vhost: the cloud's queues")
        if vhost in self.vhosts():
            self.ctl("delete_vhost", vhost)
        self.ctl("add_vhost", vhost)
        self.ctl("set_permissions", "-p", vhost, self.user, ".*", ".*", ".*")

    def _ours(self, pid):
        """``pid`` is this node's VM or epmd (a reused PID is never signalled)."""
        line = _cmdline(pid)
        return self.home in line or (self.epmd_port and f"-port {self.epmd_port}" in line
                                     and "epmd" in line)

    def _amqp_ready(self):
        """True once the node answers an AMQP protocol header with a Connection.Start."""
        try:
            with socket.create_connection((self.address, self.port), timeout=1) as sock:
                sock.sendall(b"AMQP\x00\x00\x09\x01")
                data = sock.recv(8)
                return len(data) >= 7 and data[0] == 1  # frame type METHOD
        except OSError:
            return False

    def _write_config(self):
        for path in (self.run_dir, self.home, self.log_dir, os.path.join(self.run_dir, "mnesia")):
            os.makedirs(path, exist_ok=True)
        with open(os.path.join(self.run_dir, "rabbitmq.conf"), "w") as handle:
            handle.write(f"loopback_users = none\n"
                         f"listeners.tcp.1 = {self.address}:{self.port}\n"
                         "log.console = false\nlog.file.level = warning\n")
        with open(os.path.join(self.run_dir, "advanced.config"), "w") as handle:
            handle.write("[].\n")
        with open(os.path.join(self.run_dir, "enabled_plugins"), "w") as handle:
            handle.write("[].\n")
        open(os.path.join(self.run_dir, "rabbitmq-env.conf"), "a").close()

    def start(self, timeout=90, attempts=3):
        """Start the node (and its epmd) unless running; wait until AMQP answers.

        A boot that fails (a port taken meanwhile, the node exiting) is retried with fresh
        ports and node name, up to ``attempts`` times; the error carries the tails of the
        node's log, its console output and epmd's log.
        """
        if self.running():
            return self
        started = time.monotonic()
        failures = []
        for attempt in range(1, attempts + 1):
            try:
                self._boot(timeout)
            except RabbitMQError as exc:
                failures.append(f"attempt {attempt}: {exc}")
                self.stop()
                continue
            self.started_seconds = round(time.monotonic() - started, 2)
            self._save()
            return self
        raise RabbitMQError(f"RabbitMQ did not start on {self.address} ({attempts} attempts):\n"
                            + "\n".join(failures))

    def _boot(self, timeout):
        """One boot: fresh ports and node name, own epmd, ``rabbitmq-server -detached``."""
        self.port = self.fixed_port or free_port(self.address)
        self.dist_port = free_port("127.0.0.1")
        self.epmd_port = free_port("127.0.0.1")
        self.nodename = _nodename()
        self._write_config()
        if os.path.exists(self.pid_file):
            os.unlink(self.pid_file)
        env = self.env()
        with open(os.path.join(self.run_dir, "epmd.log"), "ab") as log:
            epmd = subprocess.Popen([EPMD, "-port", str(self.epmd_port), "-address", "127.0.0.1"],
                                    env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        self.epmd_pid = epmd.pid
        self._save()
        deadline = time.monotonic() + 15
        while not listening("127.0.0.1", self.epmd_port):
            if epmd.poll() is not None or time.monotonic() > deadline:
                raise RabbitMQError(f"epmd did not listen on 127.0.0.1:{self.epmd_port}"
                                    + self._diagnostics())
            time.sleep(0.05)
        if listening(self.address, self.port):
            raise RabbitMQError(f"{self.address}:{self.port} is already taken by another process")
        with open(os.path.join(self.run_dir, "server.out"), "ab") as log:
            proc = subprocess.run([SERVER, "-detached"], env=env, cwd=self.run_dir, stdout=log,
                                  stderr=log, stdin=subprocess.DEVNULL, check=False, timeout=60)
        if proc.returncode != 0:
            raise RabbitMQError(f"rabbitmq-server -detached exited {proc.returncode}"
                                + self._diagnostics())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.pid = self.pid or read_pid(self.pid_file) or self._find_node()
            if self.pid and not _alive(self.pid):
                raise RabbitMQError(f"node {self.nodename} exited while booting"
                                    + self._diagnostics())
            if self.pid and self._amqp_ready():
                return
            time.sleep(0.2)
        raise RabbitMQError(f"node {self.nodename} did not answer AMQP on {self.address}:"
                            f"{self.port} within {timeout}s (pid {self.pid})"
                            + self._diagnostics())

    def _find_node(self):
        """PID of this node's Erlang VM from /proc (before its PID file exists), or None."""
        for entry in os.listdir("/proc"):
            if entry.isdigit() and f"-home {self.home} " in _cmdline(entry):
                return int(entry)
        return None

    def _diagnostics(self):
        parts = []
        for name in (f"log/{self.nodename}.log", "server.out", "epmd.log"):
            text = tail(os.path.join(self.run_dir, name)).strip()
            if text:
                parts.append(f"--- {name} (last lines) ---\n{text}")
        return ("\n" + "\n".join(parts)) if parts else " (no log written)"

    def stop(self, timeout=30):
        """TERM the node by its PID (KILL after ``timeout``), then its epmd."""
        if self.pid is None:
            self.pid = read_pid(self.pid_file) or self._find_node()
        if self.pid and self._ours(self.pid):
            _stop_pid(self.pid, timeout)
        if self.epmd_pid and self._ours(self.epmd_pid):
            _stop_pid(self.epmd_pid, 5)
        self.pid = None
        self.epmd_pid = None
        if os.path.isdir(self.run_dir):
            self._save()

    def rss_kb(self):
        """Resident memory of the node and its epmd, in KiB."""
        return sum(vm_rss_kb(pid) for pid in (self.pid, self.epmd_pid) if pid)

    def __repr__(self):
        return f"RabbitMQ({self.run_dir!r}, {self.address}:{self.port}, pid={self.pid})"


def main(argv=None):
    import argparse  # pylint: disable=import-outside-toplevel

    parser = argparse.ArgumentParser(prog="python -m lab.rabbitmq", description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=("up", "down", "status"))
    parser.add_argument("run_dir")
    parser.add_argument("--address", default="127.0.0.1")
    args = parser.parse_args(argv)
    mq = RabbitMQ(args.run_dir, address=args.address)
    try:
        if args.action == "up":
            mq.start()
        elif args.action == "down":
            mq.stop()
    except RabbitMQError as exc:
        print(f"lab.rabbitmq: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({**mq.info(), "running": mq.running(),
                      "transport_url": mq.transport_url()}, indent=1))
    return 0 if args.action != "status" or mq.running() else 3


if __name__ == "__main__":
    sys.exit(main())
