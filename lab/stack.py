"""The whole lab on one machine: the OpenStack cloud (MariaDB, RabbitMQ, haproxy on the VIP,
keystone/placement/glance/nova-api on each controller, conductor, scheduler, fake computes),
its Salt cluster (cfg01 + a minion per node), tied together by the run-time pillar, and (with
``vms``) kvm01's private libvirtd with one TCG domain per controller (the bookworm guest)
plus the bridge (lab.bridge) that runs a controller's minion and services while its domain
runs.

    python -m lab up|down|status [--run-dir DIR] [--controllers N] [--computes N] [--no-vms]
                                 [--neutron-cinder] [--db mariadb|galera]
"""
import collections
import concurrent.futures
import os
import shutil
import time
import xml.etree.ElementTree as ET

import requests

from lab import (bridge, guest, openstack_cloud, openstack_venv, procs, runtime_pillar,
                 salt_cluster, topology)
from lab.galera import GaleraCluster
from lab.libvirt import Libvirt

DBS = ("mariadb", "galera")
GALERA_SIZE = 3


class Lab:
    """Start, describe and stop the lab under ``run_dir``."""

    def __init__(self, run_dir, controllers=3, computes=2, release="2024.1", log=None,
                 vms=True, neutron_cinder=False, db="mariadb"):
        self.run_dir = os.path.abspath(run_dir)
        if db not in DBS:
            raise ValueError(f"db {db!r}: use one of {', '.join(DBS)}")
        # the cloud's databases on one MariaDB, or on a Galera cluster dbs01..03 behind
        # haproxy's DB frontend (lab.galera); a lab started so stays so (status, down)
        if os.path.exists(os.path.join(self.run_dir, "galera", "cluster.json")):
            db = "galera"
        self.db = db
        self.galera = GaleraCluster(os.path.join(self.run_dir, "galera"), size=GALERA_SIZE) \
            if db == "galera" else None
        # real neutron (ML2/OVN) and cinder in the cloud, upgraded with it
        self.neutron_cinder = neutron_cinder
        self.controllers, self.computes, self.release = controllers, computes, release
        self.vms = vms
        self.log = log or (lambda line: None)
        self.salt = salt_cluster.SaltCluster(
            self.run_dir, topology.nodes(controllers=controllers, computes=computes,
                                         databases=GALERA_SIZE if self.galera else 1))
        self.virt = Libvirt(self.run_dir)
        self.cloud = None
        self.timings = {}

    @property
    def cloud_dir(self):
        return os.path.join(self.run_dir, "os")

    def _timed(self, name, func):
        started = time.monotonic()
        result = func()
        self.timings[name] = round(time.monotonic() - started, 1)
        self.log(f"[lab] {name}: {self.timings[name]} s")
        return result

    @property
    def rc_file(self):
        """The admin openrc for the ``openstack`` CLI through the VIP (written by ``up``)."""
        return os.path.join(self.run_dir, "openrc")

    @property
    def vm_nodes(self):
        """The nodes that run as VMs (the controllers), when the lab has VMs."""
        return [n.id for n in self.salt.nodes if n.role == "ctl"] if self.vms else []

    def up(self):
        """Bring every part up (idempotent: a running cloud is attached, not restarted)."""
        os.makedirs(self.run_dir, mode=0o700, exist_ok=True)
        self._timed("venvs", lambda: openstack_venv.ensure_all(
            [*openstack_venv.RELEASES, openstack_venv.CLIENT,
             *(openstack_venv.SERVICE_SPECS if self.neutron_cinder else ())]))
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            hypervisor = pool.submit(self._timed, "libvirt", self._hypervisor_up) \
                if self.vms else None
            if os.path.exists(os.path.join(self.cloud_dir, "cloud.json")):
                self.cloud = openstack_cloud.OpenStackCloud.attach(self.cloud_dir,
                                                                   log=self.log)
            else:
                if self.galera:
                    self._timed("galera", self.galera.start)
                self.cloud = openstack_cloud.OpenStackCloud(
                    self.cloud_dir, release=self.release, controllers=self.controllers,
                    computes=self.computes, log=self.log, neutron=self.neutron_cinder,
                    cinder=self.neutron_cinder, galera=self.galera)
                self._timed("openstack", self.cloud.start)
            if hypervisor:
                hypervisor.result()
        self.cloud.write_rc(self.rc_file)  # 0600: it holds the admin password
        self.write_pillar()
        self.salt.configure()  # the bridge adopts each VM's minion config from here
        if self.vms:
            self._timed("vms", self._vms_up)
        self._timed("salt", lambda: self.salt.up(elsewhere=self.vm_nodes))
        return self

    def _hypervisor_up(self):
        """kvm01's private libvirtd, and the new OS image where vms:image says it is."""
        self.virt.up()
        images = os.path.join(self.run_dir, "images")
        os.makedirs(images, exist_ok=True)
        target = os.path.join(images, f"{guest.NEW}.qcow2")
        if not os.path.exists(target):
            shutil.copy(guest.ensure()["images"][guest.NEW], target)

    def _vms_up(self):
        """The bridge, then one domain per controller from the old OS image (started)."""
        bridge.spawn(self.run_dir, uri=self.virt.uri)
        conn = self.virt.connect()
        try:
            defined = {dom.name(): dom for dom in conn.listAllDomains()}
            for node in self.vm_nodes:
                if node not in defined:
                    guest.define_node(conn, node, os.path.join(self.run_dir, "vms"), guest.OLD)
                elif not defined[node].isActive():
                    defined[node].create()
        finally:
            conn.close()

    def write_pillar(self):
        """Tell the nodes what only the running lab knows (lab.runtime_pillar)."""
        cloud, db = self.cloud, self.cloud.mariadb
        if self.galera:
            # the controllers reach the cluster as their services do (haproxy's DB
            # frontend); dbs01 (the logical backups') through its own node's socket
            host, port = cloud.haproxy.frontend_address(openstack_cloud.GALERA_FRONTEND)
            connection = {"host": host, "port": port, "user": "root",
                          "password": db.root_password}
            self._galera_pillar()
        else:
            connection = {"socket": db.socket, "user": "root", "password": db.root_password}
        extra = [name for name in ("neutron", "cinder") if name in cloud.databases]
        runtime_pillar.write_shape(self.run_dir, {"extra_services": extra, "db": self.db})
        runtime_pillar.update(self.run_dir, "all", {"leapfrog": {
            "releases": {"venvs": {r: openstack_venv.venv_path(r)
                                   for r in openstack_venv.RELEASES}},
            # neutron and cinder run from venvs of their own (as OSA and kolla deploy them)
            **{name: {"venvs": {r: openstack_venv.venv_path(f"{name}-{r}")
                                for r in openstack_venv.RELEASES}} for name in extra}}})
        ovn = ({"ovn": {"nb_connection": cloud.ovn.nb_connection,
                        "sb_connection": cloud.ovn.sb_connection}} if cloud.ovn else {})
        # the database node backs up OVN's NB/SB beside the databases (ovsdb_backup)
        runtime_pillar.update(self.run_dir, "dbs01", {"leapfrog": {
            "backups": {"dir": os.path.join(self.run_dir, "backups")}, "database": {
            **(self._node_connection(self.galera.nodes[0]) if self.galera else connection),
            "databases": [cloud.db_name(n) for n in cloud.databases]},
            # the keystone database whose clone a dress rehearsal rehomes (clone_rehome)
            "keystone": {"database": cloud.db_name("keystone")}, **ovn}})
        runtime_pillar.update(self.run_dir, "prx01", {"leapfrog": {"haproxy": {
            "socket": cloud.haproxy.admin_socket}}})
        # the master's cluster config: what the availability probe requests through the VIP
        runtime_pillar.update(self.run_dir, topology.MASTER_ID, {"leapfrog": {"clusters": {
            "lab": {"haproxy": {"probe_urls": [
                cloud.frontend_url(name) for name in
                ("keystone", "nova", "placement", "glance", *extra)]},
                    # with neutron and cinder, users' provisioning during each run too
                    **({"provision_probe": {**cloud.auth, "image": "cirros-lab",
                                            "flavor": "m1.lab", "network": "lab-net"}} if extra else {})}}}})
        if self.vms:
            runtime_pillar.update(self.run_dir, "kvm01", {"leapfrog": {"libvirt": {
                "uri": self.virt.uri}}})
        for node in self.salt.nodes:
            if node.role == "ctl":
                runtime_pillar.update(self.run_dir, node.id, {"leapfrog": {
                    "database": connection,
                    "nova": {"api_database": cloud.db_name("nova_api"),
                             "database": cloud.db_name("nova"),
                             "cell0_database": cloud.db_name("nova_cell0"),
                             # the node's own nova.conf, for nova-status upgrade check
                             "config_file": cloud.controllers[node.id][
                                 "nova-conductor"].config_path},
                    **{service: {"database": cloud.db_name(service)}
                       for service in ("keystone", "placement", "glance")},
                    # neutron's and cinder's own config too, for their upgrade checks
                    **{service: {"database": cloud.db_name(service), "config_file":
                                 cloud.controllers[node.id][kind].config_path}
                       for service, kind in (("neutron", "neutron-server"),
                                             ("cinder", "cinder-api")) if service in extra},
                    "verify": cloud.auth, **ovn}})

    def _node_connection(self, node):
        return {"socket": node.socket, "user": "root", "password": self.galera.root_password}

    def _galera_pillar(self):
        """dbs01..03: each its Galera node (galera, galera_backup: the node's my.cnf, the
        cluster's size, its own socket) and the role the cluster's ``roles:galera``
        targets."""
        for index, node in enumerate(self.galera.nodes, start=1):
            runtime_pillar.update(self.run_dir, f"dbs{index:02d}", {
                "galera": {"server": {"enabled": True}},
                "leapfrog": {"galera": {"defaults_file": node.config, "size": GALERA_SIZE},
                             "backups": {"dir": os.path.join(self.run_dir, "backups")},
                             "database": self._node_connection(node)}})

    def attach(self):
        """The lab a previous ``up`` left running."""
        self.cloud = openstack_cloud.OpenStackCloud.attach(self.cloud_dir, log=self.log)
        return self

    def status(self):
        """Each Salt daemon and OpenStack process (running, release), and each API through
        the VIP (answering or not)."""
        out = {f"salt/{name}": {"running": up} for name, up in self.salt.status().items()}
        if os.path.exists(os.path.join(self.cloud_dir, "cloud.json")):
            cloud = openstack_cloud.OpenStackCloud.attach(self.cloud_dir)
            out.update(cloud.status())
            for host, enabled in cloud.enabled.items():
                for service in cloud.node_services(host):
                    out[f"{host}/{service.kind}"]["enabled"] = enabled
            out.update(vip_health(cloud))
        if self.virt.running():
            out["bridge"] = {"running": procs.alive(bridge.pid_file(self.run_dir))}
            out.update(self.vm_status())
        return out

    def vm_status(self):
        """``{"vm/<domain>": {"running", "state", "os", "disk"}}`` from kvm01's libvirtd."""
        out = {}
        conn = self.virt.connect()
        try:
            for dom in sorted(conn.listAllDomains(), key=lambda d: d.name()):
                root = ET.fromstring(dom.XMLDesc(0))
                found = bridge.parse_domain(dom.XMLDesc(0))
                os_name = root.findtext(f"./metadata/{{{guest.METADATA_NS}}}vm/"
                                        f"{{{guest.METADATA_NS}}}os")
                active = bool(dom.isActive())
                out[f"vm/{dom.name()}"] = {"running": active,
                                           "state": "running" if active else "shut off",
                                           "os": os_name or "?", "disk": found["disk"]}
        finally:
            conn.close()
        return out

    def rss_mb(self):
        """Resident memory of the OpenStack side, in MB (the Salt daemons excluded)."""
        return round(self.cloud.rss_kb()["total"] / 1024) if self.cloud else 0

    def down(self, remove=True):
        """Stop everything by PID (the bridge, the domains and libvirtd, Salt, then the
        cloud) and remove the run dir."""
        bridge.terminate(self.run_dir)
        self.virt.down()
        self.salt.down()
        if os.path.exists(os.path.join(self.cloud_dir, "cloud.json")):
            openstack_cloud.OpenStackCloud.attach(self.cloud_dir, log=self.log).stop()
        if self.galera:
            self.galera.stop()
        if remove:
            shutil.rmtree(self.run_dir, ignore_errors=True)


def vip_health(cloud):
    """Each API frontend on the VIP: does it answer (any status below 500)?"""
    out = {}
    for name, (kind, *_rest) in cloud.frontends.items():
        if not kind:
            continue
        try:
            code = requests.get(cloud.frontend_url(name), timeout=5).status_code
        except requests.RequestException:
            code = None
        out[f"vip/{name}"] = {"running": code is not None and code < 500, "status": code}
    return out


def describe(status):
    """One line per part for ``lab status``."""
    return "\n".join(f"{name:28} {'up' if info.get('running') else 'DOWN'}"
                     + (f"  release {info['release']}" if info.get("release") else "")
                     + ("  (deployed stopped)" if info.get("enabled") is False else "")
                     + (f"  {info['state']}, OS image {info['os']}, disk {info['disk']}"
                        if "state" in info else "")
                     + ("  {state}, cluster size {size}, ready {ready}, desync {desync}, "
                        "seqno {seqno}".format_map(collections.defaultdict(
                            lambda: "?", info["galera"])) if info.get("galera") else "")
                     + ("" if info.get("healthy", True) else "  (not answering)")
                     for name, info in status.items())

