"""The lab's real OpenStack cloud (lab/openstack_cloud.py) at 2024.1, and the fake compute
surviving a restart on the same host, also from the next release's venv (2025.1).

The compute restart is what the data-plane upgrade depends on: nova-compute with
``fake.FakeDriverWithoutFakeNodes`` keeps its node UUID in ``state_path/compute_id``, so a
restarted (or upgraded) compute finds its own compute node record instead of making a
duplicate hypervisor.
"""
import os

import pytest
import requests

from lab.openstack_cloud import FRONTENDS, SERVICE_VERSION, OpenStackCloud


def test_cloud_is_up_at_2024_1_through_the_vip(openstack_cloud):
    cloud = openstack_cloud
    services = cloud.api("GET", "keystone", "/services")["services"]
    assert {s["type"] for s in services} == {"identity", "compute", "placement", "image",
                                            "network"}
    endpoints = cloud.api("GET", "keystone", "/endpoints")["endpoints"]
    assert len(endpoints) == 3 * len(FRONTENDS)
    assert all(e["url"].startswith(f"http://{cloud.vip}:") for e in endpoints)

    compute = cloud.api("GET", "nova", "/os-services")["services"]
    assert sorted((s["binary"], s["host"], s["state"]) for s in compute) == [
        ("nova-compute", "cmp01", "up"), ("nova-compute", "cmp02", "up"),
        ("nova-conductor", "ctl01", "up"), ("nova-scheduler", "ctl01", "up")]
    assert set(cloud.service_versions("nova-compute").values()) == {SERVICE_VERSION["2024.1"]}

    hypervisors = cloud.hypervisors()
    assert sorted(hypervisors) == ["cmp01", "cmp02"]
    assert all(h["state"] == "up" and h["status"] == "enabled" for h in hypervisors.values())
    assert cloud.resource_providers() == {name: h["id"] for name, h in hypervisors.items()}

    servers = cloud.servers()
    assert sorted((s["status"], s["host"]) for s in servers.values()) == [
        ("ACTIVE", "cmp01"), ("ACTIVE", "cmp01"), ("ACTIVE", "cmp02")]
    image = cloud.api("GET", "glance", f"/v2/images/{cloud.ids['image']}")
    assert image["status"] == "active"
    flavors = cloud.api("GET", "nova", "/flavors")["flavors"]
    assert [f["name"] for f in flavors] == ["m1.lab"]
    assert requests.get(cloud.frontend_url("neutron") + "/v2.0/ports",
                        timeout=5).json() == {"ports": []}

    # every process is one of ours, on its node's loopback address, no secret on its argv,
    # its config files private (they hold passwords)
    secrets = [cloud.admin_password, cloud.mariadb.root_password, *cloud.passwords.values()]
    for service in cloud.services():
        assert service.running() and service.address.startswith("127.0.1.")
        assert not any(secret in _cmdline(service.pid) for secret in secrets)
        assert os.stat(service.config_path).st_mode & 0o077 == 0
    assert cloud.controller["nova-api"].address == "127.0.1.21"
    assert len(os.listdir(os.path.join(cloud.run_dir, "images"))) == 1  # glance's file store
    with cloud.mariadb.connect(cloud.db_name("nova_api")) as conn, conn.cursor() as cur:
        cur.execute("SELECT name, database_connection FROM cell_mappings ORDER BY id")
        cells = {name: url.split("?")[0].rsplit("/", 1)[1] for name, url in cur.fetchall()}
    assert cells == {"cell0": "lfos_nova_cell0", "cell1": "lfos_nova"}

    # another process (``lab status``/``down``) finds the same cloud from its run_dir
    attached = OpenStackCloud.attach(cloud.run_dir, mariadb=cloud.mariadb)
    status = attached.status()
    assert all(part["running"] for part in status.values()), status
    assert {k: v["pid"] for k, v in status.items() if "pid" in v} == {
        f"{s.host}/{s.kind}": s.pid for s in cloud.services()}
    assert oct(os.stat(attached.state_file).st_mode & 0o777) == "0o600"


