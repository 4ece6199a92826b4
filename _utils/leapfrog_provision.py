"""The provisioning probe: while a run upgrades the cloud, keep creating and deleting what
users create (a network with a subnet and a port, a volume, a server), in a bounded loop
through the API, and count what fails. MCP's upgrade stopped all provisioning; the report
shows ours did not (or where it did).

Each kind is a cycle run over and over by its own thread until stopped (or ``duration``):

- ``network``: create a network, a subnet on it and a port, delete them;
- ``volume``: create a 1 GiB volume, wait until available, delete it;
- ``server``: boot a server from ``image``/``flavor`` with a NIC on ``network`` (nova
  creates the port and neutron binds it on the compute, as for users; no NIC when
  ``network`` is empty) on compute ``host`` when given, wait until ACTIVE, delete it and
  wait until it is gone.

``once`` runs each kind's cycle a single time (a rehearsal's throwaway controller).

A cycle succeeds when every call of it does within ``timeout``. What a cycle created is
deleted even when it failed halfway (and once more when the probe stops), named
``lf-prov-<tag>-<kind>-<n>``. The credentials come from a 0600 file (never argv); results
go to a JSON file when the probe stops (SIGTERM), as leapfrog_probe's do::

    python -m leapfrog_provision --config FILE --out FILE [--duration S] [--interval S]
"""
import json
import os
import threading
import time

import leapfrog_journal
import leapfrog_keystone

KINDS = ("network", "volume", "server")
NOVA_MICROVERSION = "2.37"  # "networks": "none" without a network
HOST_MICROVERSION = "2.74"  # a server's "host" (admin): booted on that compute


class ProvisionFailed(Exception):
    """One call of a cycle failed; the message says which and why."""


class ServiceMissing(ProvisionFailed):
    """The catalog has no service for a kind (``once`` skips the kind)."""


class Cycles:
    """The calls of each kind's cycle against one authenticated session."""

    def __init__(self, session, conf, tag):
        self.session, self.conf, self.tag = session, conf, tag
        self.timeout = float(conf.get("timeout", 120))
        self.bases = {}

    def base(self, kind, types):
        if kind not in self.bases:
            found = self.session.endpoint(types)
            if found is None:
                raise ServiceMissing(f"no {'/'.join(types)} service in the catalog")
            self.bases[kind] = found[1].rstrip("/")
        return self.bases[kind]

    def call(self, what, method, url, expect=(200, 201, 202, 204), **kwargs):
        try:
            return self.session.request(method, url, expect=expect, **kwargs)
        except leapfrog_keystone.RequestFailed as exc:
            raise ProvisionFailed(f"{what}: {exc.args[0]}") from exc

    def wait(self, what, check):
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.5)
        raise ProvisionFailed(f"{what}: not within {self.timeout:.0f} s")

    # -- network: a network, a subnet, a port; deleted
    def network(self, name):
        base = self.base("network", ("network",)) + "/v2.0"
        net = self.call("network create", "POST", f"{base}/networks",
                        json={"network": {"name": name}})["network"]["id"]
        try:
            self.call("subnet create", "POST", f"{base}/subnets", json={"subnet": {
                "network_id": net, "name": name, "ip_version": 4,
                "cidr": "10.250.0.0/24"}})
            port = self.call("port create", "POST", f"{base}/ports", json={"port": {
                "network_id": net, "name": name}})["port"]["id"]
            self.call("port delete", "DELETE", f"{base}/ports/{port}")
        finally:
            self.call("network delete", "DELETE", f"{base}/networks/{net}", expect=(204, 404))

    # -- volume: created, available, deleted
    def volume(self, name):
        base = self.base("volume", ("block-storage", "volumev3", "volume"))
        vol = self.call("volume create", "POST", f"{base}/volumes", json={"volume": {
            "name": name, "size": 1}})["volume"]["id"]
        try:
            def available():
                status = self.call("volume show", "GET", f"{base}/volumes/{vol}")["volume"][
                    "status"]
                if status == "error":
                    raise ProvisionFailed("volume went to error")
                return status == "available"

            self.wait("volume available", available)
        finally:
            self.call("volume delete", "DELETE", f"{base}/volumes/{vol}", expect=(202, 404))

    # -- server: booted, ACTIVE, deleted, gone
    def server(self, name):
        base = self.base("compute", ("compute",))
        body = {"name": name, "imageRef": self._image(), "flavorRef": self._flavor(),
                "networks": self._networks()}
        if self.conf.get("host"):
            body["host"] = self.conf["host"]
        server = self.call("server create", "POST", f"{base}/servers",
                           json={"server": body})["server"]["id"]
        try:
            def active():
                found = self.call("server show", "GET", f"{base}/servers/{server}")["server"]
                if found["status"] == "ERROR":
                    raise ProvisionFailed(f"server went to ERROR: "
                                          f"{(found.get('fault') or {}).get('message', '')}")
                return found["status"] == "ACTIVE"

            self.wait("server ACTIVE", active)
        finally:
            self.call("server delete", "DELETE", f"{base}/servers/{server}", expect=(204, 404))
        self.wait("server gone", lambda: self.session.request(
            "GET", f"{base}/servers/{server}", expect=(200, 404)).get("server") is None)

    def _image(self):
        if "image" not in self.bases:
            base = self.base("image_api", ("image",))
            found = self.call("image find", "GET", f"{base}/v2/images",
                              params={"name": self.conf["image"]})["images"]
            if not found:
                raise ProvisionFailed(f"no image named {self.conf['image']!r}")
            self.bases["image"] = found[0]["id"]
        return self.bases["image"]

    def _networks(self):
        if not self.conf.get("network"):
            return "none"
        if "networks" not in self.bases:
            base = self.base("network", ("network",)) + "/v2.0"
            found = self.call("network find", "GET", f"{base}/networks",
                              params={"name": self.conf["network"]})["networks"]
            if len(found) != 1:
                raise ProvisionFailed(f"{len(found)} networks named {self.conf['network']!r}"
                                      f" (one expected)")
            self.bases["networks"] = [{"uuid": found[0]["id"]}]
        return self.bases["networks"]

    def _flavor(self):
        if "flavor" not in self.bases:
            base = self.base("compute", ("compute",))
            found = [f for f in self.call("flavor list", "GET", f"{base}/flavors")["flavors"]
                     if f["name"] == self.conf["flavor"]]
            if not found:
                raise ProvisionFailed(f"no flavor named {self.conf['flavor']!r}")
            self.bases["flavor"] = found[0]["id"]
        return self.bases["flavor"]


