"""Component starter: the lab's salt-master (cfg01) and its salt-minions.

Real ``salt-master``/``salt-minion`` daemons from the current venv, each with its own
config dir, pid file and log under ``<run_dir>/salt``; the master listens on its loopback
address on free ports, serves this repository as file_roots (then lab/salt: the lab's own
deployment, ``lab_openstack``) and lab/pillar as pillar. Every daemon gets the option
``leapfrog_lab_dir`` (the run dir); ``<run_dir>/lab.json`` names the lab's code.
Minion keys are generated here and placed in the master's accepted keys before a minion
starts, as a deployment tool seeds them: the master never auto-accepts.

    python -m lab.salt_cluster up RUN_DIR [--computes N]
    python -m lab.salt_cluster down RUN_DIR
"""
import argparse
import concurrent.futures
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import yaml

from lab import procs, topology

SALT_BIN = os.path.dirname(sys.executable)
# What a minion needs once up, as one Salt job in the compound form (the functions, then
# each one's arguments): the repository's and lab/salt's _utils, _modules and _states, then
# its pillar. A saltutil.sync_all asks the master for twenty kinds, one round trip each.
SYNC_FUNCTIONS = ",".join([f"saltutil.sync_{kind}" for kind in ("utils", "modules", "states")]
                          + ["saltutil.refresh_pillar"])
SYNC_ARGUMENTS = ",,,wait=True"


def _pgid(pid):
    try:
        return os.getpgid(pid)
    except OSError:  # gone meanwhile
        return None


