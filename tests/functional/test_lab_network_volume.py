"""The lab cloud with real neutron (ML2/OVN, lab/ovn.py) and cinder (fake driver) through
keystone and haproxy (lab/network_volume.py): nova's servers get neutron ports bound to
their compute's chassis, the router's gateway lives on a controller's gateway chassis,
volumes become available; ovn_nb's checks and moves and the provisioning probe against
them; haproxy_admin's drain in front of the real APIs of both controllers (under continuous
load through the VIP, draining ctl02, stopping its API services, starting them and putting
it back loses no request; the same restart without the drain loses some); last (the tests
share the cloud: one cloud of two controllers for all), one controller's neutron and cinder
move to 2025.1 (neutron's expand first, with the new code) while the other still runs
2024.1, and both serve.
"""
import os
import time

import pytest
import requests

from tests import drain_cycle
from tests.clouds import running_cloud
from tests.loader import load, minion_modules

haproxy_admin = load("modules", "haproxy_admin")

# what the probe's requests reach (through nova-api: glance for images): restarted under load
API_SERVICES = ("keystone", "placement", "glance", "nova-api")
LOAD = {"concurrency": 6, "duration": 240, "interval": 0.05, "timeout": 10}


@pytest.fixture(scope="module")
def cloud(mariadb, openstack_venvs, service_venvs):
    with running_cloud("lf-nv-", rss=True, release="2024.1", computes=1, controllers=2,
                       servers=1, mariadb=mariadb, db_prefix="lfnv", neutron=True,
                       cinder=True) as cloud:
        yield cloud


@pytest.fixture
def configure_loader_modules(cloud):
    pillar = {"leapfrog": {"haproxy": {"socket": cloud.haproxy.admin_socket, "timeout": 5,
                                       "drain_timeout": 60, "ready_timeout": 60}}}
    return {haproxy_admin: {"__pillar__": pillar}}


def _names(cloud, collection):
    return sorted(item["name"] for item in
                  cloud.api("GET", "neutron", f"/v2.0/{collection}")[collection])


def test_seeded_network_and_volumes_are_real(cloud):
    types = {s["type"] for s in cloud.api("GET", "keystone", "/services")["services"]}
    assert {"network", "volumev3"} <= types
    assert _names(cloud, "networks") == ["lab-ext", "lab-net"]
    assert _names(cloud, "routers") == ["lab-router"]
    assert "lab-port" in _names(cloud, "ports")

    # nova's server got a neutron port on lab-net, bound by ML2/OVN to its compute's chassis
    (server_id,) = cloud.ids["servers"]
    (port,) = cloud.api("GET", "neutron", f"/v2.0/ports?device_id={server_id}")["ports"]
    assert port["network_id"] == cloud.ids["network"]
    assert (port["binding:host_id"], port["binding:vif_type"]) == ("cmp01", "ovs")
    addresses = cloud.api("GET", "nova", f"/servers/{server_id}")["server"]["addresses"]
    assert list(addresses) == ["lab-net"]

    # the router's gateway port is scheduled on a controller's gateway chassis in OVN's NB
    gateways = cloud.ovn.nbctl("--bare", "--columns=chassis_name", "list", "gateway_chassis")
    assert set(gateways.split()) == {"ctl01", "ctl02"}
    agents = cloud.api("GET", "neutron", "/v2.0/agents")["agents"]
    assert sorted((a["host"], a["alive"]) for a in agents if "Controller" in a["agent_type"]) \
        == [("cmp01", True), ("ctl01", True), ("ctl02", True)]

    volumes = cloud.volumes()
    assert sorted((v["name"], v["status"]) for v in volumes.values()) == [
        ("lab-vol1", "available"), ("lab-vol2", "available")]
    assert {v["host"] for v in volumes.values()} == {"lab-storage@fake#fake"}
    services = cloud.api("GET", "cinder", cloud.volume_path("/os-services"))["services"]
    # (the volume services share one host name: cinder may list it once or twice)
    assert sorted({(s["binary"], s["host"], s["state"]) for s in services}) == [
        ("cinder-scheduler", "ctl01", "up"), ("cinder-scheduler", "ctl02", "up"),
        ("cinder-volume", "lab-storage@fake", "up")]


