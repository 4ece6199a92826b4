"""The dress rehearsal on the whole lab (heavy, ~9 min: 1 controller + 1 compute, the VMs,
the bridge): ``orch.test_upgrade`` of 2024.1 -> 2026.1 with the throwaway controller upg01
(pillar ``rehearsal``).

1. Every service migrated on the clones; upg01 made like ctl01, deployed at 2026.1 on the
   clones and its own RabbitMQ vhost, checked through its own keystone (the operator's
   checks: the 2026.1 compute API serving production's servers from the clones), a server
   booted on its own nova-compute and deleted, then discarded: no domain, disk, key, clone
   or process left; production's servers, structure and migration versions unchanged.
2. A row the API cannot read (a server's flavor cut short in production's nova DB, planted
   before cloning): the rehearsal fails at upg01's checks naming the check and what the API
   answered; the throwaway and the clones are removed, production is untouched.
"""
import json
import os
import subprocess

import pytest

from lab import operator
from tests.integration.whole_lab import journal_steps, log as _log, run_report, whole_lab

pytestmark = pytest.mark.heavy

NODE, ADDRESS = "upg01", "127.0.1.41"


@pytest.fixture(scope="module")
def lab():
    with whole_lab(controllers=1, computes=1) as the_lab:
        yield the_lab


def _structure(lab):
    """Production's structure and migration versions (what the rehearsal must not change)."""
    return lab.salt.salt("dbs01", "mysql_backup.schema", timeout=300)["dbs01"]


def _clones(lab):
    with lab.cloud.mariadb.connect() as conn, conn.cursor() as cur:
        cur.execute("SHOW DATABASES LIKE '%\\_upgrade'")
        return [row[0] for row in cur.fetchall()]


def _left_behind(lab):
    """What a finished rehearsal must not leave: upg01's domain, key, processes; clones."""
    left = [name for name in lab.vm_status() if name == f"vm/{NODE}"]
    keys = os.path.join(lab.salt.base, "cfg01", "pki", "master", "minions", NODE)
    left += [keys] if os.path.exists(keys) else []
    procs = subprocess.run(["pgrep", "-f", os.path.join(lab.cloud.run_dir, "throwaway")],
                           capture_output=True, text=True, check=False).stdout.split()
    left += [f"process {pid}" for pid in procs]
    left += _clones(lab)
    left += [path for path in os.listdir(os.path.join(lab.run_dir, "vms"))
             if path.startswith(f"{NODE}-")]
    return left


def _rehearse(lab):
    return operator.orchestrate(lab.salt, "orch.test_upgrade", {"cluster": "lab"}, log=_log)


def test_the_throwaway_controller_serves_the_migrated_clones_and_is_gone(lab):
    before, servers = _structure(lab), set(lab.cloud.servers())
    result = _rehearse(lab)
    assert result.returncode == 0, result.failed()
    steps = journal_steps(lab, result.run)
    assert all(s["status"] == "done" for s in steps.values()), {
        n: s["status"] for n, s in steps.items()}
    made = steps[f"{NODE}_create"]["result"]
    assert made["like"] == "ctl01" and made["new"]["oscodename"] == "trixie"
    assert set(made["phases"]) == {"throwaway", "boot", "grains", "seed", "sync"}
    cells = steps["isolate"]["result"]["ctl01"]["changed"]
    assert {"cell": "cell1", "transport_vhost": "leapfrog_rehearsal"} in cells
    catalog = steps["rehome_catalog"]["result"]["dbs01"]
    assert catalog["address"] == ADDRESS and catalog["rewritten"]["public"] >= 5
    checked = steps[f"{NODE}_verify"]["result"]["ctl01"]
    _log(f"[dress] {NODE}: made {made['seconds']} s, deployed "
         f"{steps[f'{NODE}_deploy']['elapsed']} s, checked {checked['seconds']} s")
    assert checked["auth_url"].startswith(f"http://{ADDRESS}:")
    assert checked["failed"] == [] and {"services", "endpoints", "images", "flavors",
                                        "compute_services", "servers", "placement",
                                        "networks"} <= set(checked["passed"])
    compute = checked["checks"]["compute_services"]["detail"]
    served = tuple(int(part) for part in compute["api"]["version"].split("."))
    assert served > (2, 96)  # 2024.1's newest microversion: 2026.1's code served the clones
    ours = {(s["binary"], s["state"]) for s in compute["services"] if s["host"] == NODE}
    # its conductor and scheduler, and its nova-compute once it has registered (it may
    # not have by the checks: the map step waits for it), every one up
    assert {("nova-conductor", "up"), ("nova-scheduler", "up")} <= ours <= {
        ("nova-conductor", "up"), ("nova-scheduler", "up"), ("nova-compute", "up")}
    production = lab.cloud.servers()
    assert checked["checks"]["servers"]["detail"]["count"] == len(production) > 0
    mapped = steps[f"{NODE}_map_compute"]["result"]["ctl01"]
    assert mapped["hosts"] == [NODE]  # its own nova-compute, in the cloned cell
    made_there = steps[f"{NODE}_provision"]["result"]["ctl01"]  # pillar rehearsal:provision
    assert made_there["passed"] == ["server"], made_there
    _log(f"[dress] a server booted and deleted on {NODE}: "
         f"{made_there['kinds']['server']['seconds']} s")
    assert set(lab.cloud.servers()) == servers  # nothing of it in production
    assert steps[f"{NODE}_discard"]["result"]["discarded"] is True
    report = run_report(lab, result.run)  # each check's time on the clones, in the report
    timed = {c["check"]: c for c in report["checks"] if c["step"] == f"{NODE}_verify"}
    assert timed["servers"]["where"] == ADDRESS and timed["servers"]["result"] == "pass"
    assert all(isinstance(c["seconds"], float) for c in timed.values())
    assert _left_behind(lab) == []
    assert _structure(lab) == before


def test_a_row_the_new_api_cannot_read_fails_the_rehearsal_naming_it(lab):
    server = next(iter(lab.cloud.servers()))
    with lab.cloud.mariadb.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT flavor FROM lfos_nova.instance_extra WHERE instance_uuid = %s",
                    (server,))
        flavor = cur.fetchone()[0]
        json.loads(flavor)
        cur.execute("UPDATE lfos_nova.instance_extra SET flavor = LEFT(flavor, 40) "
                    "WHERE instance_uuid = %s", (server,))
        conn.commit()
    try:
        before = _structure(lab)
        result = _rehearse(lab)
        assert result.returncode != 0
        assert result.failed()[0] == f"{NODE}_verify"
        error = journal_steps(lab, result.run)[f"{NODE}_verify"]["error"]
        assert "OpenStack APIs not healthy after" in error
        assert "servers: HTTP 500 from GET /v2.1/servers/detail" in error
        assert _left_behind(lab) == []
        assert _structure(lab) == before
    finally:
        with lab.cloud.mariadb.connect() as conn, conn.cursor() as cur:
            cur.execute("UPDATE lfos_nova.instance_extra SET flavor = %s "
                        "WHERE instance_uuid = %s", (flavor, server))
            conn.commit()
