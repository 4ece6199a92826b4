"""The lab's cloud-init stand-in: ties a node's host-side salt-minion to its VM.

In a real cloud a controller's salt-minion runs inside its VM, and cloud-init configures it
from the NoCloud seed the product attached (minion id, master address, key pair, grains).
In the lab the VM is the tiny busybox guest and the minion runs on the host, so this bridge
plays that part. It watches the lab's private libvirtd (``lab.libvirt``), polling the
domains' state and run id (a restart between two polls is a new run id):

- a domain starts: the bridge reads its first disk, its CD-ROM and its serial console log
  from the domain XML. With a NoCloud seed attached (``lab.guest.read_seed``) whose
  instance-id this disk has not seen, the seed's ``salt_minion`` (conf ``id``/``master``,
  ``public_key``/``private_key``, ``grains``) becomes this disk's minion state, as cloud-init
  would write it into the guest's /etc/salt once per instance. A disk without a seed and
  without state adopts the node's current minion config and keys (what lab.salt_cluster
  wrote: the minion "installed in the old image"). Minion state is kept per disk under
  ``RUN_DIR/bridge/disks/``, so a restored old disk brings its old minion id, key and
  grains back. Once the guest's console shows its ready line (``LEAPFROG-GUEST os=...``),
  the node's minion config and pki under lab.salt_cluster's layout are rewritten from that
  state and the minion is started (``SaltCluster.start_minion``). The OS grains (os,
  oscodename, osrelease) are those the guest reports on its console (its disk's
  /etc/os-release), standing for the core grains a real minion detects.
- what a node has installed lives with its disk: the disk's state also keeps the OpenStack
  release deployed on it and whether its services are enabled (``deployed``: written by
  ``record_deployed``, which the lab's deploy module lab_openstack calls; an adopted disk
  takes what the lab cloud runs for that node; a fresh seed has nothing deployed). After
  the minion, the bridge starts that node's services at that release (``OpenStackCloud
  .start_node``): a restored old disk comes back with its old services.
- a domain stops (or disappears): that node's OpenStack services are killed by their PIDs
  (at once, as a powered-off VM's are), then its minion is stopped.

Events of one domain are handled in order, each in its own thread (a start waits for the
previous stop of that domain to finish).

Only domains named after a lab node (lab.topology) or carrying a seed are handled. Product
code never knows this exists.

    python -m lab.bridge RUN_DIR [--uri URI]    # foreground; pid file RUN_DIR/bridge/bridge.pid

``Bridge(run_dir)`` is the same thing in-process (``start()``/``stop()``); ``spawn(run_dir)``
/ ``terminate(run_dir)`` run it as its own process. Actions are appended to
``RUN_DIR/bridge/events.jsonl`` (one JSON object per line, never a key).
"""
import argparse
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET

import yaml

from lab import guest, procs, topology
from lab.openstack_cloud import OpenStackCloud, _locked
from lab.libvirt import Libvirt
from lab.salt_cluster import SaltCluster

log = logging.getLogger("lab.bridge")

OS_KEYS = ("os", "oscodename", "osrelease")


def _disk_key(path):
    return re.sub(r"[^A-Za-z0-9._-]", "_", os.path.abspath(path).strip("/"))[-120:]


def _node_file(run_dir, node):
    return os.path.join(os.path.abspath(run_dir), "bridge", "nodes", f"{node}.json")


def _state_file(run_dir, disk):
    return os.path.join(os.path.abspath(run_dir), "bridge", "disks", _disk_key(disk),
                        "state.json")