def test_ovn_nb_consistency_names_a_duplicate_switch_and_the_fix(cloud, tmp_path):
    """What neutron 2026.1's maintenance task does to older networks (FACTS.md), made by
    hand: a second, empty Logical_Switch under a network's name."""
    mods = minion_modules(tmp_path / "cache", {"leapfrog": {
        "ovn": {"nb_connection": cloud.ovn.nb_connection}, "verify": cloud.auth}}, ["ovn_nb"])
    consistency = mods["ovn_nb.consistency"]
    before = consistency()
    assert before["consistent"] is True, before["advice"]
    assert (before["networks"]["count"], before["routers"]["count"]) == (2, 1)

    network = cloud.ids["network"]
    extra = cloud.ovn.nbctl("create", "Logical_Switch", f"name=neutron-{network}")
    try:
        found = consistency()
        assert found["consistent"] is False
        assert list(found["networks"]["duplicates"]) == [network]
        assert found["advice"] == [
            f"network {network} has 2 Logical_Switch rows: neutron 2026.1's maintenance task "
            "made the extra one (a known neutron 28.x bug with networks made by older "
            f"releases); delete the empty one(s) with 'ovn-nbctl destroy Logical_Switch "
            f"{extra}' and re-check"]
    finally:
        cloud.ovn.nbctl("destroy", "Logical_Switch", extra)
    assert consistency()["consistent"] is True

    with pytest.raises(Exception, match="is not an OVSDB remote"):
        consistency(nb_connection="127.0.0.1:6641; rm -rf /")


def test_router_gateways_move_off_a_controller_and_back(cloud, tmp_path):
    mods = minion_modules(tmp_path / "cache", {"leapfrog": {
        "ovn": {"nb_connection": cloud.ovn.nb_connection}}}, ["ovn_nb"])
    before = mods["ovn_nb.gateways"]()
    (port, rows), = before.items()  # lab-router's gateway port, on both controllers
    assert port.startswith("lrp-") and {r["chassis"] for r in rows} == {"ctl01", "ctl02"}
    active, other = rows[0]["chassis"], rows[1]["chassis"]

    assert mods["ovn_nb.move_gateways"](chassis=other)["moved"] == []  # not active there
    planned = mods["ovn_nb.move_gateways"](chassis=active, test=True)
    assert mods["ovn_nb.gateways"]() == before  # test: nothing changed
    moved = mods["ovn_nb.move_gateways"](chassis=active)
    assert moved["moved"] == planned["moved"] == [{"port": port, "from": active, "to": other}]
    after = mods["ovn_nb.gateways"]()[port]
    assert after[0]["chassis"] == other
    assert [r["kept"] for r in after if r["chassis"] == active] == [rows[0]["priority"]]
    assert mods["ovn_nb.move_gateways"](chassis=active)["moved"] == []  # a re-run: done

    restored = mods["ovn_nb.restore_gateways"](chassis=active)
    assert restored["restored"] == [{"port": port, "to": active, "priority": rows[0]["priority"]}]
    assert mods["ovn_nb.gateways"]() == before
    assert mods["ovn_nb.restore_gateways"](chassis=active)["restored"] == []
    with pytest.raises(Exception, match="is not a chassis name"):
        mods["ovn_nb.move_gateways"](chassis="ctl01 priority=9")


def test_provisioning_probe_creates_and_deletes_each_kind(cloud, tmp_path):
    """The run's provisioning probe as the runner starts it (its own process, its config a
    0600 file, SIGTERM at the end): every kind's cycles succeed and leave nothing behind;
    the server cycle's servers get a NIC on the lab network (a port nova made, bound on the
    compute) and their ports go with them."""
    import leapfrog_provision  # pylint: disable=import-outside-toplevel

    def lab_net_ports():
        return cloud.api("GET", "neutron",
                         f"/v2.0/ports?network_id={cloud.ids['network']}")["ports"]

    ports_before = {p["id"] for p in lab_net_ports()}
    folder = str(tmp_path / "run")
    conf = {**cloud.auth, "image": "cirros-lab", "flavor": "m1.lab", "interval": 1,
            "network": "lab-net"}
    started = leapfrog_provision.start(folder, conf, duration=120)
    assert started["provision"] == "started"
    config = os.path.join(folder, "provision.conf.json")
    assert os.stat(config).st_mode & 0o077 == 0
    with open(f"/proc/{started['pid']}/cmdline", "rb") as handle:
        assert cloud.admin_password.encode() not in handle.read()
    seen = set()
    for _ in range(50):  # a few cycles of each kind (25 s); the servers' ports seen meanwhile
        seen |= {p["id"] for p in lab_net_ports() if p["device_owner"].startswith("compute:")
                 and p["id"] not in ports_before}
        time.sleep(0.5)
    summary = leapfrog_provision.stop(folder)
    assert seen, "no server of the probe had a port on lab-net"
    assert {p["id"] for p in lab_net_ports()} == ports_before
    assert not os.path.exists(config)
    assert set(summary["kinds"]) == {"network", "volume", "server"}
    assert summary["failed"] == 0, summary["failures"]
    assert all(part["cycles"] >= 1 for part in summary["kinds"].values())
    assert summary["success_rate"] == 100.0
    assert not [n for n in _names(cloud, "networks") if n.startswith("lf-prov-")]
    assert not [v for v in cloud.volumes().values() if v["name"].startswith("lf-prov-")]
    assert not [s for s in cloud.servers().values() if s["name"].startswith("lf-prov-")]



