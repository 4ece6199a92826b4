"""A Galera cluster of MariaDB nodes for the lab and the tests (Debian's galera-4, no systemd).

Each node is a ``lab.mariadb.MariaDB`` with wsrep on, under ``RUN_DIR/nN``: its own datadir,
socket, SQL port and the three Galera ports (gcomm, IST, SST), chosen free once and kept in
``RUN_DIR/cluster.json`` so that a restart finds its peers again. The first start bootstraps
node 1 (``--wsrep-new-cluster``) and the others join it by SST (mariabackup); a later start
bootstraps the node a clean stop marked ``safe_to_bootstrap`` (else the highest seqno) and
lets the others rejoin by IST. Every node shares the root password (``RUN_DIR/root_password``,
0600) and an SST account whose password sits in the nodes' 0600 configs only.

    cluster = GaleraCluster("/tmp/lf-gal")
    cluster.start()                  # 3 nodes Synced
    cluster.status()                 # per node: size, state, ready, seqno ...
    cluster.stop()                   # TERM each by its own PID, node 1 last

From a shell: ``python -m lab.galera up|down|status RUN_DIR [--size N]``.
"""
import json
import os
import secrets
import sys
import time

from lab import procs
from lab.mariadb import MariaDB, MariaDBError, _write_private

# the lab reads a node's files as leapfrog's galera module does
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "_utils"))
import leapfrog_galera  # noqa: E402  pylint: disable=wrong-import-position

PROVIDER = "/usr/lib/galera/libgalera_smm.so"
PORT_KINDS = ("sql", "gcomm", "ist", "sst")
JOIN_TIMEOUT = 300  # an SST on a loaded 2-core machine; 16 s idle (FACTS)


class GaleraError(MariaDBError):
    """The lab's Galera cluster could not be started, joined or stopped."""


