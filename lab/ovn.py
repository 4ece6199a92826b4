"""OVN for the lab: the central part (Debian's ovn-central: the northbound and southbound
ovsdb-servers and ovn-northd) with private paths and free ports, and fake chassis kept
alive by a keeper that stands in for ovn-controller, so neutron's ML2/OVN binds ports for
real (FACTS.md, "Neutron API with ML2/OVN").

A chassis per compute (and a gateway chassis where routers live) is a row of the SB
``Chassis`` table plus its ``Chassis_Private`` row; neutron shows it as an agent that is
alive while ``NB_Global.nb_cfg - Chassis_Private.nb_cfg <= 1``. ovn-controller would copy
``SB_Global.nb_cfg`` (which ovn-northd copies from the NB) into its ``Chassis_Private``;
the keeper (``python -m lab.ovn keep RUN_DIR``, its own process, stopped by its PID) does
that every few seconds for every chassis of the run. Loopback only.

    ovn = OVN("/tmp/lf-ovn")
    ovn.start()                         # NB, SB, northd; waits until both DBs answer
    ovn.nb_connection                   # tcp:127.0.0.1:PORT (neutron's ovn_nb_connection)
    ovn.add_chassis("cmp01", "127.0.0.51")              # a compute's chassis
    ovn.add_chassis("ctl01", "127.0.0.11", gateway=True)  # where routers' gateways live
    ovn.start_keeper()                  # chassis alive from now on
    ovn.stop()                          # keeper, northd, SB, NB by their own PIDs

From a shell: ``python -m lab.ovn up|down|status RUN_DIR``.
"""
import argparse
import json
import os
import subprocess
import sys
import time

from lab.http_backend import require_loopback
from lab.procs import (free_port, listening, pid_alive, read_pid, rss_kb, stop_pid,
                       wait_for)

SCHEMAS = {"nb": "/usr/share/ovn/ovn-nb.ovsschema", "sb": "/usr/share/ovn/ovn-sb.ovsschema"}
KEEP_INTERVAL = 3.0  # neutron's agent check runs every few tens of seconds


class OVNError(RuntimeError):
    """The lab's OVN could not start, stop or answer."""


def _run(argv, what):
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise OVNError(f"{what} failed (exit {proc.returncode}): "
                       f"{(proc.stderr or proc.stdout).strip()[-400:]}")
    return proc.stdout.strip()


