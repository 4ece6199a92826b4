"""The README's main job: bring the lab up and run leapfrog on it, as an operator would.

1. ``python -m lab up --db galera``: a real OpenStack 2024.1 cloud (3 controllers, 2 fake
   computes, servers ACTIVE; its databases on a three-node Galera cluster behind haproxy's
   DB frontend, ``--db mariadb``: one server) behind haproxy, and its Salt cluster (cfg01 +
   a minion per node).
2. ``salt-run state.orch orch.inventory``: the pillar checked, the nodes by role.
3. ``salt ctl01 openstack_verify.check``: the operator's API checks through the VIP.
4. ``salt-run state.orch orch.test_upgrade``: the rehearsal of 2024.1 -> 2025.1 -> 2026.1
   on clones of the cloud's databases, production proved untouched.
5. The whole path to 2026.1, with the approvals sent by ``salt-run leapfrog.approve`` when
   a run waits for one and each run's headline (failed API requests through the VIP,
   longest outage, report path):
   - rolling (default): ``orch.upgrade_control_plane`` to 2025.1 (each controller drained,
     backed up, rebuilt on the new OS and redeployed while the others serve), then
     ``orch.upgrade_data_plane`` to 2025.1 (canary, approval, the rest), then the same two
     to 2026.1: the API stays up and the servers ACTIVE all along;
   - ``--strategy fast_forward``: one ``orch.upgrade_control_plane`` run straight to 2026.1
     (computes stopped, control plane through the staged syncs with the FFU workaround,
     computes switched): fewer steps, the API closed meanwhile.
6. The lab is stopped (``--keep`` leaves it running).
"""
import argparse
import glob
import json
import os
import shutil
import sys
import tempfile
import time

from lab import operator, stack


def say(line):
    print(line, flush=True)


def orch_states(proc):
    data = json.loads(proc.stdout)["data"]
    return {v["__id__"]: v for v in next(iter(data.values())).values()}


def show_inventory(states):
    roles = states["inventory"]["changes"]["return"]["roles"]
    for role, found in roles.items():
        nodes = ", ".join(f"{n} ({i['oscodename']}, {i['release'] or '-'})"
                          for n, i in found["nodes"].items())
        say(f"    {role:10} {found['target']:18} {nodes}")


def show_verify(result):
    counts = {k: len(v) if isinstance(v, list) else v
              for k, v in result.items() if k in ("passed", "failed", "skipped")}
    say(f"    healthy: {result['healthy']}  ({counts['passed']} passed, {counts['failed']} "
        f"failed, {counts['skipped']} skipped)")
    for name, check in result["checks"].items():
        say(f"    {check['result']:5} {name:22} {check.get('latency') or 0:.3f} s "
            f"{check.get('reason') or ''}")


THROWAWAY = "upg01"  # the lab pillar's rehearsal:node


def show_rehearsal(states):
    for step in ("snapshot", "clone", "isolate", "staged_sync", "verify",
                 f"{THROWAWAY}_create", "rehome_catalog", f"{THROWAWAY}_deploy",
                 f"{THROWAWAY}_verify", f"{THROWAWAY}_map_compute", f"{THROWAWAY}_provision",
                 f"{THROWAWAY}_discard", "production_unchanged", "drop_clones"):
        if step not in states:  # a step this plan does not have (e.g. no provisioning)
            continue
        state = states[step]
        ok = "ok  " if state.get("result") else "FAIL"
        error = (state.get("changes", {}).get("return") or {}).get("error", "") \
            if isinstance(state.get("changes", {}).get("return"), dict) else ""
        say(f"    {ok} {step:22} {state.get('duration', 0) / 1000:6.1f} s {error}")
    sync = (states["staged_sync"]["changes"].get("return") or {}).get("result") or {}
    for node, result in sync.items():
        say(f"    clones on {node}: " + ", ".join(
            f"{hop['release']} ({hop['seconds']} s)" for hop in result["hops"])
            + f" -> revisions {result['revisions']}")
    checked = ((states.get(f"{THROWAWAY}_verify", {}).get("changes", {}).get("return")
                or {}).get("result") or {})
    for node, result in checked.items():
        say(f"    {THROWAWAY} served the clones at {result['auth_url']} (checks run from "
            f"{node}): {result['summary']}")


REPORTS = "/var/tmp/leapfrog-demo-reports"


def keep_report(lab, run):
    """Copy a run's report out of the lab (which the demo removes at the end)."""
    found = glob.glob(os.path.join(lab.salt.base, "**", "leapfrog", "lab", run, "report"),
                      recursive=True)
    if not found:
        return None
    kept = os.path.join(REPORTS, run)
    shutil.copytree(found[0], kept, dirs_exist_ok=True)
    return os.path.join(kept, "report.md")


def orchestrate(lab, orch, pillar, reports):
    """One orchestration as an operator runs it; its report kept in ``reports``; stops
    the demo if it fails."""
    say(f"[demo] salt-run state.orch {orch} pillar='{json.dumps(pillar)}'")
    result = operator.orchestrate(lab.salt, orch, pillar, log=lambda line: say(f"    {line}"))
    if result.run:
        reports.append(keep_report(lab, result.run))
    if result.returncode != 0:
        raise SystemExit(f"[demo] {orch} failed at {result.failed()} (exit "
                         f"{result.returncode}); salt-run leapfrog.status cluster=lab")
    return result