def test_neutron_and_cinder_upgrade_checks_with_the_target_code(cloud, service_venvs,
                                                               tmp_path):
    """What the precheck runs on the first controller: neutron-status and cinder-status of
    the hop's target against the node's own configs (FACTS.md: 2024.1's neutron-status
    crashes with OVN, so it is skipped with the reason)."""
    ctl02 = cloud.controllers["ctl02"]
    mods = minion_modules(tmp_path / "cache", {"leapfrog": {
        "neutron": {"venvs": service_venvs["neutron"],
                    "config_file": ctl02["neutron-server"].config_path},
        "cinder": {"venvs": service_venvs["cinder"],
                   "config_file": ctl02["cinder-api"].config_path}}}, ["openstack_db"])
    check = mods["openstack_db.upgrade_check"]
    for service in ("neutron", "cinder"):
        found = check(service, release="2025.1")
        assert (found["code"], found["result"], found["failed"]) == (0, "Success", []), found
        assert found["checks"] and all(c["result"] == "Success" for c in found["checks"])
    skipped = check("neutron", release="2024.1")
    assert skipped["result"] == "Skipped" and "crashes with ML2/OVN" in skipped["comment"]
    with pytest.raises(Exception, match="nova has no upgrade check here; known: neutron, "
                                        "cinder"):
        check("nova", release="2025.1")


def test_a_switch_without_the_network_type_gets_it_back(cloud, tmp_path):
    """A switch as a 2024.1 server leaves it (no neutron:provnet-network-type, which
    2025.1+ servers read when they make a port): set_network_types gives it back."""
    mods = minion_modules(tmp_path / "cache", {"leapfrog": {
        "ovn": {"nb_connection": cloud.ovn.nb_connection}, "verify": cloud.auth}}, ["ovn_nb"])
    network = cloud.ids["network"]
    uuid = cloud.ovn.nbctl("--bare", "--columns=_uuid", "find", "Logical_Switch",
                           f"name=neutron-{network}")
    cloud.ovn.nbctl("remove", "Logical_Switch", uuid, "external_ids",
                    '"neutron:provnet-network-type"')
    planned = mods["ovn_nb.set_network_types"](test=True)
    assert {"network": network, "type": "geneve"} in planned["set"]
    assert mods["ovn_nb.set_network_types"]()["set"] == planned["set"]
    assert cloud.ovn.nbctl("get", "Logical_Switch", uuid,
                           'external_ids:"neutron:provnet-network-type"').strip('"') == "geneve"
    assert mods["ovn_nb.set_network_types"]() == {"set": [], "unknown": []}
    # and a 2025.1 server makes ports on it again
    port = cloud.api("POST", "neutron", "/v2.0/ports", json={"port": {
        "name": "typed-again", "network_id": network}})["port"]
    cloud.api("DELETE", "neutron", f"/v2.0/ports/{port['id']}")


def _restart(cloud, server, drain):
    """Restart the API services of ``server`` under load; return the probe's summary."""
    urls = [cloud.frontend_url(name) for name in ("keystone", "placement", "nova")]
    apis = [cloud.controllers[server][kind] for kind in API_SERVICES]

    def restart():
        cloud.stop_node(server, services=apis)
        cloud.start_node(server, services=apis)
    drained, summary = drain_cycle.restart_under_load(
        haproxy_admin, urls, LOAD, server, restart, drain, settle=2.0, up_timeout=60,
        poll=0.2, label="real APIs, ")
    if drain:
        assert drained == ["cinder", "glance", "keystone", "neutron", "nova", "placement"]
    return summary