def _session(conf, kind, agent="leapfrog-provision"):
    """A session of its own per kind: the compute microversion header only for nova's."""
    version = HOST_MICROVERSION if conf.get("host") else NOVA_MICROVERSION
    return leapfrog_keystone.Session(
        conf, agent=agent,
        headers={"OpenStack-API-Version": f"compute {version}"} if kind == "server" else None)


def once(conf, kinds=KINDS, tag=None):
    """Each kind's cycle once, one after the other: ``{kind: {"result": pass|fail|skip,
    "seconds", "reason"}}``; a kind whose service is not in the catalog is skipped."""
    tag = tag or time.strftime("%H%M%S")
    out = {}
    for kind in kinds:
        session, began = _session(conf, kind, "leapfrog-provision-once"), time.monotonic()
        try:
            session.authenticate()
            getattr(Cycles(session, conf, tag), kind)(f"lf-prov-{tag}-{kind}")
            out[kind] = {"result": "pass", "reason": "created and deleted"}
        except ServiceMissing as exc:
            out[kind] = {"result": "skip", "reason": str(exc.args[0])}
        except (ProvisionFailed, leapfrog_keystone.RequestFailed) as exc:
            out[kind] = {"result": "fail", "reason": str(exc.args[0])}
        finally:
            session.close()
        out[kind]["seconds"] = round(time.monotonic() - began, 3)
    return out