def _cmdline(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as handle:
        return handle.read().replace(b"\0", b" ").decode()


def _compute_id(cloud, host):
    with open(os.path.join(cloud.computes[host].state_path, "compute_id")) as handle:
        return handle.read().strip()


def _restart_checks(cloud, host, before_hypervisors, before_servers):
    """What a restarted compute must keep: its hypervisor, node UUID, provider, servers."""
    hypervisors = cloud.wait_hypervisors([host])
    assert hypervisors == before_hypervisors
    assert _compute_id(cloud, host) == before_hypervisors[host]["id"]
    rows = cloud.compute_nodes()
    assert sorted((r["host"], r["uuid"], r["deleted"]) for r in rows) == sorted(
        (name, h["id"], 0) for name, h in before_hypervisors.items())
    assert cloud.resource_providers() == {n: h["id"] for n, h in before_hypervisors.items()}
    assert cloud.servers() == before_servers
    with open(cloud.computes[host].log_path, errors="replace") as handle:
        log = handle.read()
    assert "Duplicate compute node record" not in log
    assert "No local node identity" not in log


def test_fake_compute_survives_a_restart(openstack_cloud):
    cloud = openstack_cloud
    hypervisors, servers = cloud.hypervisors(), cloud.servers()
    old_pid = cloud.computes["cmp01"].pid

    cloud.restart_compute("cmp01")

    assert cloud.computes["cmp01"].pid != old_pid
    _restart_checks(cloud, "cmp01", hypervisors, servers)


def test_fake_compute_survives_a_restart_from_the_next_release(openstack_cloud, openstack_venvs):
    """Control plane first (nova 2024.1 -> 2025.1: DB syncs, api/conductor/scheduler from
    the 2025.1 venv), then cmp01 stops and starts from the 2025.1 venv on the same host:
    same hypervisor and node UUID, no duplicate, servers still there and ACTIVE, and it boots
    a new server. cmp02 stays at 2024.1 (a 2025.1 control plane accepts it)."""
    cloud = openstack_cloud
    hypervisors, servers = cloud.hypervisors(), cloud.servers()

    cloud.upgrade_nova_control("2025.1")
    cloud.restart_compute("cmp01", release="2025.1")

    compute = cloud.computes["cmp01"]
    assert compute.release == "2025.1"
    assert f"{openstack_venvs['2025.1']}/bin/nova-compute" in _cmdline(compute.pid)
    assert f"{openstack_venvs['2025.1']}/bin/" in _cmdline(cloud.controller["nova-conductor"].pid)
    assert cloud.service_versions("nova-compute") == {
        "cmp01": SERVICE_VERSION["2025.1"], "cmp02": SERVICE_VERSION["2024.1"]}
    _restart_checks(cloud, "cmp01", hypervisors, servers)
    on_cmp01 = sorted(s["name"] for s in servers.values() if s["host"] == "cmp01")
    assert len(on_cmp01) == 2

    new = cloud.create_server("after-upgrade", "cmp01")
    assert cloud.servers()[new]["status"] == "ACTIVE"
    assert cloud.servers()[new]["host"] == "cmp01"
    cloud.api("DELETE", "nova", f"/servers/{new}")


def _roll_to(cloud, release):
    """The rolling order nova asks for: control plane first, then every compute."""
    if cloud.controller["nova-conductor"].release < release:
        cloud.upgrade_nova_control(release)
    for host, compute in cloud.computes.items():
        if compute.release < release:
            cloud.restart_compute(host, release=release)


@pytest.mark.heavy
@pytest.mark.skipif("'heavy' not in (config.getoption('markexpr') or '')",
                    reason="a long rolling upgrade: run with -m heavy")
def test_rolling_2024_1_to_2026_1_keeps_hypervisors_and_servers(openstack_cloud):
    """The whole skip, hop by hop (2025.1, then 2026.1: its control plane refuses computes
    older than 2025.1's service version): hypervisors, node UUIDs and servers survive every
    compute restart, and a 2026.1 compute boots a new server. ~2.5 min: run with -m heavy."""
    cloud = openstack_cloud
    hypervisors, servers = cloud.hypervisors(), cloud.servers()
    for release in ("2025.1", "2026.1"):
        _roll_to(cloud, release)
        assert set(cloud.service_versions("nova-compute").values()) == {SERVICE_VERSION[release]}
        assert cloud.hypervisors() == hypervisors
        assert cloud.servers() == servers
        for host in cloud.computes:
            assert _compute_id(cloud, host) == hypervisors[host]["id"]
    new = cloud.create_server("on-2026-1", "cmp02")
    assert cloud.servers()[new] == {"name": "on-2026-1", "status": "ACTIVE", "host": "cmp02"}
    cloud.api("DELETE", "nova", f"/servers/{new}")