class GaleraNode(MariaDB):
    """One wsrep node: a MariaDB whose config adds Galera's settings and fixed ports."""

    def __init__(self, run_dir, name, ports, gcomm_peers, sst_password, address="127.0.0.1"):
        super().__init__(run_dir, address=address, port=ports["sql"])
        self.name = name
        self.ports = dict(ports)
        self.gcomm_peers = list(gcomm_peers)
        self._sst_password = sst_password
        self.sst_log_dir = os.path.join(self.run_dir, "sst_log_archive")

    def running(self):
        """True when this node's mariadbd runs (started by the lab, or by leapfrog's galera
        module: its pid file is the truth then)."""
        if super().running():
            return True
        pid = procs.read_pid(self.pid_file)
        if pid and self._is_ours(pid):
            self.pid, self._proc = pid, None
            return True
        return False

    def stop(self, timeout=30):
        """Stop this node by its PID (also when leapfrog restarted it)."""
        self.running()
        super().stop(timeout)

    def _write_plain_config(self):
        super()._write_config()

    def _write_config(self):
        super()._write_config()
        peers = ",".join(f"{self.address}:{port}" for port in self.gcomm_peers)
        options = (f"base_port={self.ports['gcomm']};"
                   f"gmcast.listen_addr=tcp://{self.address}:{self.ports['gcomm']};"
                   f"ist.recv_addr={self.address}:{self.ports['ist']};gcache.size=64M")
        with open(self.config, "a", encoding="utf-8") as handle:
            handle.write(
                "[mariadbd]\n"
                "binlog_format = ROW\n"
                "innodb_autoinc_lock_mode = 2\n"
                "innodb_flush_log_at_trx_commit = 2\n"
                "wsrep_on = ON\n"
                f"wsrep_provider = {PROVIDER}\n"
                f"wsrep_cluster_name = leapfrog-lab\n"
                f"wsrep_cluster_address = gcomm://{peers}\n"
                f"wsrep_node_name = {self.name}\n"
                f"wsrep_node_address = {self.address}\n"
                f'wsrep_provider_options = "{options}"\n'
                f"wsrep_sst_receive_address = {self.address}:{self.ports['sst']}\n"
                "wsrep_sst_method = mariabackup\n"
                f"wsrep_sst_auth = sst:{self._sst_password}\n"
                "[sst]\n"
                f"sst-log-archive-dir = {self.sst_log_dir}\n"
            )

    def installed(self):
        """True once the datadir holds the system schema (installed, or received by SST)."""
        return os.path.isdir(os.path.join(self.datadir, "mysql"))

    def grastate(self):
        """This node's grastate.dat (see ``read_grastate``)."""
        return leapfrog_galera.read_grastate(self.datadir)

    def start(self, timeout=JOIN_TIMEOUT, bootstrap=False):  # pylint: disable=arguments-differ
        """Start this node: ``bootstrap`` makes it a new cluster's first node (installed on
        first use, root and SST accounts created); otherwise it joins its peers (SST into an
        empty datadir, IST when it has one). Returns once the node is Synced."""
        if self.running():
            return self
        os.makedirs(self.run_dir, exist_ok=True)
        os.chmod(self.run_dir, 0o700)
        os.makedirs(self.datadir, exist_ok=True)
        fresh = bootstrap and not self.installed()
        if fresh:
            self._write_plain_config()
            self._install()
        self._write_config()
        self._launch(timeout, ["--wsrep-new-cluster"] if bootstrap else [])
        if fresh:
            self._set_root_password()
            with self.connect() as conn, conn.cursor() as cur:
                cur.execute("CREATE OR REPLACE USER 'sst'@'localhost' IDENTIFIED BY %s",
                            (self._sst_password,))
                cur.execute("GRANT RELOAD, PROCESS, LOCK TABLES, BINLOG MONITOR ON *.* "
                            "TO 'sst'@'localhost'")
        self._write_client_cnf()
        self._save_state()
        self.wait_synced(timeout)
        return self

    def wsrep_status(self):
        """The node's state as leapfrog's galera module reads it (size, state, ready,
        primary, desync, recv_queue, seqno, uuid)."""
        with self.connect(connect_timeout=5) as conn:
            return leapfrog_galera.wsrep_status(conn)

    def wait_synced(self, timeout=JOIN_TIMEOUT):
        """Wait until this node is Synced and ready; raise GaleraError with its log if not."""
        def synced():
            try:
                status = self.wsrep_status()
            except Exception:  # pylint: disable=broad-except
                return False
            return status["state"] == "Synced" and status["ready"]
        try:
            procs.wait_for(synced, timeout, f"galera node {self.name}", interval=0.3)
        except TimeoutError as exc:
            raise GaleraError(f"{exc}: {self._log_tail()}") from exc

    def pillar(self, via="socket"):
        """The node's connection for leapfrog's pillar (socket by default), plus its files."""
        return {**super().pillar(via), "defaults_file": self.config, "datadir": self.datadir,
                "node_name": self.name}