def test_drained_restart_of_real_api_servers_loses_nothing(cloud):
    with_drain = _restart(cloud, "ctl02", drain=True)
    without = _restart(cloud, "ctl02", drain=False)
    assert with_drain["requests"] > 100 and without["requests"] > 100
    assert with_drain["failures"] == 0, with_drain
    assert without["failures"] > 0, without
    assert all(v["failures"] == 0 for v in with_drain["per_url"].values())


def test_one_controller_at_2025_1_beside_one_at_2024_1(cloud, tmp_path, service_venvs):
    ctl01 = cloud.controllers["ctl01"]
    moved = [ctl01[k] for k in ("neutron-server", "neutron-ovn-maintenance-worker",
                                "cinder-api", "cinder-scheduler", "cinder-volume")]
    cloud.stop_node("ctl01", services=moved)
    neutron = ctl01["neutron-server"]
    neutron.release, neutron.venv = "2025.1", None
    neutron.write_config()
    expand = neutron.manage("upgrade", "--expand")
    assert "Running upgrade" in expand.stdout + expand.stderr
    cinder = ctl01["cinder-api"]
    cinder.release, cinder.venv = "2025.1", None
    cinder.manage("db", "sync")
    cloud.start_node("ctl01", release="2025.1", services=moved)
    assert ctl01["neutron-ovn-maintenance-worker"].running()  # 2025.1 runs it on its own
    # what the rolling hop does before the new server takes requests: 2024.1's switches
    # lack the network type 2025.1 reads when it makes a port (its own maintenance task
    # sets it, some time after it starts: a port meanwhile is an HTTP 500)
    mods = minion_modules(tmp_path / "cache", {"leapfrog": {
        "ovn": {"nb_connection": cloud.ovn.nb_connection}, "verify": cloud.auth}}, ["ovn_nb"])
    mods["ovn_nb.set_network_types"]()

    # ctl02's 2024.1 server and ctl01's 2025.1 API serve the same networks and make ports
    releases = {}
    for host, services in cloud.controllers.items():
        server = services["neutron-server"]
        releases[host] = server.release
        found = requests.get(f"{server.url}/v2.0/networks", timeout=30,
                             headers={"X-Auth-Token": cloud.token()}).json()["networks"]
        assert {n["name"] for n in found} == {"lab-ext", "lab-net"}, host
    assert releases == {"ctl01": "2025.1", "ctl02": "2024.1"}
    port = cloud.api("POST", "neutron", "/v2.0/ports", json={"port": {
        "name": "after-expand", "network_id": cloud.ids["network"]}})["port"]
    cloud.api("DELETE", "neutron", f"/v2.0/ports/{port['id']}")
    volume = cloud.create_volume("after-2025-1")
    assert cloud.volumes()[volume]["status"] == "available"
    server = cloud.create_server("after-2025-1", host="cmp01")
    (bound,) = cloud.api("GET", "neutron", f"/v2.0/ports?device_id={server}")["ports"]
    assert bound["binding:host_id"] == "cmp01"

    # neutron's contract only once no older server runs: what the node sees running
    procs = minion_modules(tmp_path / "procs", {"leapfrog": {"neutron": {
        "venvs": service_venvs["neutron"]}}}, ["openstack_procs"])["openstack_procs.servers"]
    seen = procs("neutron", release="2025.1")
    pids = {s.pid: s for node in cloud.controllers.values() for s in node.values()}
    assert {(pids[p["pid"]].host, pids[p["pid"]].kind, p["release"]) for p in seen["servers"]
            if p["pid"] in pids} == {("ctl01", "neutron-server", "2025.1"),
                                     ("ctl01", "neutron-ovn-maintenance-worker", "2025.1"),
                                     ("ctl02", "neutron-server", "2024.1")}
    old = cloud.controllers["ctl02"]["neutron-server"].pid
    assert seen["releases"] == ["2024.1", "2025.1"]
    assert [line for line in seen["older"] if f"(pid {old})" in line] == [
        f"neutron-server (pid {old}) at 2024.1"]
    cloud.stop_node("ctl02", services=[cloud.controllers["ctl02"]["neutron-server"]])
    assert procs("neutron", release="2025.1")["older"] == []
    contract = neutron.manage("upgrade", "--contract")
    assert "Running upgrade" in contract.stdout + contract.stderr