def _read_json(path):
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def _write_json(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as handle:
        json.dump(data, handle)
    os.replace(path + ".tmp", path)


def events(run_dir):
    """Every action the bridge of ``run_dir`` recorded, oldest first."""
    path = os.path.join(os.path.abspath(run_dir), "bridge", "events.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def node_disk(run_dir, node):
    """The disk the node's running domain boots (None: no domain of it runs)."""
    return (_read_json(_node_file(run_dir, node)) or {}).get("disk")


def deployed(run_dir, node):
    """``{"release", "enabled"}`` recorded on the node's current disk (None: nothing)."""
    disk = node_disk(run_dir, node)
    return ((_read_json(_state_file(run_dir, disk)) or {}).get("deployed")) if disk else None


def record_deployed(run_dir, node, release, enabled):
    """Record on the node's current disk what is deployed there; return the disk (None when
    no domain of the node runs: a node without a VM)."""
    disk = node_disk(run_dir, node)
    if not disk:
        return None
    path = _state_file(run_dir, disk)
    with _locked(os.path.join(os.path.abspath(run_dir), "bridge", "disks.lock")):
        state = _read_json(path)
        if state is None:
            return None
        state["deployed"] = {"release": str(release), "enabled": bool(enabled)}
        _write_json(path, state)
    return disk


def parse_domain(xml):
    """{"disk": first disk file, "cdroms": [files], "console": serial log file or None}."""
    root = ET.fromstring(xml)
    disk, cdroms = None, []
    for node in root.findall("./devices/disk"):
        source = node.find("source")
        path = source.get("file") if source is not None else None
        if not path:
            continue
        if node.get("device") == "cdrom":
            cdroms.append(path)
        elif node.get("device", "disk") == "disk" and disk is None:
            disk = path
    console = None
    for node in root.findall("./devices/serial") + root.findall("./devices/console"):
        source = node.find("source")
        if node.get("type") == "file" and source is not None and source.get("path"):
            console = source.get("path")
            break
    return {"disk": disk, "cdroms": cdroms, "console": console}


def guest_os_grains(codename):
    """Grains a minion would detect on a guest running ``codename``."""
    for known in (topology.OLD_OS, topology.NEW_OS):
        if known["oscodename"] == codename:
            return dict(known)
    fields = guest.RELEASES.get(codename)
    if fields:
        return {"os": fields["NAME"].split()[0], "oscodename": codename,
                "osrelease": fields["VERSION_ID"]}
    return {"oscodename": codename}


class Bridge:
    """Watch the lab's libvirtd and run each node's minion while its domain runs."""

    def __init__(self, run_dir, uri=None, nodes=None, interval=0.5, boot_timeout=240):
        self.run_dir = os.path.abspath(run_dir)
        self.cluster = SaltCluster(self.run_dir, nodes if nodes is not None
                                   else topology.nodes())
        self.known = {n.id: n for n in self.cluster.nodes}
        self.uri = uri or Libvirt(self.run_dir).uri
        self.dir = os.path.join(self.run_dir, "bridge")
        self.pid_file = os.path.join(self.dir, "bridge.pid")
        self.events_file = os.path.join(self.dir, "events.jsonl")
        self.interval = interval
        self.boot_timeout = boot_timeout
        self.cloud_dir = os.path.join(self.run_dir, "os")
        self._runs = {}      # domain -> libvirt run id while active
        self._last = {}      # domain -> its latest worker (the next one waits for it)
        self._owner = {}     # domain -> minion id started for it
        self._gen = {}       # domain -> generation (a stop cancels a pending start)
        self._started = set()
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread = None
        self._workers = []
        os.makedirs(self.dir, exist_ok=True)

    # -- record ------------------------------------------------------------------------------
    def _event(self, action, **data):
        entry = {"time": round(time.time(), 3), "action": action, **data}
        log.info("bridge: %s", json.dumps(entry))
        with self._lock, open(self.events_file, "a") as handle:
            handle.write(json.dumps(entry) + "\n")

    def events(self):
        """Every recorded action, oldest first."""
        return events(self.run_dir)

    # -- per-disk minion state ------------------------------------------------------------------
    def _state_dir(self, disk):
        return os.path.join(self.dir, "disks", _disk_key(disk))

    def _load_state(self, disk):
        return _read_json(_state_file(self.run_dir, disk))

    def _save_state(self, disk, state, pub, pem=None, pki_from=None):
        folder = self._state_dir(disk)
        pki = os.path.join(folder, "pki")
        shutil.rmtree(pki, ignore_errors=True)
        if pki_from:
            shutil.copytree(pki_from, pki)
        else:
            os.makedirs(pki, mode=0o700)
            for name, text, mode in (("minion.pub", pub, 0o644), ("minion.pem", pem, 0o600)):
                fd = os.open(os.path.join(pki, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                             mode)
                with os.fdopen(fd, "w") as handle:
                    handle.write(text)
        with _locked(os.path.join(self.dir, "disks.lock")):
            _write_json(os.path.join(folder, "state.json"), state)

    def _state_from_seed(self, disk, seed):
        user = seed.get("user_data") or {}
        meta = seed.get("meta_data") or {}
        salt_minion = user.get("salt_minion") or {}
        conf = dict(salt_minion.get("conf") or {})
        if not conf.get("id") or not salt_minion.get("private_key"):
            raise ValueError("seed has no salt_minion id/private_key")
        state = {"instance_id": meta.get("instance-id"), "minion_id": conf["id"],
                 "source": "seed", "conf": conf, "grains": salt_minion.get("grains") or {}}
        self._save_state(disk, state, salt_minion["public_key"], salt_minion["private_key"])
        return state

    def _adopt(self, disk, minion_id):
        conf_path = os.path.join(self.cluster.conf_dir(minion_id), "minion")
        pki = os.path.join(self.cluster.base, minion_id, "pki", "minion")
        if not os.path.exists(conf_path) or not os.path.exists(os.path.join(pki, "minion.pem")):
            return None
        with open(conf_path) as handle:
            conf = yaml.safe_load(handle) or {}
        grains = conf.pop("grains", {}) or {}
        state = {"instance_id": None, "minion_id": minion_id, "source": "adopted",
                 "conf": conf, "grains": grains}
        cloud = self._cloud()
        if cloud is not None and minion_id in cloud.controllers:
            # the old image had the node installed: what the lab cloud runs for it
            release = cloud.controllers[minion_id]["nova-api"].release
            state["deployed"] = {"release": release,
                                 "enabled": cloud.enabled.get(minion_id, True)}
        self._save_state(disk, state, None, pki_from=pki)
        return state

    def _cloud(self):
        """The lab's OpenStack cloud (None: this lab runs none)."""
        if not os.path.exists(os.path.join(self.cloud_dir, "cloud.json")):
            return None
        return OpenStackCloud.attach(self.cloud_dir)

    def _start_services(self, name, node, disk):
        deployed_ = (self._load_state(disk) or {}).get("deployed")
        cloud = self._cloud()
        if cloud is None or not cloud.knows(node):
            return
        if not deployed_ or not deployed_.get("enabled"):
            self._event("services-none", domain=name, node=node, deployed=deployed_)
            return
        try:
            cloud.start_node(node, release=deployed_["release"])
        except Exception as exc:  # pylint: disable=broad-except
            self._event("error", domain=name, node=node,
                        error=f"services at {deployed_['release']}: {exc}")
            return
        self._event("services-started", domain=name, node=node, release=deployed_["release"])

    def _stop_services(self, name, node):
        cloud = self._cloud()
        if cloud is not None and cloud.knows(node):
            cloud.stop_node(node, timeout=0)
            self._event("services-stopped", domain=name, node=node)

    # -- domain life cycle ---------------------------------------------------------------------
    def _read_seed(self, cdroms):
        for path in cdroms:
            if not os.path.exists(path):
                continue
            try:
                seed = guest.read_seed(path)
            except Exception as exc:  # not an ISO / not readable: no seed
                log.warning("bridge: cannot read %s as a seed: %s", path, exc)
                continue
            if seed.get("label", "").lower() == "cidata":
                return path, seed
        return None, None

    def _on_start(self, name, run_id, xml, initial, gen, before):
        try:
            self._start_node(name, run_id, xml, initial, gen, before)
        except Exception as exc:
            log.exception("bridge: start of %s failed", name)
            self._event("error", domain=name, error=f"{type(exc).__name__}: {exc}")

    def _start_node(self, name, run_id, xml, initial, gen, before):
        found = parse_domain(xml)
        disk, console = found["disk"], found["console"]
        seed_path, seed = self._read_seed(found["cdroms"])
        if not disk or (seed is None and name not in self.known):
            return
        if initial and before:
            before -= 1  # running before the bridge came up: its last line counts
        state = self._load_state(disk)
        if seed is not None:
            instance = (seed.get("meta_data") or {}).get("instance-id")
            if state is None or state.get("instance_id") != instance:
                state = self._state_from_seed(disk, seed)
                self._event("seed", domain=name, node=state["minion_id"], seed=seed_path,
                            instance_id=instance, disk=disk)
        if state is None:
            state = self._adopt(disk, name)
            if state is None:
                self._event("skip", domain=name, reason="no seed and no minion config")
                return
            self._event("adopt", domain=name, node=name, disk=disk)
        minion_id = state["minion_id"]
        self._event("domain-started", domain=name, node=minion_id, run=run_id)
        line = None
        if console:
            deadline = time.monotonic() + self.boot_timeout
            while time.monotonic() < deadline and not self._stop.is_set():
                if self._gen.get(name) != gen:
                    return  # stopped before it booted
                lines = guest.console_lines(console)
                if len(lines) > before:
                    line = lines[-1]
                    break
                time.sleep(0.2)
            if line is None:
                self._event("error", domain=name, error="guest never showed its ready line")
                return
        with self._lock:
            if self._gen.get(name) != gen or self._stop.is_set():
                return
            grains = {}
            node = self.known.get(minion_id)
            if node is not None:
                grains.update({k: v for k, v in node.grains().items() if k not in OS_KEYS})
            grains.update(state.get("grains") or {})
            if line is not None:
                grains.update(guest_os_grains(line["os"]))
            self._activate(minion_id, state, disk, grains)
            self._owner[name] = minion_id
            self._started.add(minion_id)
            _write_json(_node_file(self.run_dir, minion_id), {"domain": name, "disk": disk})
        self._event("minion-started", domain=name, node=minion_id,
                    oscodename=grains.get("oscodename"), guest_boot=line and line["boot"])
        self._start_services(name, minion_id, disk)

    def _activate(self, minion_id, state, disk, grains):
        """Rewrite the node's minion config + pki (lab.salt_cluster layout) and start it."""
        self.cluster.stop_minion(minion_id)
        conf = {k: v for k, v in state["conf"].items()
                if k not in ("root_dir", "pidfile", "pki_dir", "cachedir", "sock_dir",
                             "log_file")}
        conf.setdefault("acceptance_wait_time", 1)
        conf.setdefault("random_reauth_delay", 0)
        conf["id"] = minion_id
        conf["grains"] = grains
        self.cluster._write(minion_id, "minion", conf)
        pki = os.path.join(self.cluster.base, minion_id, "pki", "minion")
        shutil.rmtree(pki, ignore_errors=True)
        shutil.copytree(os.path.join(self._state_dir(disk), "pki"), pki)
        os.chmod(pki, 0o700)
        self.cluster.start_minion(minion_id)

    def _on_stop(self, name):
        """The domain is off: its node's services die at once (SIGKILL, as a powered-off
        VM's processes do: a graceful stop here would keep them answering haproxy's checks
        for seconds after the VM stopped), then its minion stops."""
        with self._lock:
            minion_id = self._owner.pop(name, None)
        try:
            self._stop_services(name, minion_id or name)
        except Exception as exc:  # pylint: disable=broad-except
            self._event("error", domain=name, error=f"stopping services: {exc}")
        if minion_id:
            try:
                os.unlink(_node_file(self.run_dir, minion_id))
            except OSError:
                pass
            stopped = self.cluster.stop_minion(minion_id)
            self._event("minion-stopped", domain=name, node=minion_id, was_running=stopped)

    def _submit(self, name, func, *args):
        """Run ``func`` in a thread after the previous work of domain ``name``."""
        previous = self._last.get(name)

        def run():
            if previous is not None:
                previous.join()
            func(*args)

        worker = threading.Thread(target=run, name=f"bridge-{name}", daemon=True)
        self._last[name] = worker
        self._workers.append(worker)
        worker.start()

    # -- watching --------------------------------------------------------------------------
    def poll_once(self, conn, initial=False):
        import libvirt

        seen = {}
        for dom in conn.listAllDomains():
            try:
                if dom.isActive():
                    seen[dom.name()] = (dom.ID(), dom)
            except libvirt.libvirtError:  # vanished while listing
                continue
        for name in list(self._runs):
            if name not in seen or seen[name][0] != self._runs[name]:
                del self._runs[name]
                self._event("domain-stopped", domain=name)
                with self._lock:  # a start still waiting for its guest gives up
                    self._gen[name] = self._gen.get(name, 0) + 1
                self._submit(name, self._on_stop, name)
        for name, (run_id, dom) in seen.items():
            if self._runs.get(name) == run_id:
                continue
            self._runs[name] = run_id
            try:
                xml = dom.XMLDesc(0)
            except libvirt.libvirtError:
                continue
            console = parse_domain(xml)["console"]
            before = len(guest.console_lines(console)) if console else 0  # lines seen so far
            with self._lock:
                gen = self._gen[name] = self._gen.get(name, 0) + 1
            self._submit(name, self._on_start, name, run_id, xml, initial, gen, before)

    def run_forever(self):
        import libvirt

        libvirt.registerErrorHandler(lambda *_: None, None)  # no stderr noise on errors
        conn, initial = None, True
        self._event("bridge-up", uri=self.uri, pid=os.getpid())
        while not self._stop.is_set():
            try:
                if conn is None:
                    conn = libvirt.open(self.uri)
                self.poll_once(conn, initial)
                initial = False
            except libvirt.libvirtError as exc:
                log.warning("bridge: libvirt error (%s); reconnecting", exc)
                try:
                    if conn is not None:
                        conn.close()
                except libvirt.libvirtError:
                    pass
                conn = None
            self._stop.wait(self.interval)
        if conn is not None:
            try:
                conn.close()
            except libvirt.libvirtError:
                pass

    def start(self):
        """Watch in a background thread (tests); ``stop()`` ends it."""
        self._thread = threading.Thread(target=self.run_forever, name="bridge", daemon=True)
        self._thread.start()
        return self

    def stop(self, stop_minions=True):
        """Stop watching; stop the minions this bridge started (by their PIDs)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        for worker in self._workers:
            worker.join(5)
        if stop_minions:
            for minion_id in sorted(self._started):
                self.cluster.stop_minion(minion_id)
        self._event("bridge-down")

    def wait_event(self, action, node=None, after=0.0, timeout=120):
        """Wait for a recorded action (e.g. ``minion-started``) newer than ``after``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for entry in self.events():
                if entry["action"] == action and entry["time"] >= after and \
                        (node is None or entry.get("node") == node):
                    return entry
            time.sleep(0.2)
        raise TimeoutError(f"bridge recorded no {action} for {node} within {timeout} s")


# -- its own process ---------------------------------------------------------------------------
def pid_file(run_dir):
    return os.path.join(os.path.abspath(run_dir), "bridge", "bridge.pid")


def spawn(run_dir, uri=None, timeout=30):
    """Start ``python -m lab.bridge RUN_DIR`` in the background; return its PID."""
    path = pid_file(run_dir)
    if procs.alive(path):
        return procs.read_pid(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    argv = [sys.executable, "-m", "lab.bridge", run_dir] + (["--uri", uri] if uri else [])
    with open(os.path.join(os.path.dirname(path), "bridge.log"), "ab") as out:
        proc = subprocess.Popen(argv, cwd=topology.REPO, stdout=out, stderr=out,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    procs.wait_for(lambda: procs.read_pid(path) == proc.pid, timeout, "lab.bridge")
    return proc.pid


def terminate(run_dir, timeout=40):
    """Stop the bridge process by its pid file (it stops the minions it started)."""
    return procs.stop(pid_file(run_dir), timeout)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lab.bridge",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--uri", help="libvirt URI (default: the lab's private libvirtd)")
    parser.add_argument("--interval", type=float, default=0.5)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    bridge = Bridge(args.run_dir, uri=args.uri, interval=args.interval)
    signal.signal(signal.SIGTERM, lambda *_: bridge._stop.set())
    signal.signal(signal.SIGINT, lambda *_: bridge._stop.set())
    with open(bridge.pid_file, "w") as handle:
        handle.write(str(os.getpid()))
    try:
        bridge.run_forever()
    finally:
        bridge.stop()
        try:
            os.unlink(bridge.pid_file)
        except OSError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