class GaleraCluster:
    """``size`` Galera nodes under ``run_dir`` (``nodes``: GaleraNode list, node 1 first)."""

    def __init__(self, run_dir, size=3, address="127.0.0.1"):
        self.run_dir = os.path.abspath(run_dir)
        self.address = address
        self.state_file = os.path.join(self.run_dir, "cluster.json")
        state = self._load_or_create(size)
        self.size = len(state["nodes"])
        gcomm = [node["ports"]["gcomm"] for node in state["nodes"]]
        self.nodes = [GaleraNode(os.path.join(self.run_dir, node["name"]), node["name"],
                                 node["ports"], gcomm, state["sst_password"], address)
                      for node in state["nodes"]]
        password_file = os.path.join(self.run_dir, "root_password")
        if os.path.exists(password_file):
            with open(password_file, encoding="utf-8") as handle:
                self._share_password(handle.read().strip())

    def _load_or_create(self, size):
        if os.path.exists(self.state_file):
            with open(self.state_file, encoding="utf-8") as handle:
                return json.load(handle)
        if not 1 <= int(size) <= 9:
            raise GaleraError(f"cluster size {size!r}: use 1 to 9 nodes (3 is a real cluster)")
        os.makedirs(self.run_dir, exist_ok=True)
        os.chmod(self.run_dir, 0o700)
        state = {"sst_password": secrets.token_urlsafe(18), "nodes": [
            {"name": f"n{index}",
             "ports": {kind: procs.free_port(self.address) for kind in PORT_KINDS}}
            for index in range(1, int(size) + 1)]}
        _write_private(self.state_file, json.dumps(state, indent=1))
        return state

    def _share_password(self, password):
        for node in self.nodes:
            node.root_password = password

    @property
    def root_password(self):
        """The cluster's root password (every node's, as SST copies the grants)."""
        return self.nodes[0].root_password

    def bootstrap_node(self):
        """The node to bootstrap a stopped cluster from: the one a clean stop marked
        ``safe_to_bootstrap``, else the highest seqno; node 1 on a new cluster."""
        states = [(node, node.grastate()) for node in self.nodes]
        for node, state in states:
            if state.get("safe_to_bootstrap") == 1:
                return node
        known = [(state.get("seqno", -1), -index, node)
                 for index, (node, state) in enumerate(states) if state]
        if not known:
            return self.nodes[0]
        seqno, _, node = max(known, key=lambda item: item[:2])
        if seqno < 0:
            raise GaleraError(
                "no node knows its position (every grastate.dat says seqno -1 after a crash): "
                "bootstrap with `salt <db node> galera.bootstrap` (it recovers the positions)")
        return node

    def start(self):
        """Start every stopped node: bootstrap when none runs, then join one at a time."""
        if not any(node.running() for node in self.nodes):
            first = self.bootstrap_node()
            first.start(bootstrap=True)
            _write_private(os.path.join(self.run_dir, "root_password"),
                           first.root_password + "\n")
            self._share_password(first.root_password)
        for node in self.nodes:
            if not node.running():
                node.start()
        return self

    def stop(self, timeout=60):
        """Stop every node by its PID, the last node first and node 1 last (it is then the
        one marked safe to bootstrap)."""
        errors = []
        for node in reversed(self.nodes):
            try:
                node.stop(timeout)
            except Exception as exc:  # pylint: disable=broad-except
                errors.append(f"{node.name}: {exc}")
        if errors:
            raise GaleraError("; ".join(errors))

    def status(self):
        """Per node: running, and when it runs cluster size, state, ready, desync, recv queue
        and last committed seqno; when stopped its grastate.dat."""
        out = {}
        for node in self.nodes:
            entry = {"running": node.running(), "port": node.port, "socket": node.socket}
            if entry["running"]:
                try:
                    status = node.wsrep_status()
                    entry.update({key: status[key] for key in (
                        "size", "state", "ready", "desync", "recv_queue", "seqno")})
                except Exception as exc:  # pylint: disable=broad-except
                    entry["error"] = str(exc)
            else:
                entry["grastate"] = node.grastate()
            out[node.name] = entry
        return out

    def connect(self, database=None, **kwargs):
        """A connection to the first running node (root over its socket)."""
        for node in self.nodes:
            if node.running():
                return node.connect(database, **kwargs)
        raise GaleraError("no node of the cluster runs: `python -m lab.galera up RUN_DIR`")

    def __repr__(self):
        return f"GaleraCluster({self.run_dir!r}, {self.size} nodes)"


def describe(status):
    """One line per node for ``status``."""
    lines = []
    for name, entry in status.items():
        if entry["running"]:
            lines.append(f"{name}: {entry.get('state', '?')} size={entry.get('size', '?')} "
                         f"ready={entry.get('ready')} seqno={entry.get('seqno')} "
                         f"port={entry['port']}" + (f" error={entry['error']}"
                                                    if "error" in entry else ""))
        else:
            lines.append(f"{name}: stopped {entry['grastate']}")
    return "\n".join(lines)


def main(argv=None):
    """``python -m lab.galera up|down|status RUN_DIR [--size N]``."""
    import argparse  # pylint: disable=import-outside-toplevel

    parser = argparse.ArgumentParser(prog="python -m lab.galera",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=("up", "down", "status"))
    parser.add_argument("run_dir")
    parser.add_argument("--size", type=int, default=3)
    args = parser.parse_args(argv)
    try:
        cluster = GaleraCluster(args.run_dir, size=args.size)
        started = time.monotonic()
        if args.action == "up":
            cluster.start()
            print(f"up in {time.monotonic() - started:.1f} s", file=sys.stderr)
        elif args.action == "down":
            cluster.stop()
    except MariaDBError as exc:
        print(f"lab.galera: {exc}", file=sys.stderr)
        return 1
    status = cluster.status()
    print(describe(status))
    return 0 if args.action == "down" or all(e["running"] for e in status.values()) else 3


if __name__ == "__main__":
    sys.exit(main())