class OVN:
    """One private OVN central: ``start()``, ``stop()``, ``running()``, the two DBs'
    connection strings, chassis and their keeper. State (ports, chassis) is kept in
    ``RUN_DIR/ovn.json`` so ``python -m lab.ovn`` and a later process find it."""

    def __init__(self, run_dir, address="127.0.0.1"):
        self.run_dir = os.path.abspath(run_dir)
        self.address = require_loopback(address)
        self.ports, self.chassis = {}, {}
        self._load()

    # -- state
    def _path(self, name):
        return os.path.join(self.run_dir, name)

    def _load(self):
        try:
            with open(self._path("ovn.json")) as handle:
                data = json.load(handle)
        except (OSError, ValueError):
            return
        self.ports, self.chassis = data.get("ports", {}), data.get("chassis", {})

    def _save(self):
        tmp = self._path("ovn.json.tmp")
        with open(tmp, "w") as handle:
            json.dump({"ports": self.ports, "chassis": self.chassis,
                       "address": self.address}, handle, indent=1)
        os.replace(tmp, self._path("ovn.json"))

    def connection(self, db):
        """``tcp:ADDRESS:PORT`` of the ``nb`` or ``sb`` database."""
        return f"tcp:{self.address}:{self.ports[db]}"

    @property
    def nb_connection(self):
        return self.connection("nb")

    @property
    def sb_connection(self):
        return self.connection("sb")

    def _pid_file(self, name):
        return self._path(f"{name}.pid")

    def pids(self):
        return {name: read_pid(self._pid_file(name)) for name in ("nb", "sb", "northd", "keeper")}

    def running(self):
        return all(pid_alive(self.pids()[name]) for name in ("nb", "sb", "northd"))

    def rss_kb(self):
        """Resident memory of the OVN processes (KiB)."""
        return sum(rss_kb(pid) for pid in self.pids().values() if pid_alive(pid))

    # -- life cycle
    def start(self, timeout=20):
        """Create both DBs, start their servers and ovn-northd; wait until both answer."""
        os.makedirs(self.run_dir, mode=0o700, exist_ok=True)
        if self.running():
            return self
        for db in ("nb", "sb"):
            path = self._path(f"{db}.db")
            if not os.path.exists(path):
                _run(["ovsdb-tool", "create", path, SCHEMAS[db]], f"ovsdb-tool create {db}")
            self.ports[db] = free_port(self.address)
            _run(["ovsdb-server", path, f"--remote=punix:{self._path(db + '.sock')}",
                  f"--remote=ptcp:{self.ports[db]}:{self.address}",
                  f"--pidfile={self._pid_file(db)}", f"--unixctl={self._path(db + '.ctl')}",
                  f"--log-file={self._path(db + '.log')}", "--detach"],
                 f"ovsdb-server {db}")
        _run(["ovn-northd", f"--ovnnb-db=unix:{self._path('nb.sock')}",
              f"--ovnsb-db=unix:{self._path('sb.sock')}",
              f"--pidfile={self._pid_file('northd')}",
              f"--unixctl={self._path('northd.ctl')}",
              f"--log-file={self._path('northd.log')}", "--detach"], "ovn-northd")
        self._save()
        for db in ("nb", "sb"):
            wait_for(lambda db=db: listening(self.address, self.ports[db]), timeout,
                     f"OVN {db} database on {self.address}:{self.ports[db]}")
        self.nbctl("init")
        return self

    def stop(self, timeout=10):
        """Stop the keeper, northd and both DB servers by their own PIDs."""
        stopped = {}
        for name in ("keeper", "northd", "sb", "nb"):
            stopped[name] = stop_pid(read_pid(self._pid_file(name)), timeout)
            try:
                os.unlink(self._pid_file(name))
            except OSError:
                pass
        return stopped

    # -- the databases' own tools
    def nbctl(self, *args):
        return _run(["ovn-nbctl", f"--db={self.nb_connection}", *args], "ovn-nbctl")

    def sbctl(self, *args):
        return _run(["ovn-sbctl", f"--db={self.sb_connection}", *args], "ovn-sbctl")

    # -- chassis and their keeper
    def add_chassis(self, host, encap_ip, gateway=False):
        """Register ``host`` as a chassis (geneve, ``encap_ip`` unique per chassis),
        ``gateway=True`` where routers' gateway ports may live."""
        require_loopback(encap_ip)
        if host not in self.chassis:
            self.sbctl("chassis-add", host, "geneve", encap_ip)
        options = ["other_config:ovn-bridge-mappings=physnet1:br-ex",
                   "other_config:datapath-type=system",
                   "other_config:iface-types=geneve,patch,internal,system"]
        if gateway:
            options.append("other_config:ovn-cms-options=enable-chassis-as-gw")
        self.sbctl("set", "chassis", host, f"hostname={host}", *options)
        if not self.sbctl("--bare", "--columns=_uuid", "find", "chassis_private",
                          f"name={host}"):
            uuid = self.sbctl("--bare", "--columns=_uuid", "find", "chassis", f"name={host}")
            self.sbctl("create", "chassis_private", f"name={host}", f"chassis={uuid}",
                       "nb_cfg=0", f"nb_cfg_timestamp={int(time.time() * 1000)}")
        self.chassis[host] = {"encap_ip": encap_ip, "gateway": bool(gateway)}
        self._save()

    def keep_once(self):
        """What ovn-controller does for liveness: every chassis of the run reports the
        SB's current nb_cfg; returns that nb_cfg."""
        nb_cfg = int(self.sbctl("get", "SB_Global", ".", "nb_cfg") or 0)
        now = int(time.time() * 1000)
        for host in self.chassis:
            self.sbctl("set", "chassis_private", host, f"nb_cfg={nb_cfg}",
                       f"nb_cfg_timestamp={now}")
        return nb_cfg

    def start_keeper(self):
        """Run the keeper in a process of its own (``python -m lab.ovn keep``)."""
        if pid_alive(read_pid(self._pid_file("keeper"))):
            return read_pid(self._pid_file("keeper"))
        env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(
            os.path.abspath(__file__))))
        with open(self._path("keeper.log"), "ab") as log:
            proc = subprocess.Popen(  # pylint: disable=consider-using-with
                [sys.executable, "-m", "lab.ovn", "keep", self.run_dir], env=env,
                stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        with open(self._pid_file("keeper"), "w") as handle:
            handle.write(f"{proc.pid}\n")
        return proc.pid


def keep(run_dir, interval=KEEP_INTERVAL):
    """The keeper's loop: until killed, every ``interval`` s (chassis re-read each time)."""
    while True:
        ovn = OVN(run_dir)
        try:
            ovn.keep_once()
        except (OVNError, subprocess.TimeoutExpired) as exc:
            print(f"keeper: {exc}", file=sys.stderr, flush=True)
        time.sleep(interval)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lab.ovn", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("up", "down", "status", "keep"))
    parser.add_argument("run_dir")
    args = parser.parse_args(argv)
    ovn = OVN(args.run_dir)
    if args.command == "up":
        ovn.start()
        ovn.start_keeper()
        print(json.dumps({"nb": ovn.nb_connection, "sb": ovn.sb_connection}))
    elif args.command == "down":
        print(json.dumps(ovn.stop()))
    elif args.command == "status":
        print(json.dumps({"running": ovn.running(), "pids": ovn.pids(),
                          "chassis": ovn.chassis}))
    else:
        keep(args.run_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
