"""Done-when of the API side on the real thing: haproxy in front of the real keystone,
placement, glance and nova-api of two lab controllers. Under continuous load through the
VIP, draining ctl02, stopping its services, starting them and putting it back loses no
request; the same restart without the drain loses some."""
import time

import pytest

import leapfrog_probe
from tests.clouds import running_cloud
from tests.loader import load

haproxy_admin = load("modules", "haproxy_admin")

LOAD = {"concurrency": 6, "duration": 240, "interval": 0.05, "timeout": 10}


@pytest.fixture(scope="module")
def cloud(mariadb, openstack_venvs):
    """Two controllers (a backend server each in every API's haproxy backend), one compute."""
    with running_cloud("lf-dr-", release="2024.1", controllers=2, computes=1, servers=1,
                       mariadb=mariadb, db_prefix="lfdr") as cloud:
        yield cloud


@pytest.fixture
def configure_loader_modules(cloud):
    pillar = {"leapfrog": {"haproxy": {"socket": cloud.haproxy.admin_socket, "timeout": 5,
                                       "drain_timeout": 60, "ready_timeout": 60}}}
    return {haproxy_admin: {"__pillar__": pillar}}


def urls(cloud):
    return [cloud.frontend_url(name) for name in ("keystone", "placement", "nova")]


def wait_up(server, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        statuses = {be: r["status"] for be, r in haproxy_admin.server_status(server).items()}
        if all(s == "UP" for s in statuses.values()):
            return
        time.sleep(0.2)
    raise AssertionError(f"{server} not back UP in haproxy: {statuses}")


def restart(cloud, server, drain):
    """Restart every API service of ``server`` under load; return the probe summary."""
    with leapfrog_probe.Probe(urls(cloud), **LOAD) as probe:
        time.sleep(2.0)
        if drain:
            drained = haproxy_admin.drain(server)
            assert sorted(drained["backends"]) == ["glance", "keystone", "neutron", "nova",
                                                   "placement"]
        cloud.stop_node(server)
        cloud.start_node(server)
        if drain:
            haproxy_admin.ready(server)
        else:
            wait_up(server)
        time.sleep(2.0)
        probe.stop()
    summary = probe.summary()
    print(f"\nreal APIs, {'with' if drain else 'WITHOUT'} drain: {summary['requests']} "
          f"requests, {summary['failures']} failed, longest outage "
          f"{summary['longest_outage']} s, statuses {summary['statuses']}")
    return summary


def test_drained_restart_of_real_api_servers_loses_nothing(cloud):
    with_drain = restart(cloud, "ctl02", drain=True)
    without = restart(cloud, "ctl02", drain=False)
    assert with_drain["requests"] > 100 and without["requests"] > 100
    assert with_drain["failures"] == 0, with_drain
    assert without["failures"] > 0, without
    assert all(v["failures"] == 0 for v in with_drain["per_url"].values())
