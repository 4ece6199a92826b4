"""The lab cloud on a real three-node Galera cluster behind haproxy's DB frontend (as kolla
and OSA deploy it): every service's connections go to the one active node, the data is on
all three, and when the active node is SIGKILLed the frontend sends the services to a
standby while the API keeps answering; the node rejoins and takes the connections back
(the standby's sessions cut: one node takes the writes). The probe sends one request at a
time, so each of those two moments can fail at most the one request in flight on a cut
connection (keystone answers 500 then; nova, glance and placement reconnect); nothing else
may fail. Heavy: a cloud of its own (about 3 minutes)."""
import os
import signal
import sys
import threading
import time

import pytest
import requests

from tests.clouds import running_cloud, wait_until

PREFIX = "lfgc"


@pytest.fixture(scope="module")
def cloud(galera_cluster, openstack_venvs):
    with running_cloud("lf-gc-", release="2024.1", computes=1, controllers=2, servers=1,
                       galera=galera_cluster, db_prefix=PREFIX) as cloud:
        yield cloud


def _sessions(node):
    """Client sessions on ``node`` connected to one of the cloud's databases."""
    with node.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB LIKE %s",
                    (f"{PREFIX}\\_%",))
        return cur.fetchone()[0]


def _servers_in_db(node):
    with node.connect(f"{PREFIX}_nova") as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM instances WHERE deleted = 0")
        return cur.fetchone()[0]


class ApiProbe:
    """Requests through the VIP (keystone, nova, glance, placement: each reads its database)
    in a loop, counting what fails."""

    PATHS = (("keystone", "/projects"), ("nova", "/servers/detail"),
             ("glance", "/v2/images"), ("placement", "/resource_providers"))

    def __init__(self, cloud):
        self.cloud, self.requests, self.failures = cloud, 0, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        token = self.cloud.token()
        while not self._stop.is_set():
            for service, path in self.PATHS:
                headers = {"X-Auth-Token": token}
                if service == "placement":
                    headers["OpenStack-API-Version"] = "placement 1.6"
                try:
                    response = requests.get(self.cloud.frontend_url(service) + path,
                                            headers=headers, timeout=30)
                    ok = response.status_code == 200
                    detail = f"HTTP {response.status_code}: {response.text[:200]}"
                except requests.RequestException as exc:
                    ok, detail = False, str(exc)
                self.requests += 1
                if not ok:
                    self.failures.append(f"{time.strftime('%H:%M:%S')} {service}{path}: "
                                         f"{detail}")
            time.sleep(0.05)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(60)


@pytest.mark.heavy
def test_the_cloud_survives_its_active_db_node_killed(cloud, galera_cluster):
    n1, n2, n3 = galera_cluster.nodes
    # every service on the active node only; the data on all three
    wait_until(lambda: _sessions(n1) > 0, 30, "sessions on n1")
    assert (_sessions(n2), _sessions(n3)) == (0, 0)
    assert _servers_in_db(n1) == _servers_in_db(n3) == 1

    with ApiProbe(cloud) as probe:
        time.sleep(5)
        os.kill(n1.pid, signal.SIGKILL)
        n1.pid = None
        wait_until(lambda: _sessions(n2) > 0, 30, "the services reconnected to n2")
        time.sleep(10)  # the API served from n2 for a while
        killed = (probe.requests, list(probe.failures))
        server = cloud.create_server("after-kill")  # a write, on n2
        galera_cluster.start()  # n1 rejoins (IST), haproxy gives it the connections back
        n1.wait_synced()
        wait_until(lambda: _sessions(n1) > 0 and _sessions(n2) == 0, 60,
              "the services back on n1 (the standby's sessions cut)")
        time.sleep(5)
    print(f"\n[galera cloud] {probe.requests} requests, {len(probe.failures)} failed "
          f"({killed[0]} up to 10 s after the kill, {len(killed[1])} failed then)",
          file=sys.stderr)
    assert len(killed[1]) <= 1 and len(probe.failures) <= 2, probe.failures
    assert probe.requests > 100
    assert cloud.servers()[server]["status"] == "ACTIVE"
    assert _servers_in_db(n1) == _servers_in_db(n3) == 2