def servers_active(lab, expected):
    found = {i: s["status"] for i, s in lab.cloud.servers().items()}
    if found != expected:
        raise SystemExit(f"[demo] servers changed: before {expected}, now {found}")
    say(f"[demo]     {len(found)} servers still ACTIVE")


def show_nodes(lab):
    grains = lab.salt.salt("ctl*", "grains.item", "oscodename", timeout=60)
    computes = lab.salt.salt("ctl01", "nova_service.list", timeout=120)["ctl01"]
    say("[demo]     controllers: " + ", ".join(
        f"{node} {g.get('oscodename')}" for node, g in sorted(grains.items()))
        + "; computes: " + ", ".join(
            f"{c['host']} {c['state']} v{c['version']}" for c in computes))


def upgrade_path(lab, strategy, reports):
    """2024.1 -> 2026.1: rolling (control plane and computes, hop by hop) or fast_forward."""
    servers = {i: s["status"] for i, s in lab.cloud.servers().items()}
    if strategy == "fast_forward":
        orchestrate(lab, "orch.upgrade_control_plane",
                    {"cluster": "lab", "to": "2026.1", "strategy": "fast_forward"}, reports)
        show_nodes(lab)
    else:
        for to in ("2025.1", "2026.1"):
            orchestrate(lab, "orch.upgrade_control_plane", {"cluster": "lab", "to": to},
                        reports)
            orchestrate(lab, "orch.upgrade_data_plane",
                        {"cluster": "lab", "to": to, "servers": "force"}, reports)
            show_nodes(lab)
    servers_active(lab, servers)


def run_demo(lab, strategy="rolling"):
    started = time.monotonic()
    say(f"[demo] 1/5 lab up: OpenStack 2024.1 ({lab.controllers} controllers, "
        f"{lab.computes} computes, databases on "
        f"{'a three-node Galera cluster' if lab.db == 'galera' else 'one MariaDB'}) + Salt "
        "cluster")
    lab.up()
    say(f"[demo]     up in {time.monotonic() - started:.0f} s {lab.timings}; "
        f"memory: OpenStack {lab.rss_mb()} MB + Salt {lab.salt.rss_mb()} MB")

    say("[demo] 2/5 salt-run state.orch orch.inventory pillar='{\"cluster\": \"lab\"}'")
    show_inventory(orch_states(lab.salt.run("state.orch", "orch.inventory",
                                            'pillar={"cluster": "lab"}')))

    say("[demo] 3/5 salt ctl01 openstack_verify.check")
    show_verify(lab.salt.salt("ctl01", "openstack_verify.check", timeout=300)["ctl01"])

    say("[demo] 4/5 salt-run state.orch orch.test_upgrade pillar='{\"cluster\": \"lab\"}'")
    proc = lab.salt.run("state.orch", "orch.test_upgrade", 'pillar={"cluster": "lab"}',
                        check=False)
    states = orch_states(proc)
    show_rehearsal(states)
    if proc.returncode != 0:
        raise SystemExit(f"[demo] the rehearsal failed (exit {proc.returncode})")
    say("[demo]     the rehearsal took the cloud's databases to 2026.1 on clones, served "
        f"them from the throwaway controller {THROWAWAY} (then removed); production was not "
        "migrated")

    say(f"[demo] 5/5 upgrade 2024.1 -> 2026.1 ({strategy})")
    reports = []
    try:
        upgrade_path(lab, strategy, reports)
    finally:
        say(f"[demo] reports (kept after the lab is gone): {', '.join(filter(None, reports))}")
    say(f"[demo] done in {time.monotonic() - started:.0f} s")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="leave the lab running")
    parser.add_argument("--controllers", type=int, default=3)
    parser.add_argument("--computes", type=int, default=2)
    parser.add_argument("--strategy", choices=("rolling", "fast_forward"), default="rolling",
                        help="the path to 2026.1 (default rolling: the API stays up)")
    parser.add_argument("--neutron-cinder", action="store_true",
                        help="real neutron (ML2/OVN) and cinder in the cloud, upgraded with it")
    parser.add_argument("--db", choices=stack.DBS, default="galera",
                        help="the cloud's databases: a three-node Galera cluster behind "
                             "haproxy (default; physical backups, the cluster's quorum "
                             "guarded) or one MariaDB server")
    args = parser.parse_args(argv)
    run_dir = tempfile.mkdtemp(prefix="lf-lab-", dir="/var/tmp")
    lab = stack.Lab(run_dir, controllers=args.controllers, computes=args.computes,
                    neutron_cinder=args.neutron_cinder, db=args.db,
                    log=lambda line: print(line, file=sys.stderr, flush=True))
    try:
        run_demo(lab, args.strategy)
    finally:
        if args.keep:
            say(f"[demo] lab left running: python -m lab down --run-dir {run_dir}")
        else:
            lab.down()
            say("[demo] lab stopped; nothing left running")


if __name__ == "__main__":
    main()