class SaltCluster:
    """A salt-master and minions for ``nodes`` (lab.topology.Node) under ``run_dir``."""

    def __init__(self, run_dir, nodes=None, env=None):
        self.run_dir = os.path.abspath(run_dir)
        self.base = os.path.join(self.run_dir, "salt")
        self.nodes = list(nodes if nodes is not None else topology.nodes())
        self.env = {**os.environ, "LEAPFROG_LAB_DIR": self.run_dir, **(env or {})}
        self.state_file = os.path.join(self.base, "cluster.json")

    # paths -----------------------------------------------------------------------------
    def conf_dir(self, name):
        return os.path.join(self.base, name, "conf")

    def pid_file(self, name):
        return os.path.join(self.base, name, "run", f"{name}.pid")

    @property
    def master_conf_dir(self):
        return self.conf_dir(topology.MASTER_ID)

    # config ----------------------------------------------------------------------------
    def _ports(self):
        if os.path.exists(self.state_file):
            with open(self.state_file) as handle:
                return json.load(handle)
        ports = {"publish_port": procs.free_port(), "ret_port": procs.free_port()}
        os.makedirs(self.base, exist_ok=True)
        with open(self.state_file, "w") as handle:
            json.dump(ports, handle)
        return ports

    def _write(self, name, kind, config):
        conf = self.conf_dir(name)
        os.makedirs(conf, exist_ok=True)
        root = os.path.join(self.base, name)
        config = {
            "root_dir": root,
            "pidfile": self.pid_file(name),
            "pki_dir": os.path.join(root, "pki", kind),
            # short: unix sockets live here and their paths must stay under 108 bytes
            "cachedir": os.path.join(root, "cache"),
            "sock_dir": os.path.join(root, "sock"),
            "log_file": os.path.join(root, "log", f"{kind}.log"),
            "log_level_logfile": "info",
            "user": "root",
            "leapfrog_lab_dir": self.run_dir,
            **config,
        }
        with open(os.path.join(conf, kind), "w") as handle:
            yaml.safe_dump(config, handle)

    def configure(self):
        """Write the master's and every minion's config and pre-accept the minions' keys."""
        ports = self._ports()
        with open(os.path.join(self.run_dir, "lab.json"), "w") as handle:
            json.dump({"repo": topology.REPO}, handle)
        self._write(topology.MASTER_ID, "master", {
            "id": topology.MASTER_ID,
            "interface": topology.MASTER_ADDRESS,
            **ports,
            "file_roots": {"base": [topology.REPO, os.path.join(topology.REPO, "lab", "salt")]},
            "pillar_roots": {"base": [topology.PILLAR_ROOT]},
            "file_ignore_regex": [r"/\.git($|/)", r"/__pycache__($|/)"],
            "auto_accept": False,
            "open_mode": False,
        })
        accepted = os.path.join(self.base, topology.MASTER_ID, "pki", "master", "minions")
        os.makedirs(accepted, exist_ok=True)
        for node in self.nodes:
            self._write(node.id, "minion", {
                "id": node.id,
                "master": topology.MASTER_ADDRESS,
                "master_port": ports["ret_port"],
                "publish_port": ports["publish_port"],
                "grains": node.grains(),
                "acceptance_wait_time": 1,
                "random_reauth_delay": 0,
            })
            self._seed_key(node.id, accepted)

    def _seed_key(self, minion_id, accepted):
        pki = os.path.join(self.base, minion_id, "pki", "minion")
        if os.path.exists(os.path.join(pki, "minion.pub")):
            return
        os.makedirs(pki, exist_ok=True)
        subprocess.run([os.path.join(SALT_BIN, "salt-key"), "-c", self.master_conf_dir,
                        "--gen-keys=minion", f"--gen-keys-dir={pki}"],
                       check=True, capture_output=True, env=self.env)
        shutil.copy(os.path.join(pki, "minion.pub"), os.path.join(accepted, minion_id))

    # life cycle --------------------------------------------------------------------------
    def start_master(self):
        self._daemon("salt-master", topology.MASTER_ID)

    def start_minion(self, minion_id):
        self._daemon("salt-minion", minion_id)

    def _daemon(self, program, name):
        if procs.alive(self.pid_file(name)):
            return
        subprocess.run([os.path.join(SALT_BIN, program), "-c", self.conf_dir(name), "-d"],
                       check=True, env=self.env)
        procs.wait_for(lambda: procs.alive(self.pid_file(name)), 30, f"{program} {name}")

    def crash_master(self, timeout=20):
        """SIGKILL the salt-master and every process it forked (its process group), as a
        crashed host would leave it; ``start_master`` brings it back. Returns the PIDs."""
        pid = procs.read_pid(self.pid_file(topology.MASTER_ID))
        if not procs.pid_alive(pid):
            raise RuntimeError("the salt-master does not run")
        group = os.getpgid(pid)
        members = [int(p) for p in os.listdir("/proc") if p.isdigit()
                   and _pgid(int(p)) == group]
        os.killpg(group, signal.SIGKILL)
        procs.wait_for(lambda: not any(procs.pid_alive(m) for m in members), timeout,
                       "the killed salt-master's processes to go")
        os.remove(self.pid_file(topology.MASTER_ID))
        return members

    def stop_minion(self, minion_id):
        procs.stop(self.pid_file(minion_id))

    def up(self, timeout=120, elsewhere=()):
        """Start the master and every minion but those started ``elsewhere`` (the bridge
        starts a VM's); return when each answers test.ping."""
        self.configure()
        self.start_master()
        for node in self.nodes:
            if node.id not in elsewhere:
                self.start_minion(node.id)
        self.wait_minions([n.id for n in self.nodes], timeout)
        self.sync("*")
        self.run("saltutil.sync_all")

    def sync(self, target, tgt_type="glob"):
        """Sync the custom modules to ``target``'s minions and refresh their pillar, in one
        Salt job (``SYNC_FUNCTIONS``)."""
        return self.salt(target, SYNC_FUNCTIONS, SYNC_ARGUMENTS, tgt_type=tgt_type)

    def down(self):
        """Stop every minion (side by side: each takes seconds to stop), then the master,
        each by its own PID."""
        if self.nodes:
            with concurrent.futures.ThreadPoolExecutor(len(self.nodes)) as pool:
                list(pool.map(self.stop_minion, [node.id for node in self.nodes]))
        procs.stop(self.pid_file(topology.MASTER_ID))

    def status(self):
        """Return {name: running?} for the master and each minion."""
        names = [topology.MASTER_ID] + [n.id for n in self.nodes]
        return {name: procs.alive(self.pid_file(name)) for name in names}

    def rss_mb(self):
        """Resident memory of every salt daemon process of this cluster (master workers
        included), in MB."""
        total = 0
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as handle:
                    ours = self.base.encode() in handle.read()
            except OSError:
                continue
            if ours:
                total += procs.vm_rss_kb(pid)
        return round(total / 1024)

    # commands --------------------------------------------------------------------------
    def _cli(self, program, args, timeout):
        argv = [os.path.join(SALT_BIN, program), "-c", self.master_conf_dir, "--out=json",
                *args]
        return subprocess.run(argv, capture_output=True, text=True, env=self.env,
                              timeout=timeout)

    def salt(self, target, *args, tgt_type="glob", timeout=120):
        """Run ``salt TARGET ARGS`` and return the parsed JSON (raises on failure)."""
        flag = {"glob": [], "compound": ["-C"], "list": ["-L"]}[tgt_type]
        proc = self._cli("salt", [*flag, f"--timeout={timeout}", "--static", target, *args],
                         timeout + 30)
        if proc.returncode != 0:
            raise RuntimeError(f"salt {target} {' '.join(args)} exited {proc.returncode}: "
                               f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        return json.loads(proc.stdout or "{}")

    def run(self, *args, timeout=1800, check=True):
        """Run ``salt-run ARGS``; return the CompletedProcess (stdout is JSON)."""
        proc = self._cli("salt-run", list(args), timeout)
        if check and proc.returncode != 0:
            raise RuntimeError(f"salt-run {' '.join(args)} exited {proc.returncode}: "
                               f"{proc.stdout[-3000:]}{proc.stderr[-2000:]}")
        return proc

    def answering(self, ids, timeout=5):
        """The minions of ``ids`` that answer test.ping within ``timeout`` s. A silent one
        costs the timeout and 2 s more: Salt then asks the minions for the job for its
        ``gather_job_timeout`` (10 s by default; 2 s in this CLI's own copy of the master's
        config, so the daemons keep the default)."""
        proc = subprocess.run(
            [os.path.join(SALT_BIN, "salt"), "-c", self._ping_conf_dir(), "--out=json", "-L",
             f"--timeout={timeout}", "--static", ",".join(ids), "test.ping"],
            capture_output=True, text=True, env=self.env, timeout=timeout + 60)
        try:
            return {k for k, v in json.loads(proc.stdout or "{}").items() if v is True}
        except ValueError:
            return set()

    def _ping_conf_dir(self):
        conf = os.path.join(self.base, topology.MASTER_ID, "conf-ping")
        if not os.path.exists(os.path.join(conf, "master")):
            with open(os.path.join(self.master_conf_dir, "master")) as handle:
                config = yaml.safe_load(handle)
            os.makedirs(conf, exist_ok=True)
            with open(os.path.join(conf, "master"), "w") as handle:
                yaml.safe_dump(dict(config, gather_job_timeout=2), handle)
        return conf

    def wait_minions(self, ids, timeout=120):
        """Ping until every minion in ``ids`` answers."""
        deadline = time.monotonic() + timeout
        while True:
            missing = sorted(set(ids) - self.answering(ids))
            if not missing:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"minions did not answer within {timeout} s: {missing}")
            time.sleep(1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument("run_dir")
    parser.add_argument("--computes", type=int, default=2)
    args = parser.parse_args(argv)
    cluster = SaltCluster(args.run_dir, topology.nodes(computes=args.computes))
    if args.action == "up":
        cluster.up()
    elif args.action == "down":
        cluster.down()
    print(json.dumps(cluster.status(), indent=1))


if __name__ == "__main__":
    main()
