"""The whole lab on one machine: the OpenStack cloud (MariaDB, RabbitMQ, haproxy on the VIP,
keystone/placement/glance/nova-api on each controller, conductor, scheduler, fake computes)
and its Salt cluster (cfg01 + a minion per node), tied together by the run-time pillar.

    python -m lab up|down|status [--run-dir DIR] [--controllers N] [--computes N]
"""
import os
import shutil
import time

import requests

from lab import openstack_cloud, openstack_venv, runtime_pillar, salt_cluster, topology


class Lab:
    """Start, describe and stop the lab under ``run_dir``."""

    def __init__(self, run_dir, controllers=3, computes=2, release="2024.1", log=None):
        self.run_dir = os.path.abspath(run_dir)
        self.controllers, self.computes, self.release = controllers, computes, release
        self.log = log or (lambda line: None)
        self.salt = salt_cluster.SaltCluster(
            self.run_dir, topology.nodes(controllers=controllers, computes=computes))
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

    def up(self):
        """Bring every part up (idempotent: a running cloud is attached, not restarted)."""
        os.makedirs(self.run_dir, mode=0o700, exist_ok=True)
        self._timed("venvs", openstack_venv.ensure_all)
        if os.path.exists(os.path.join(self.cloud_dir, "cloud.json")):
            self.cloud = openstack_cloud.OpenStackCloud.attach(self.cloud_dir, log=self.log)
        else:
            self.cloud = openstack_cloud.OpenStackCloud(
                self.cloud_dir, release=self.release, controllers=self.controllers,
                computes=self.computes, log=self.log)
            self._timed("openstack", self.cloud.start)
        self.write_pillar()
        self._timed("salt", self.salt.up)
        return self

    def write_pillar(self):
        """Tell the nodes what only the running lab knows (lab.runtime_pillar)."""
        cloud, db = self.cloud, self.cloud.mariadb
        connection = {"socket": db.socket, "user": "root", "password": db.root_password}
        runtime_pillar.update(self.run_dir, "all", {"leapfrog": {"releases": {"venvs": {
            r: openstack_venv.venv_path(r) for r in openstack_venv.RELEASES}}}})
        runtime_pillar.update(self.run_dir, "dbs01", {"leapfrog": {"database": {
            **connection,
            "databases": [cloud.db_name(n) for n in openstack_cloud.DATABASES]}}})
        runtime_pillar.update(self.run_dir, "prx01", {"leapfrog": {"haproxy": {
            "socket": cloud.haproxy.admin_socket}}})
        for node in self.salt.nodes:
            if node.role == "ctl":
                runtime_pillar.update(self.run_dir, node.id, {"leapfrog": {
                    "database": connection,
                    "nova": {"api_database": cloud.db_name("nova_api"),
                             "database": cloud.db_name("nova"),
                             "cell0_database": cloud.db_name("nova_cell0")},
                    "verify": cloud.auth}})

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
            out.update(vip_health(cloud))
        return out

    def rss_mb(self):
        """Resident memory of the OpenStack side, in MB (the Salt daemons excluded)."""
        return round(self.cloud.rss_kb()["total"] / 1024) if self.cloud else 0

    def down(self, remove=True):
        """Stop everything by PID (Salt first, then the cloud) and remove the run dir."""
        self.salt.down()
        if os.path.exists(os.path.join(self.cloud_dir, "cloud.json")):
            openstack_cloud.OpenStackCloud.attach(self.cloud_dir, log=self.log).stop()
        if remove:
            shutil.rmtree(self.run_dir, ignore_errors=True)


def vip_health(cloud):
    """Each API frontend on the VIP: does it answer (any status below 500)?"""
    out = {}
    for name, (kind, *_rest) in openstack_cloud.FRONTENDS.items():
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
                     + ("" if info.get("healthy", True) else "  (not answering)")
                     for name, info in status.items())

