"""A rollback with real neutron and cinder (heavy, ~15 min: 2 controllers + 1 compute, OVN,
cinder's fake backend):

1. ``orch.upgrade_control_plane`` to 2025.1 fails while rebuilding the second controller
   (the test-only fault switch): ctl01 runs 2025.1 (neutron expanded, cinder synced), the
   routers' gateways moved off ctl02; a network and a volume made after the backup;
2. ``orch.rollback_control_plane`` restores the databases and OVN's NB/SB from that run's
   backups: neutron's and cinder's databases at 2024.1's heads, every seeded network,
   subnet, router, port and volume there, the network and volume made after the backup
   gone (the network from neutron and from OVN), the gateways' priorities as before the
   run, OVN consistent.
"""
import pytest

from lab import operator
from tests.integration.whole_lab import log as _log, whole_lab


@pytest.fixture(scope="module")
def lab():
    with whole_lab(controllers=2, computes=1, neutron_cinder=True) as the_lab:
        yield the_lab


def _seeded(name):
    """Named by the lab, not by the run's provisioning probe (``lf-prov-*``: a cycle under
    way at the backup comes back with it)."""
    return bool(name) and not name.startswith("lf-prov-")


def _neutron(lab):
    found = {kind: sorted(item["name"] for item in
                          lab.cloud.api("GET", "neutron", f"/v2.0/{kind}")[kind]
                          if _seeded(item["name"]))
             for kind in ("networks", "subnets", "routers", "ports")}
    # the seeded servers' ports (unnamed: nova made them)
    found["server ports"] = sorted(
        p["id"] for server in lab.cloud.ids["servers"] for p in lab.cloud.api(
            "GET", "neutron", f"/v2.0/ports?device_id={server}")["ports"])
    return found


def _volumes(lab):
    return sorted((v["name"], v["status"]) for v in lab.cloud.volumes().values()
                  if _seeded(v["name"]))


def _on_ctl01(lab, func, *args):
    return lab.salt.salt("ctl01", func, *args, timeout=300)["ctl01"]


def _gateways(lab):
    """Each gateway port's chassis by priority (the rows' UUIDs are new after a restore)."""
    return {port: [(g["chassis"], g["priority"], g["kept"]) for g in rows]
            for port, rows in _on_ctl01(lab, "ovn_nb.gateways").items()}


@pytest.mark.heavy
def test_rollback_restores_neutron_cinder_and_ovn(lab):
    before = _neutron(lab)
    volumes = _volumes(lab)
    gateways = _gateways(lab)
    assert "lab-port" in before["ports"] and before["routers"] == ["lab-router"]

    failed = operator.orchestrate(lab.salt, "orch.upgrade_control_plane",
                                  {"cluster": "lab", "to": "2025.1",
                                   "testing": {"fail_at": "ctl02_rebuild"}}, log=_log)
    assert failed.failed()[0] == "ctl02_rebuild"
    # neutron expanded by 2025.1's code (cinder's migrations are the same three releases
    # on: FACTS.md); then the cloud moves on: a network and a volume made after the backup
    found = _on_ctl01(lab, "openstack_db.check", "neutron", "release=2024.1")
    assert found["up_to_date"] is False, found
    lab.cloud.api("POST", "neutron", "/v2.0/networks",
                  json={"network": {"name": "made-after-backup"}})
    assert "made-after-backup" in _neutron(lab)["networks"]
    lab.cloud.create_volume("made-after-backup")
    assert ("made-after-backup", "available") in _volumes(lab)

    back = operator.orchestrate(lab.salt, "orch.rollback_control_plane",
                                {"cluster": "lab", "upgrade_run": failed.run}, log=_log)
    assert back.returncode == 0, (back.failed(), back.stdout[-3000:])
    steps = {s["name"]: s for s in operator.status(lab.salt, "lab", back.run)["steps"]}
    assert steps["restore_ovsdb_dbs01"]["status"] == "done"
    for service in ("neutron", "cinder"):
        found = _on_ctl01(lab, "openstack_db.check", service, "release=2024.1")
        assert found["up_to_date"] is True, found
    assert _neutron(lab) == before
    assert _volumes(lab) == volumes
    assert _gateways(lab) == gateways
    consistent = _on_ctl01(lab, "ovn_nb.consistency")
    assert consistent["consistent"] is True, consistent
    verify = _on_ctl01(lab, "openstack_verify.check")
    assert verify["healthy"] is True, verify
