"""A real OpenStack cloud of one release on one machine, composed from the lab's starters.

One controller (keystone, placement, glance, nova-api behind haproxy on the VIP, plus
nova-conductor and nova-scheduler) and N computes (nova-compute, fake driver
``fake.FakeDriverWithoutFakeNodes``: a stable node UUID kept in its state_path, so a compute
survives a restart, also from the next release's venv). MariaDB, RabbitMQ and haproxy are
the lab's own starters (a MariaDB may be shared: the cloud's databases carry a prefix). With
``galera=`` (a started ``lab.galera.GaleraCluster``) the databases live on that cluster and
every service reaches them through haproxy's ``galera`` frontend on the VIP (one node takes
the connections, the others stand by), as kolla and OSA deploy it. There
is no real neutron: lab/neutron_stub.py answers empty lists behind the ``network`` endpoint.

    cloud = OpenStackCloud("/tmp/lf-os", release="2024.1", computes=2)
    cloud.start()          # DBs + syncs, keystone bootstrap, registration, services, cells,
                           # hosts discovered, an image, a flavor, servers ACTIVE
    cloud.auth             # {"auth_url", "username", "password", "project_name", ...}
    cloud.api("GET", "compute", "/os-hypervisors")   # admin-token request through the VIP
    cloud.restart_compute("cmp01", release="2025.1")
    cloud.stop()           # every process it started, by PID; its databases dropped

Registration uses plain ``requests`` against keystone in this process (the CLI costs ~4 s a
call). Endpoints (public, internal, admin) all point at the haproxy VIP.
"""
import concurrent.futures
import contextlib
import fcntl
import json
import os
import secrets
import shlex
import shutil
import subprocess
import time
import urllib.parse

import requests

from lab import network_volume, rehearsal_node
from lab.haproxy import HAProxy
from lab.neutron_stub import NeutronStub
from lab.ovn import OVN
from lab.openstack_service import OpenStackService, ServiceError
from lab.rabbitmq import RabbitMQ

VIP = "127.0.1.100"
REGION = "RegionOne"
CONTROLLER = ("ctl01", "127.0.1.21")
CONTROLLER_KINDS = ("keystone", "placement", "glance", "nova-api", "nova-conductor",
                    "nova-scheduler")
NOVA_CONTROL = ("nova-api", "nova-conductor", "nova-scheduler")
# haproxy's health checks of the cloud's APIs: a server is DOWN after 3 checks failing
# (each may take 2 s), not 2 of 1 s: on 2 cores a controller starting its services starves
# the only other one for a second or two, and a backend with no server UP answers 503
HEALTH_CHECK = {"inter": "500ms", "fall": 3, "rise": 2}
HEALTH_TIMEOUTS = {"check": "2s"}
# frontend name -> (service kind on the controller, keystone service type, name, URL path)
FRONTENDS = {
    "keystone": ("keystone", "identity", "keystone", "/v3"),
    "placement": ("placement", "placement", "placement", ""),
    "glance": ("glance", "image", "glance", ""),
    "nova": ("nova-api", "compute", "nova", "/v2.1"),
    "neutron": (None, "network", "neutron", ""),
}
# with cinder: its frontend; its catalog URL carries the project (cinder's own form)
CINDER_FRONTEND = ("cinder-api", "volumev3", "cinderv3", "")
GALERA_FRONTEND = "galera"  # haproxy's DB frontend when the databases are on Galera
ENDPOINT_SUFFIX = {"cinder": "/v3/%(project_id)s"}
SERVICE_USERS = ("nova", "placement", "glance")
DATABASES = ("keystone", "placement", "glance", "nova_api", "nova", "nova_cell0")
# nova service versions (nova/objects/service.py) per release
SERVICE_VERSION = {"2024.1": 67, "2025.1": 68, "2026.1": 72}
NOVA_MICROVERSION = "2.79"


class CloudError(RuntimeError):
    """The lab cloud could not reach the asked state."""