class Provisioner:
    """Run each kind's cycle in its own thread until ``stop()`` or ``duration``."""

    def __init__(self, conf, kinds=KINDS, duration=3600.0, interval=2.0, tag=None):
        unknown = [k for k in kinds if k not in KINDS]
        if unknown:
            raise ValueError(f"unknown provisioning kind(s) {', '.join(unknown)}; known: "
                             f"{', '.join(KINDS)}")
        self.conf, self.kinds = conf, list(kinds)
        self.duration, self.interval = float(duration), float(interval)
        self.tag = tag or time.strftime("%H%M%S")
        self.records = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = []
        self.started = self.ended = None

    def _loop(self, kind):
        session = _session(self.conf, kind)
        cycles = Cycles(session, self.conf, self.tag)
        deadline = time.monotonic() + self.duration
        count, authenticated = 0, False
        try:
            while not self._stop.is_set() and time.monotonic() < deadline:
                count += 1
                began = time.time()
                error = None
                try:
                    if not authenticated:
                        session.authenticate()
                        authenticated = True
                    getattr(cycles, kind)(f"lf-prov-{self.tag}-{kind}-{count}")
                except (ProvisionFailed, leapfrog_keystone.RequestFailed) as exc:
                    error = str(exc.args[0])
                    authenticated = False  # a new token next time (it may have expired)
                with self._lock:
                    self.records.append({"kind": kind, "at": round(began, 3),
                                         "seconds": round(time.time() - began, 3),
                                         "ok": error is None, "error": error})
                self._stop.wait(self.interval)
        finally:
            session.close()

    def start(self):
        self.started = time.time()
        for kind in self.kinds:
            thread = threading.Thread(target=self._loop, args=(kind,), daemon=True,
                                      name=f"provision-{kind}")
            thread.start()
            self._threads.append(thread)
        return self

    @property
    def running(self):
        return any(t.is_alive() for t in self._threads)

    def stop(self, timeout=300):
        """Stop after the cycles under way (their deletes included); the summary."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        self.ended = time.time()
        return summarize(self.records)


def summarize(records):
    """``{"cycles", "failed", "success_rate", "kinds": {kind: {"cycles", "failed",
    "slowest"}}, "failures": [first 20 {"kind", "at", "error"}]}``."""
    kinds = {}
    for record in records:
        part = kinds.setdefault(record["kind"], {"cycles": 0, "failed": 0, "slowest": 0.0})
        part["cycles"] += 1
        part["failed"] += 0 if record["ok"] else 1
        part["slowest"] = max(part["slowest"], record["seconds"])
    cycles = len(records)
    failed = sum(1 for r in records if not r["ok"])
    return {"cycles": cycles, "failed": failed,
            "success_rate": round(100.0 * (cycles - failed) / cycles, 2) if cycles else None,
            "kinds": kinds,
            "failures": [{k: r[k] for k in ("kind", "at", "error")}
                         for r in records if not r["ok"]][:20]}


# ------------------------------------------------------------------ a run's provisioning
# process: beside the run's availability probe, in the run's folder (``provision.pid``, one
# ``provision-N.json`` per attempt, the 0600 config only while it runs)
def start(folder, conf, duration=3600):
    """Start the run's provisioning probe with ``conf`` (the cluster's ``provision_probe``);
    nothing when it runs. Returns ``{"provision": "started"|"running", "pid"}``."""
    import leapfrog_probe  # pylint: disable=import-outside-toplevel

    folder = leapfrog_journal.private_dir(folder)
    config = os.path.join(folder, "provision.conf.json")
    tag = os.path.basename(os.path.normpath(folder))[-8:].replace("-", "")
    leapfrog_journal.write_json(config, dict(conf, tag=tag))  # 0600: it holds a password
    return leapfrog_probe.spawn(folder, "provision", "leapfrog_provision",
                                ["--config", config, "--duration", str(duration)])


def stop(folder, timeout=300):
    """Stop the run's provisioning probe (the cycles under way finish, their deletes
    included), remove its config; the summary of every attempt merged, or None."""
    import leapfrog_probe  # pylint: disable=import-outside-toplevel

    leapfrog_probe.terminate(folder, "provision", timeout)
    try:
        os.unlink(os.path.join(folder, "provision.conf.json"))
    except OSError:
        pass
    return merged(folder)


def merged(folder):
    """Every ``provision-N.json`` of the folder summarized together (None: none)."""
    records, started = [], None
    for entry in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        if entry.startswith("provision-") and entry.endswith(".json"):
            data = leapfrog_journal.read_json(os.path.join(folder, entry))
            if isinstance(data, dict):
                records += data.get("records") or []
                started = started or data.get("started")
    if not records:
        return None
    return dict(summarize(records), started=started)


def main(argv=None):
    """``python -m leapfrog_provision --config FILE --out FILE``: run until SIGTERM or
    ``--duration``; write the summary (and every cycle) to ``--out``."""
    import argparse  # pylint: disable=import-outside-toplevel
    import signal  # pylint: disable=import-outside-toplevel

    parser = argparse.ArgumentParser(prog="python -m leapfrog_provision")
    parser.add_argument("--config", required=True, help="0600 JSON: credentials, image, "
                                                        "flavor, kinds, interval, timeout")
    parser.add_argument("--out", required=True)
    parser.add_argument("--duration", type=float, default=3600.0)
    args = parser.parse_args(argv)
    raw = leapfrog_journal.read_json(args.config)
    conf = dict(raw, **leapfrog_keystone.settings(
        {"leapfrog": {"verify": raw}}, {}, ValueError, "leapfrog_provision"))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.set())
    prov = Provisioner(conf, kinds=conf.get("kinds") or KINDS, duration=args.duration,
                       interval=conf.get("interval", 2.0), tag=conf.get("tag"))
    prov.start()
    while prov.running and not stop.wait(0.2):
        pass
    summary = prov.stop()
    summary.update(started=prov.started, ended=prov.ended, records=prov.records)
    tmp = args.out + ".tmp"
    with leapfrog_journal.private_open(tmp) as handle:
        handle.write(json.dumps(summary, indent=1) + "\n")
    os.replace(tmp, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