@contextlib.contextmanager
def _locked(path):
    """An exclusive lock on ``path`` (created) for the duration of the block."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _rss_of(obj):
    try:
        return obj.rss_kb()
    except Exception:  # pylint: disable=broad-except
        return 0


class OpenStackCloud:
    """The composition; see the module docstring. ``timings`` records each phase in seconds."""

    def __init__(self, run_dir, release="2024.1", computes=2, mariadb=None, db_prefix="lfos",
                 vip=VIP, controllers=1, servers=3, rabbitmq=None, haproxy=None, log=None,
                 neutron=False, cinder=False, galera=None):
        self.run_dir = os.path.abspath(run_dir)
        # the databases on a Galera cluster behind haproxy's DB frontend (not ours to stop)
        self.galera = galera
        if galera is not None:
            mariadb = galera
        # real neutron (ML2/OVN, lab/ovn.py) instead of the stand-in; cinder (fake driver)
        self.with_neutron, self.with_cinder = bool(neutron), bool(cinder)
        self.controller_kinds = (CONTROLLER_KINDS
                                 + (network_volume.NEUTRON_KINDS if neutron else ())
                                 + (network_volume.CINDER_KINDS if cinder else ()))
        self.databases = DATABASES + (("neutron",) if neutron else ()) + (
            ("cinder",) if cinder else ())
        self.frontends = dict(FRONTENDS)
        if neutron:
            self.frontends["neutron"] = ("neutron-server", *FRONTENDS["neutron"][1:])
        if cinder:
            self.frontends["cinder"] = CINDER_FRONTEND
        self.ovn = None
        self.release = str(release)
        self.vip = vip
        # ctl01 127.0.1.21, ctl02 127.0.1.22, ... (lab/topology.py's addresses)
        self.controller_hosts = [(f"ctl{i:02d}", f"127.0.1.{20 + i}")
                                 for i in range(1, int(controllers) + 1)]
        self.controller_id, self.controller_address = self.controller_hosts[0]
        self.compute_hosts = [(f"cmp{i:02d}", f"127.0.1.{30 + i}") for i in range(1, computes + 1)]
        self.server_count = servers
        self._own_db = mariadb is None
        self.mariadb = mariadb
        self.db_prefix = db_prefix
        # a given RabbitMQ/haproxy (the lab's own) is used, not started or stopped; the
        # cloud adds its frontends to a given haproxy and reloads it
        self._own_mq = rabbitmq is None
        self._own_hx = haproxy is None
        self.rabbitmq = rabbitmq
        self.haproxy = haproxy
        self.neutrons = {}       # host -> the neutron stand-in on that controller (no neutron)
        self.admin_password = secrets.token_urlsafe(16)
        users = SERVICE_USERS + tuple(n for n in ("neutron", "cinder") if n in self.databases)
        self.passwords = {user: secrets.token_urlsafe(16) for user in users}
        self.controllers = {}    # host -> {kind -> OpenStackService}
        self.controller = {}     # the first controller's (ctl01) services by kind
        self.computes = {}       # host -> OpenStackService
        self.enabled = {}        # host -> False once its services were deployed stopped
        # a rehearsal's throwaway controllers (lab/rehearsal_node.py): host -> spec, its
        # services by kind, its neutron stand-in (None with real neutron)
        self.throwaways, self.throwaway_services, self.throwaway_stubs = {}, {}, {}
        self.timings = {}
        self.ids = {}            # image, flavor, servers
        self._token = None
        self._token_expires = 0
        self._log = log or (lambda line: None)

    # -- helpers ---------------------------------------------------------------------------
    def log(self, line):
        self._log(f"[openstack_cloud] {line}")

    def _phase(self, name, started):
        self.timings[name] = round(time.monotonic() - started, 1)
        self.log(f"{name}: {self.timings[name]} s")

    def db_name(self, name):
        return f"{self.db_prefix}_{name}"

    def db_url(self, name, suffix=""):
        """The URL of database ``name`` (``suffix``: its rehearsal clone's)."""
        password = urllib.parse.quote(self.mariadb.root_password, safe="")
        database = self.db_name(name) + suffix
        if self.galera is not None:  # through haproxy's DB frontend, as every service
            host, port = self.haproxy.frontend_address(GALERA_FRONTEND)
            return f"mysql+pymysql://root:{password}@{host}:{port}/{database}?charset=utf8"
        return (f"mysql+pymysql://root:{password}@localhost/{database}"
                f"?unix_socket={self.mariadb.socket}&charset=utf8")

    def galera_frontend(self):
        """haproxy's DB frontend for the Galera nodes: node 1 active, the others standby."""
        nodes = self.galera.nodes
        return {"bind": f"{self.vip}:0", "mode": "tcp",
                "servers": {node.name: f"{node.address}:{node.port}" for node in nodes},
                "backup": [node.name for node in nodes[1:]]}

    def frontend_url(self, name):
        return self.haproxy.frontend_url(name) + self.frontends[name][3]

    @property
    def auth_url(self):
        return self.frontend_url("keystone")

    @property
    def auth(self):
        """Admin credentials (what openstack_verify.check and an rc file take)."""
        return {"auth_url": self.auth_url, "username": "admin", "password": self.admin_password,
                "project_name": "admin", "user_domain_name": "Default",
                "project_domain_name": "Default", "region_name": REGION}

    def settings(self):
        return {
            "db": {name: self.db_url(name) for name in self.databases},
            "ovn": ({"nb": self.ovn.nb_connection, "sb": self.ovn.sb_connection}
                    if self.ovn else None),
            "transport_url": self.rabbitmq.transport_url(),
            "auth_url": self.auth_url,
            "region": REGION,
            "passwords": dict(self.passwords),
            "image_dir": os.path.join(self.run_dir, "images"),
        }

    def write_rc(self, path):
        """An openrc file (0600) for the ``openstack`` CLI through the VIP."""
        auth = self.auth
        text = "".join(f"export {key}={shlex.quote(value)}\n" for key, value in (
            ("OS_AUTH_URL", auth["auth_url"]), ("OS_USERNAME", "admin"),
            ("OS_PASSWORD", auth["password"]), ("OS_PROJECT_NAME", "admin"),
            ("OS_USER_DOMAIN_NAME", "Default"), ("OS_PROJECT_DOMAIN_NAME", "Default"),
            ("OS_REGION_NAME", REGION), ("OS_IDENTITY_API_VERSION", "3"),
            ("OS_INTERFACE", "public")))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            os.fchmod(handle.fileno(), 0o600)  # also when the file was already there
            handle.write(text)
        return path

    def cli(self, *args, timeout=300):
        """``openstack ARGS -f json`` (the client venv's CLI) with this cloud's rc file
        sourced; returns the decoded output. The password stays in the rc file and the CLI's
        environment, never on a command line. Each call costs ~4 s (imports)."""
        rc_file = os.path.join(self.run_dir, "openrc")
        if not os.path.exists(rc_file):
            self.write_rc(rc_file)
        proc = run_cli(rc_file, [*args, "-f", "json"], timeout=timeout)
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
            raise CloudError(f"openstack {' '.join(args)}: exit {proc.returncode}: {tail}")
        return json.loads(proc.stdout)

    # -- keystone/REST -------------------------------------------------------------------------
    def token(self, refresh=False):
        if self._token and not refresh and time.monotonic() < self._token_expires:
            return self._token
        body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": "admin", "domain": {"name": "Default"}, "password": self.admin_password}}},
            "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}}}
        response = requests.post(self.auth_url + "/auth/tokens", json=body, timeout=30)
        if response.status_code != 201:
            raise CloudError(f"keystone: HTTP {response.status_code} issuing the admin token")
        self._token = response.headers["X-Subject-Token"]
        self._token_expires = time.monotonic() + 1800
        return self._token

    def api(self, method, service, path, expect=(200, 201, 202, 204), **kwargs):
        """A request with the admin token to a frontend (keystone, nova, placement, glance,
        neutron) through the VIP; returns the decoded JSON (or None)."""
        url = self.frontend_url(service) + path
        headers = {"X-Auth-Token": self.token(), **kwargs.pop("headers", {})}
        if service == "nova":
            headers.setdefault("OpenStack-API-Version", f"compute {NOVA_MICROVERSION}")
        if service == "placement":
            headers.setdefault("OpenStack-API-Version", "placement 1.6")
        response = requests.request(method, url, headers=headers, timeout=60, **kwargs)
        if response.status_code not in expect:
            raise CloudError(f"{method} {service}{path}: HTTP {response.status_code}: "
                             f"{response.text[:300]}")
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            return None

    # -- starting -------------------------------------------------------------------------------
    def _service(self, kind, host, address, release=None):
        return OpenStackService(kind, release or self.release,
                                os.path.join(self.run_dir, f"{host}-{kind.replace('nova-', 'n')}"),
                                address, host=host, settings=None)

    def start(self):
        """Bring the whole cloud up at ``release``, seeded; return self."""
        overall = time.monotonic()
        os.makedirs(self.run_dir, exist_ok=True)
        os.chmod(self.run_dir, 0o700)
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=3)
        try:
            self._start(pool)
        except BaseException:
            self.stop(remove=False)  # keep the logs: the caller removes run_dir
            raise
        finally:
            pool.shutdown(wait=True)
        self._phase("total", overall)
        self.save()
        return self

    # -- another process (``lab down``) finds the running cloud ----------------------------
    @property
    def state_file(self):
        return os.path.join(self.run_dir, "cloud.json")

    def save(self, hosts=None):
        """Write ``run_dir/cloud.json`` (0600: it holds the passwords). With ``hosts``, only
        those nodes' releases and enabled flags change in the file (another process, the
        lab's bridge or a minion, may be saving another node at the same time)."""
        with _locked(self.state_file + ".lock"):
            if hosts is not None and os.path.exists(self.state_file):
                with open(self.state_file) as handle:
                    state = json.load(handle)
                mine = self._state()
                for host in hosts:
                    for key in ("compute_releases", "controller_releases", "enabled",
                                "throwaways"):
                        if host in mine[key]:
                            state.setdefault(key, {})[host] = mine[key][host]
            else:
                state = self._state()
            fd = os.open(self.state_file + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                         0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump(state, handle, indent=1)
            os.replace(self.state_file + ".tmp", self.state_file)

    def _state(self):
        return {
            "release": self.release, "vip": self.vip, "controllers": len(self.controller_hosts),
            "computes": len(self.compute_hosts), "db_prefix": self.db_prefix,
            "own_db": self._own_db, "own_mq": self._own_mq, "own_hx": self._own_hx,
            "galera_dir": self.galera.run_dir if self.galera is not None else None,
            "admin_password": self.admin_password,
            "passwords": self.passwords, "ids": self.ids,
            "compute_releases": {h: s.release for h, s in self.computes.items()},
            "controller_releases": {h: {k: s.release for k, s in svc.items()}
                                    for h, svc in self.controllers.items()},
            "frontends": self.haproxy.frontends if self.haproxy else {},
            "haproxy_dir": self.haproxy.run_dir if self.haproxy else None,
            "rabbitmq_dir": self.rabbitmq.run_dir if self.rabbitmq else None,
            "neutron_ports": {host: stub.port for host, stub in self.neutrons.items()},
            "neutron": self.with_neutron, "cinder": self.with_cinder,
            "ovn_dir": self.ovn.run_dir if self.ovn else None,
            "enabled": dict(self.enabled),
            "throwaways": {host: dict(spec, releases={
                kind: svc.release for kind, svc in self.throwaway_services[host].items()})
                for host, spec in self.throwaways.items()},
        }

    @classmethod
    def attach(cls, run_dir, mariadb=None, log=None):
        """The cloud a previous ``start()`` left running in ``run_dir`` (for status/stop from
        another process). A shared MariaDB must be passed again to drop the databases."""
        with open(os.path.join(run_dir, "cloud.json")) as handle:
            state = json.load(handle)
        galera = None
        if state.get("galera_dir"):
            from lab.galera import GaleraCluster  # pylint: disable=import-outside-toplevel

            galera = GaleraCluster(state["galera_dir"])
        cloud = cls(run_dir, release=state["release"], computes=state["computes"],
                    controllers=state["controllers"], mariadb=mariadb, galera=galera,
                    db_prefix=state["db_prefix"], vip=state["vip"], log=log,
                    neutron=state.get("neutron", False), cinder=state.get("cinder", False))
        cloud._own_db = state["own_db"]
        cloud._own_mq = state.get("own_mq", True)
        cloud._own_hx = state.get("own_hx", True)
        cloud.admin_password = state["admin_password"]
        cloud.passwords = state["passwords"]
        cloud.ids = state["ids"]
        cloud.enabled = state.get("enabled", {})
        if cloud._own_db:
            from lab.mariadb import MariaDB  # pylint: disable=import-outside-toplevel

            cloud.mariadb = MariaDB(os.path.join(cloud.run_dir, "db"))
        cloud.rabbitmq = RabbitMQ(state.get("rabbitmq_dir") or os.path.join(cloud.run_dir, "mq"))
        addresses = dict(cloud.controller_hosts)
        cloud.neutrons = {host: NeutronStub(os.path.join(cloud.run_dir, "neutron", host),
                                            addresses[host], port=port)
                          for host, port in (state.get("neutron_ports") or {}).items()}
        if state.get("ovn_dir"):
            cloud.ovn = OVN(state["ovn_dir"])
        cloud.haproxy = HAProxy(state.get("haproxy_dir") or os.path.join(cloud.run_dir, "hx"),
                                state["frontends"], check=HEALTH_CHECK,
                                timeouts=HEALTH_TIMEOUTS)
        for host, address in cloud.controller_hosts:
            cloud.controllers[host] = {
                kind: cloud._service(kind, host, address,
                                     release=state["controller_releases"][host][kind])
                for kind in cloud.controller_kinds}
        cloud.controller = cloud.controllers[cloud.controller_id]
        for host, address in cloud.compute_hosts:
            cloud.computes[host] = cloud._service("nova-compute", host, address,
                                                  release=state["compute_releases"][host])
        settings = cloud.settings() if cloud.mariadb is not None else None
        for service in cloud.services():
            service.settings = settings
        for host, spec in (state.get("throwaways") or {}).items():
            cloud.add_throwaway(host, {k: spec[k] for k in ("address", "suffix", "vhost")},
                                spec["releases"])
        return cloud

    def status(self):
        """``{"host/kind": {"release", "running", "healthy", "pid"}}`` plus the infrastructure."""
        out = {f"{s.host}/{s.kind}": {"release": s.release, "running": s.running(),
                                      "healthy": s.healthy(), "pid": s.pid}
               for s in self.services()}
        out["rabbitmq"] = {"running": bool(self.rabbitmq and self.rabbitmq.running())}
        out["haproxy"] = {"running": bool(self.haproxy and self.haproxy.running())}
        for host, stub in self.neutrons.items():
            out[f"{host}/neutron-stub"] = {"running": stub.running()}
        if self.ovn:
            out["ovn"] = {"running": self.ovn.running()}
        if self.galera is not None:
            for name, entry in self.galera.status().items():
                out[f"galera/{name}"] = {"running": entry["running"], "galera": {
                    key: entry[key] for key in ("state", "size", "ready", "desync", "seqno")
                    if key in entry}}
        return out

    def _start(self, pool):
        started = time.monotonic()
        if self._own_mq:
            self.rabbitmq = RabbitMQ(os.path.join(self.run_dir, "mq"))
        rabbit = pool.submit(self.rabbitmq.start)
        if self._own_db:
            from lab.mariadb import MariaDB  # pylint: disable=import-outside-toplevel

            self.mariadb = MariaDB(os.path.join(self.run_dir, "db"))
            self.mariadb.start()
        self._create_databases()
        # ports are known now: the neutron stand-in and haproxy can start before the APIs
        for host, address in self.controller_hosts:
            self.controllers[host] = {kind: self._service(kind, host, address)
                                      for kind in self.controller_kinds}
        self.controller = self.controllers[self.controller_id]
        for host, address in self.compute_hosts:
            self.computes[host] = self._service("nova-compute", host, address)
        if self.with_neutron:
            self._start_ovn()
        else:
            # a neutron stand-in per controller, as neutron-server runs on each: draining
            # one controller leaves the others serving the network endpoint
            self.neutrons = {host: NeutronStub(os.path.join(self.run_dir, "neutron", host),
                                               address).start()
                             for host, address in self.controller_hosts}
        frontends = {}
        for name, (kind, *_rest) in self.frontends.items():
            if kind:
                servers = {host: f"{svc[kind].address}:{svc[kind].port}"
                           for host, svc in self.controllers.items()}
            else:
                servers = {host: f"{stub.address}:{stub.port}"
                           for host, stub in self.neutrons.items()}
            frontends[name] = {"bind": f"{self.vip}:0", "servers": servers}
        if self.galera is not None:
            frontends[GALERA_FRONTEND] = self.galera_frontend()
        if self._own_hx:
            self.haproxy = HAProxy(os.path.join(self.run_dir, "hx"), frontends,
                                   check=HEALTH_CHECK, timeouts=HEALTH_TIMEOUTS)
            self.haproxy.start()
        else:
            for name, spec in frontends.items():
                self.haproxy.add_frontend(name, spec["bind"], spec["servers"],
                                          mode=spec.get("mode", "http"),
                                          backup=spec.get("backup", ()))
            self.haproxy.reload()
        rabbit.result()
        self._phase("infrastructure", started)
        settings = self.settings()
        for service in self.services():
            service.settings = settings

        started = time.monotonic()
        nova_db = pool.submit(self._sync_nova)
        others = pool.submit(self._sync_others)
        network_volume_db = pool.submit(self._sync_network_volume)
        self._bootstrap_keystone()
        self._phase("keystone up", started)
        self._register()
        others.result()
        self._phase("keystone+placement+glance synced, registered", started)
        # placement and glance start while nova's schema is still being created
        self._start_other_keystones()
        apis = [svc[k] for svc in self.controllers.values() for k in ("placement", "glance")]
        for service in apis:
            service.start(wait=False)
        network_volume_db.result()
        extra = [svc[k] for svc in self.controllers.values() for k in self.controller_kinds
                 if network_volume.project(k)]
        for service in extra:
            service.start(wait=False)
        apis += extra
        nova_db.result()
        self._phase("databases synced", started)
        nova = [svc[k] for svc in self.controllers.values() for k in NOVA_CONTROL]
        for service in nova:
            service.start(wait=False)
        for service in apis + nova:
            service.wait_healthy()
        for name in ("placement", "glance", "nova", *(
                n for n in ("neutron", "cinder") if self.frontends.get(n, (None,))[0])):
            self.wait_url(self.frontend_url(name), 30)
        self._phase("controller up", started)

        started = time.monotonic()
        for service in self.computes.values():
            service.start(wait=False)
        for service in self.computes.values():
            service.wait_healthy()
        self.wait_computes_up(list(self.computes))
        self.discover_hosts()
        self.wait_hypervisors(list(self.computes))
        # the scheduler needs each compute's inventory in placement: with many computes
        # the first periodic report can land after the hypervisor is listed up
        self.wait_inventories(list(self.computes))
        self._phase("computes up and discovered", started)

        started = time.monotonic()
        self._seed()
        self._phase("image, flavor, servers ACTIVE", started)

    def services(self):
        """Every OpenStack service of the cloud (controllers', then computes')."""
        return [*(s for svc in self.controllers.values() for s in svc.values()),
                *self.computes.values()]

    def _start_other_keystones(self):
        """ctl02.. serve keystone with ctl01's fernet and credential keys (one keystone)."""
        first = self.controller["keystone"]
        others = [svc["keystone"] for host, svc in self.controllers.items()
                  if host != self.controller_id]
        for keystone in others:
            keystone.write_config()
            for sub in ("fernet-keys", "credential-keys"):
                target = os.path.join(keystone.run_dir, sub)
                shutil.rmtree(target, ignore_errors=True)
                shutil.copytree(os.path.join(first.run_dir, sub), target)
            keystone.start(wait=False)
        for keystone in others:
            keystone.wait_healthy()

    def _start_ovn(self):
        """OVN central, a gateway chassis per controller (routers' gateways live there) and
        a chassis per compute, kept alive by the keeper (lab/ovn.py)."""
        self.ovn = OVN(os.path.join(self.run_dir, "ovn")).start()
        for host, address in self.controller_hosts:
            self.ovn.add_chassis(host, address, gateway=True)
        for host, address in self.compute_hosts:
            self.ovn.add_chassis(host, address)
        self.ovn.start_keeper()

    def _create_databases(self):
        with self.mariadb.connect() as conn, conn.cursor() as cur:
            for name in self.databases:
                cur.execute(f"DROP DATABASE IF EXISTS `{self.db_name(name)}`")
                cur.execute(f"CREATE DATABASE `{self.db_name(name)}` CHARACTER SET utf8mb4")

    def _drop_databases(self):
        with self.mariadb.connect() as conn, conn.cursor() as cur:
            for name in self.databases:
                cur.execute(f"DROP DATABASE IF EXISTS `{self.db_name(name)}`")

    def _sync_nova(self):
        conductor = self.controller["nova-conductor"]
        conductor.manage("api_db", "sync")
        # cell0's URL defaults to [database]/connection's with "_cell0" appended to the DB
        # name (= db_name("nova_cell0")): never a URL (a password) on a command line
        conductor.manage("cell_v2", "map_cell0")
        conductor.manage("cell_v2", "create_cell", "--name", "cell1")
        conductor.manage("db", "sync")

    def _sync_others(self):
        self.controller["placement"].manage("db", "sync")
        self.controller["glance"].manage("db_sync")

    def _sync_network_volume(self):
        if self.with_neutron:
            self.controller["neutron-server"].manage("upgrade", "heads")
        if self.with_cinder:
            self.controller["cinder-api"].manage("db", "sync")

    def _bootstrap_keystone(self):
        keystone = self.controller["keystone"]
        keystone.manage("db_sync")
        keystone.manage("fernet_setup", "--keystone-user", "root", "--keystone-group", "root")
        keystone.manage("credential_setup", "--keystone-user", "root", "--keystone-group", "root")
        url = self.auth_url
        keystone.manage("bootstrap", "--bootstrap-username", "admin",
                        "--bootstrap-project-name", "admin",
                        "--bootstrap-admin-url", url, "--bootstrap-public-url", url,
                        "--bootstrap-internal-url", url, "--bootstrap-region-id", REGION,
                        extra_env={"OS_BOOTSTRAP_PASSWORD": self.admin_password})
        keystone.start()
        self.wait_url(self.auth_url, 120)

    def wait_url(self, url, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if requests.get(url, timeout=5).status_code < 500:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.3)
        raise CloudError(f"{url} did not answer within {timeout}s")

    def _find(self, collection, path, name, key=None):
        found = self.api("GET", "keystone", f"{path}?name={urllib.parse.quote(name)}")
        items = found.get(key or collection) or []
        return items[0]["id"] if items else None

    def _register(self):
        """Project service, service users (admin role), services and endpoints at the VIP."""
        started = time.monotonic()
        project = self._find("projects", "/projects", "service") or self.api(
            "POST", "keystone", "/projects",
            json={"project": {"name": "service", "domain_id": "default"}})["project"]["id"]
        admin_role = self._find("roles", "/roles", "admin")
        service_role = self._find("roles", "/roles", "service") or self.api(
            "POST", "keystone", "/roles", json={"role": {"name": "service"}})["role"]["id"]
        for user in self.passwords:
            user_id = self._find("users", "/users", user) or self.api(
                "POST", "keystone", "/users", json={"user": {
                    "name": user, "domain_id": "default",
                    "password": self.passwords[user]}})["user"]["id"]
            for role in (admin_role, service_role):
                self.api("PUT", "keystone", f"/projects/{project}/users/{user_id}/roles/{role}")
        for name, (_kind, stype, sname, _path) in self.frontends.items():
            if stype == "identity":
                continue
            url = self.frontend_url(name) + ENDPOINT_SUFFIX.get(name, "")
            service_id = self.api("POST", "keystone", "/services", json={
                "service": {"type": stype, "name": sname, "enabled": True}})["service"]["id"]
            for interface in ("public", "internal", "admin"):
                self.api("POST", "keystone", "/endpoints", json={"endpoint": {
                    "service_id": service_id, "interface": interface, "region_id": REGION,
                    "url": url, "enabled": True}})
        self._phase("registration (requests, one process)", started)

    def wait_computes_up(self, hosts, version=None, timeout=180, since=None):
        """Wait until each host's nova-compute service is up through the API and, if asked,
        reports ``version`` and a heartbeat (``services.updated_at``, UTC) at or after
        ``since`` (a datetime from ``db_now()``: proves a restarted process reported)."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            services = self.api("GET", "nova", "/os-services?binary=nova-compute")["services"]
            state = {s["host"]: s for s in services}
            last = {h: (state.get(h) or {}).get("state") for h in hosts}
            ok = all(v == "up" for v in last.values())
            if ok and (version is not None or since is not None):
                rows = self.service_rows("nova-compute")
                last = {h: (last[h], rows.get(h)) for h in hosts}
                for host in hosts:
                    row = rows.get(host) or {}
                    if version is not None and row.get("version") != version:
                        ok = False
                    if since is not None and (row.get("updated_at") is None
                                              or row["updated_at"] < since):
                        ok = False
            if ok:
                return state
            time.sleep(1)
        raise CloudError(f"nova-compute on {hosts} not up within {timeout}s: {last}")

    def db_now(self):
        """The database's UTC time (nova stores naive UTC timestamps)."""
        with self.mariadb.connect(self.db_name("nova")) as conn, conn.cursor() as cur:
            cur.execute("SELECT UTC_TIMESTAMP()")
            return cur.fetchone()[0]

    def service_rows(self, binary):
        """``{host: {"version", "updated_at", "uuid"}}`` for ``binary`` from the cell DB."""
        with self.mariadb.connect(self.db_name("nova")) as conn, conn.cursor() as cur:
            cur.execute("SELECT host, version, updated_at, uuid FROM services "
                        "WHERE `binary`=%s AND deleted=0", (binary,))
            return {host: {"version": version, "updated_at": updated, "uuid": uuid}
                    for host, version, updated, uuid in cur.fetchall()}

    def service_versions(self, binary):
        """``{host: services.version}`` for ``binary`` read from the cell DB."""
        return {host: row["version"] for host, row in self.service_rows(binary).items()}

    def compute_nodes(self):
        """Rows of the cell's compute_nodes table (deleted ones too): the duplicate check."""
        with self.mariadb.connect(self.db_name("nova")) as conn, conn.cursor() as cur:
            cur.execute("SELECT host, hypervisor_hostname, uuid, deleted FROM compute_nodes "
                        "ORDER BY id")
            return [dict(zip(("host", "hypervisor_hostname", "uuid", "deleted"), row))
                    for row in cur.fetchall()]

    def resource_providers(self):
        """``{name: uuid}`` of placement's resource providers."""
        found = self.api("GET", "placement", "/resource_providers")["resource_providers"]
        return {rp["name"]: rp["uuid"] for rp in found}

    def discover_hosts(self):
        self.controller["nova-conductor"].manage("cell_v2", "discover_hosts")

    def hypervisors(self):
        """``{hypervisor_hostname: {"id", "state", "status"}}`` from the compute API."""
        found = self.api("GET", "nova", "/os-hypervisors/detail")["hypervisors"]
        return {h["hypervisor_hostname"]: {"id": h["id"], "state": h["state"],
                                           "status": h["status"],
                                           "service_host": (h.get("service") or {}).get("host")}
                for h in found}

    def wait_hypervisors(self, hosts, timeout=120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.hypervisors()
            if all(h in found and found[h]["state"] == "up" for h in hosts):
                return found
            time.sleep(1)
        raise CloudError(f"hypervisors {hosts} not listed up within {timeout}s: {found}")

    def wait_inventories(self, hosts, timeout=120):
        """Wait until placement holds a resource provider with VCPU inventory per host."""
        deadline = time.monotonic() + timeout
        missing, problem = list(hosts), None
        while time.monotonic() < deadline:
            try:  # many computes reporting at once can make placement answer 503 a while
                providers = self.resource_providers()
                missing = [h for h in hosts if h not in providers or "VCPU" not in self.api(
                    "GET", "placement", f"/resource_providers/{providers[h]}/inventories"
                )["inventories"]]
            except CloudError as exc:
                problem = exc
            else:
                if not missing:
                    return
            time.sleep(1)
        raise CloudError(f"no VCPU inventory in placement for {missing} within {timeout}s"
                         + (f" (last error: {problem})" if problem else ""))

    # -- seed data --------------------------------------------------------------------------------
    def _seed(self):
        image = self.api("POST", "glance", "/v2/images", json={
            "name": "cirros-lab", "disk_format": "raw", "container_format": "bare",
            "visibility": "public"})
        self.api("PUT", "glance", f"/v2/images/{image['id']}/file",
                 headers={"Content-Type": "application/octet-stream"},
                 data=b"leapfrog lab image\n" * 64)
        self.ids["image"] = image["id"]
        flavor = self.api("POST", "nova", "/flavors", json={"flavor": {
            "name": "m1.lab", "ram": 64, "vcpus": 1, "disk": 1}})["flavor"]
        self.ids["flavor"] = flavor["id"]
        if self.with_neutron:
            self._seed_network()
        if self.with_cinder:
            self._seed_volumes()
        hosts = list(self.computes)
        servers = []
        for index in range(self.server_count):
            host = hosts[index % len(hosts)] if index < len(hosts) else hosts[0]
            servers.append(self.create_server(f"vm{index + 1}", host, wait=False))
        self.ids["servers"] = [s for s in servers]
        self.wait_servers(servers)

    def _seed_network(self):
        """An external flat network with a subnet, a tenant network and subnet, a router
        between them (its gateway scheduled on the controllers' gateway chassis) and a
        standalone port: what the upgrade must carry."""
        ext = self.api("POST", "neutron", "/v2.0/networks", json={"network": {
            "name": "lab-ext", "router:external": True, "provider:network_type": "flat",
            "provider:physical_network": "physnet1"}})["network"]
        self.api("POST", "neutron", "/v2.0/subnets", json={"subnet": {
            "network_id": ext["id"], "name": "lab-ext-subnet", "ip_version": 4,
            "cidr": "172.24.4.0/24", "enable_dhcp": False}})
        net = self.api("POST", "neutron", "/v2.0/networks",
                       json={"network": {"name": "lab-net"}})["network"]
        subnet = self.api("POST", "neutron", "/v2.0/subnets", json={"subnet": {
            "network_id": net["id"], "name": "lab-subnet", "ip_version": 4,
            "cidr": "10.0.0.0/24"}})["subnet"]
        router = self.api("POST", "neutron", "/v2.0/routers", json={"router": {
            "name": "lab-router", "external_gateway_info": {"network_id": ext["id"]}}})["router"]
        self.api("PUT", "neutron", f"/v2.0/routers/{router['id']}/add_router_interface",
                 json={"subnet_id": subnet["id"]})
        port = self.api("POST", "neutron", "/v2.0/ports", json={"port": {
            "name": "lab-port", "network_id": net["id"]}})["port"]
        self.ids.update(external_network=ext["id"], network=net["id"], subnet=subnet["id"],
                        router=router["id"], port=port["id"])

    def volume_path(self, path=""):
        """cinder's ``/v3/<admin project>`` + ``path`` (its URLs carry the project)."""
        if "project" not in self.ids:
            self.ids["project"] = self._find("projects", "/projects", "admin")
        return f"/v3/{self.ids['project']}{path}"

    def _seed_volumes(self):
        """The fake backend's volume type and two volumes, available."""
        vtype = self.api("POST", "cinder", self.volume_path("/types"), json={"volume_type": {
            "name": network_volume.VOLUME_TYPE,
            "extra_specs": {"volume_backend_name": "fake"}}})["volume_type"]
        volumes = [self.create_volume(f"lab-vol{index}", wait=False) for index in (1, 2)]
        self.ids.update(volume_type=vtype["id"], volumes=volumes)
        self.wait_volumes(volumes)

    def create_volume(self, name, size=1, wait=True):
        """A volume of ``size`` GiB on the fake backend; its id (waited available)."""
        volume_id = self.api("POST", "cinder", self.volume_path("/volumes"), json={"volume": {
            "name": name, "size": size,
            "volume_type": network_volume.VOLUME_TYPE}})["volume"]["id"]
        if wait:
            self.wait_volumes([volume_id])
        return volume_id

    def volumes(self):
        """``{id: {"name", "status", "host"}}`` of every volume."""
        found = self.api("GET", "cinder", self.volume_path("/volumes/detail?all_tenants=1"))
        return {v["id"]: {"name": v["name"], "status": v["status"],
                          "host": v.get("os-vol-host-attr:host")} for v in found["volumes"]}

    def wait_volumes(self, ids, status="available", timeout=120):
        deadline = time.monotonic() + timeout
        states = {}
        while time.monotonic() < deadline:
            found = self.volumes()
            states = {i: (found.get(i) or {}).get("status") for i in ids}
            if any(s == "error" for s in states.values()):
                raise CloudError(f"volume(s) in error: {states}")
            if all(s == status for s in states.values()):
                return found
            time.sleep(0.5)
        raise CloudError(f"volumes not {status} within {timeout}s: {states}")

    def create_server(self, name, host=None, wait=True):
        """Boot a server on ``host`` (None: the scheduler's choice): with neutron, a port on
        the lab network; without, ``--nic none``."""
        networks = [{"uuid": self.ids["network"]}] if self.with_neutron else "none"
        body = {"server": {"name": name, "imageRef": self.ids["image"],
                           "flavorRef": self.ids["flavor"], "networks": networks}}
        if host:
            body["server"]["availability_zone"] = f"nova:{host}"
        server_id = self.api("POST", "nova", "/servers", json=body)["server"]["id"]
        if wait:
            self.wait_servers([server_id])
        return server_id

    def servers(self):
        """``{id: {"name", "status", "host"}}`` of every server."""
        found = self.api("GET", "nova", "/servers/detail?all_tenants=1")["servers"]
        return {s["id"]: {"name": s["name"], "status": s["status"],
                          "host": s.get("OS-EXT-SRV-ATTR:host")} for s in found}

    def wait_servers(self, ids, status="ACTIVE", timeout=120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.servers()
            states = {i: (found.get(i) or {}).get("status") for i in ids}
            if any(s == "ERROR" for s in states.values()):
                faults = {i: self.api("GET", "nova", f"/servers/{i}")["server"].get("fault")
                          for i, s in states.items() if s == "ERROR"}
                raise CloudError(f"server(s) in ERROR: {states}; faults: {faults}")
            if all(s == status for s in states.values()):
                return found
            time.sleep(1)
        raise CloudError(f"servers not {status} within {timeout}s: {states}")

    # -- operations used by the tests and the demo ----------------------------------------------
    def restart_compute(self, host, release=None, timeout=180):
        """Stop ``host``'s nova-compute and start it again (from ``release``'s venv if given);
        wait until its service is up and reports that release's service version."""
        service = self.computes[host]
        started = time.monotonic()
        service.stop()
        since = self.db_now()
        service.start(release=release)
        self.wait_computes_up([host], version=SERVICE_VERSION.get(service.release),
                              since=since, timeout=timeout)
        self._phase(f"restart {host} at {service.release}", started)
        self.save()
        return service

    def add_throwaway(self, host, spec, releases):
        """Know ``host`` as a rehearsal's throwaway controller (``rehearsal_node.spec``), its
        services at ``releases`` (one release, or ``{kind: release}``); changes nothing on
        disk (``deploy`` prepares and starts it). Returns its services."""
        if host in self.controllers or host in self.computes:
            raise CloudError(f"{host} is a node of this cloud, not a throwaway controller")
        if isinstance(releases, str):
            releases = dict.fromkeys(rehearsal_node.kinds(self), releases)
        self.throwaways[host] = dict(spec)
        self.throwaway_services[host] = rehearsal_node.services(self, host, spec, releases)
        self.throwaway_stubs[host] = rehearsal_node.stub(self, host, spec)
        return list(self.throwaway_services[host].values())

    def knows(self, host):
        """``host`` runs services of this cloud (a controller or a throwaway controller)."""
        return host in self.controllers or host in self.throwaway_services

    def node_services(self, host):
        """The services of one node (a controller's six, or a compute's nova-compute)."""
        if host in self.throwaway_services:
            return list(self.throwaway_services[host].values())
        if host in self.controllers:
            return list(self.controllers[host].values())
        if host in self.computes:
            return [self.computes[host]]
        raise CloudError(f"no node {host!r} in this cloud")

    def stop_node(self, host, services=None, timeout=10):
        """Stop every service of ``host`` (or just ``services``) by PID, in parallel: TERM,
        then KILL after ``timeout`` seconds (0: at once)."""
        with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
            list(pool.map(lambda service: service.stop(timeout),
                          services or self.node_services(host)))
        if services is None and self.throwaway_stubs.get(host):
            self.throwaway_stubs[host].stop()
        self.save(hosts=[host])

    def start_node(self, host, release=None, services=None):
        """Start every service of ``host`` (or just ``services``; from ``release``'s venv if
        given); wait until each is healthy. A failure names the service and its log tail."""
        services = services or self.node_services(host)
        keystone = [s for s in services if s.kind == "keystone"]
        auth_url = self.auth_url
        if host in self.throwaways:  # its own keystone; its own network stand-in
            auth_url = rehearsal_node.auth_url(self, self.throwaways[host])
            if self.throwaway_stubs.get(host):
                self.throwaway_stubs[host].start()
        # keystone first: the others ask it for tokens through the VIP as they start, so the
        # VIP must serve one (another controller, or this one once haproxy sees it UP; a
        # cloud's only controller drained in haproxy cannot start: a rolling upgrade needs two)
        try:
            for wave in (keystone, [s for s in services if s not in keystone]):
                for service in wave:
                    service.start(release=release, wait=False)
                for service in wave:
                    service.wait_healthy()
                if wave and wave is keystone:
                    self.wait_url(auth_url, 60)
        finally:
            self.save(hosts=[host])
        return services

    def upgrade_nova_control(self, release):
        """Stop nova-api/conductor/scheduler, run ``release``'s nova DB syncs (api_db sync,
        db sync, online data migrations) and start them from ``release``'s venv."""
        started = time.monotonic()
        nova = [svc[k] for svc in self.controllers.values() for k in NOVA_CONTROL]
        for service in nova:
            service.stop()
        conductor = self.controller["nova-conductor"]
        conductor.release, conductor.venv = str(release), None
        conductor.write_config()
        conductor.manage("api_db", "sync")
        conductor.manage("db", "sync")
        for service in nova:
            service.start(release=release, wait=False)
        for service in nova:
            service.wait_healthy()
        conductor.manage("db", "online_data_migrations", ok=(0, 1))
        self.wait_url(self.frontend_url("nova"), 60)
        self._phase(f"nova control plane to {release}", started)
        self.save()

    def rss_kb(self):
        """Resident memory per process group (KiB) and the total."""
        parts = {f"{s.host}/{s.kind}": _rss_of(s) for s in self.services()}
        parts["rabbitmq"] = _rss_of(self.rabbitmq) if self.rabbitmq else 0
        for host, stub in self.neutrons.items():
            parts[f"{host}/neutron-stub"] = _rss_of(stub)
        if self.ovn:
            parts["ovn"] = _rss_of(self.ovn)
        if self.haproxy and self.haproxy.pid:
            from lab.openstack_service import rss_kb  # pylint: disable=import-outside-toplevel

            parts["haproxy"] = rss_kb(self.haproxy.pid)
        if self.mariadb is not None and self._own_db and self.mariadb.pid:
            from lab.openstack_service import rss_kb  # pylint: disable=import-outside-toplevel

            parts["mariadb"] = rss_kb(self.mariadb.pid)
        parts["total"] = sum(parts.values())
        return parts

    def describe(self):
        return {
            "release": self.release, "vip": self.vip, "auth_url": self.auth_url,
            "controllers": {host: {k: s.info() for k, s in svc.items()}
                            for host, svc in self.controllers.items()},
            "computes": {h: s.info() for h, s in self.computes.items()},
            "rabbitmq": self.rabbitmq.info() if self.rabbitmq else None,
            "haproxy": self.haproxy.describe() if self.haproxy else None,
            "timings": dict(self.timings),
        }

    # -- stopping ---------------------------------------------------------------------------------
    def stop(self, remove=True):
        """Stop everything this cloud started, by PID (computes first); drop its databases
        (a shared MariaDB) or stop its own MariaDB; remove ``run_dir`` if ``remove``."""
        errors = []
        services = [*self.computes.values(),
                    *(s for svc in self.throwaway_services.values() for s in svc.values()),
                    *(svc[k] for svc in self.controllers.values()
                      for k in reversed(self.controller_kinds)
                      if k in svc)]
        # TERM them all at once, then collect: a stop costs at most one timeout overall
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            for future in [pool.submit(s.stop) for s in services]:
                try:
                    future.result()
                except Exception as exc:  # pylint: disable=broad-except
                    errors.append(str(exc))
        for part in (*self.neutrons.values(), *filter(None, self.throwaway_stubs.values()),
                     self.ovn, self.haproxy if self._own_hx else None,
                     self.rabbitmq if self._own_mq else None):
            if part is not None:
                try:
                    part.stop()
                except Exception as exc:  # pylint: disable=broad-except
                    errors.append(f"{type(part).__name__}: {exc}")
        if self.mariadb is not None:
            try:
                if self._own_db:
                    self.mariadb.stop()
                else:
                    self._drop_databases()
            except Exception as exc:  # pylint: disable=broad-except
                errors.append(f"mariadb: {exc}")
        if remove:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        if errors:
            raise CloudError("stop: " + "; ".join(errors))


def run_cli(rc_file, args, capture=True, timeout=None):
    """Run the ``openstack`` CLI (lab.openstack_venv's client venv, built first if needed)
    the way an operator does: a shell sources ``rc_file``, then runs ``openstack ARGS``.
    Returns the CompletedProcess (text output captured unless ``capture=False``)."""
    from lab import openstack_venv  # pylint: disable=import-outside-toplevel

    binary = openstack_venv.openstack_cli()
    env = {key: value for key, value in os.environ.items() if not key.startswith("OS_")}
    argv = ["/bin/sh", "-c", '. "$1" && shift && exec "$@"', "openrc",
            os.path.abspath(rc_file), binary, *args]
    return subprocess.run(argv, env=env, capture_output=capture, text=True, timeout=timeout,
                          check=False)


def main(argv=None):
    """``python -m lab.openstack_cloud up|down|status RUN_DIR``: ``up`` starts a cloud with
    its own MariaDB, prints it and returns (the services keep running); ``down`` stops
    everything it started, by PID, and removes RUN_DIR; ``status`` prints each service."""
    import argparse  # pylint: disable=import-outside-toplevel
    import sys  # pylint: disable=import-outside-toplevel

    parser = argparse.ArgumentParser(prog="python -m lab.openstack_cloud")
    parser.add_argument("action", choices=("up", "down", "status"))
    parser.add_argument("run_dir")
    parser.add_argument("--release", default="2024.1")
    parser.add_argument("--controllers", type=int, default=1)
    parser.add_argument("--computes", type=int, default=2)
    parser.add_argument("--rc", help="write an openrc file here (up)")
    parser.add_argument("--neutron", action="store_true", help="real neutron (ML2/OVN)")
    parser.add_argument("--cinder", action="store_true", help="cinder (fake driver)")
    args = parser.parse_args(argv)

    def log(line):
        print(line, file=sys.stderr, flush=True)

    state = os.path.join(args.run_dir, "cloud.json")
    if args.action == "up":
        if os.path.exists(state):
            print(json.dumps(OpenStackCloud.attach(args.run_dir).status(), indent=1))
            return 0
        cloud = OpenStackCloud(args.run_dir, release=args.release, computes=args.computes,
                               controllers=args.controllers, log=log,
                               neutron=args.neutron, cinder=args.cinder)
        cloud.start()
        if args.rc:
            cloud.write_rc(args.rc)
        print(json.dumps({**cloud.describe(), "rss_kb": cloud.rss_kb()}, indent=1))
        return 0
    if not os.path.exists(state):
        print(f"no cloud in {args.run_dir}", file=sys.stderr)
        return 3
    cloud = OpenStackCloud.attach(args.run_dir, log=log)
    if args.action == "down":
        cloud.stop()
        return 0
    status = cloud.status()
    print(json.dumps(status, indent=1))
    return 0 if all(v.get("running") for v in status.values()) else 3


if __name__ == "__main__":
    raise SystemExit(main())
