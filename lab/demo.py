"""The README's main job: bring the lab up and run leapfrog on it, as an operator would.

1. ``python -m lab up``: a real OpenStack 2024.1 cloud (3 controllers, 2 fake computes,
   servers ACTIVE) behind haproxy, and its Salt cluster (cfg01 + a minion per node).
2. ``salt-run state.orch orch.inventory``: the pillar checked, the nodes by role.
3. ``salt ctl01 openstack_verify.check``: the operator's API checks through the VIP.
4. ``salt-run state.orch orch.test_upgrade``: the rehearsal of 2024.1 -> 2025.1 -> 2026.1
   on clones of the cloud's databases, production proved untouched.
5. ``salt-run state.orch orch.upgrade_control_plane pillar='{"cluster": "lab", "to":
   "2025.1"}'``: the rolling control-plane hop, each controller drained, backed up, rebuilt
   on the new OS and redeployed at 2025.1 while the others serve; the approval is sent with
   ``salt-run leapfrog.approve`` when the run waits for it; the report's headline figures.
6. The lab is stopped (``--keep`` leaves it running).
"""
import argparse
import glob
import json
import os
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


def show_rehearsal(states):
    for step in ("snapshot", "clone", "isolate", "staged_sync", "verify",
                 "production_unchanged", "drop_clones"):
        state = states.get(step, {})
        ok = "ok  " if state.get("result") else "FAIL"
        error = (state.get("changes", {}).get("return") or {}).get("error", "") \
            if isinstance(state.get("changes", {}).get("return"), dict) else ""
        say(f"    {ok} {step:22} {state.get('duration', 0) / 1000:6.1f} s {error}")
    sync = (states["staged_sync"]["changes"].get("return") or {}).get("result") or {}
    for node, result in sync.items():
        say(f"    clones on {node}: " + ", ".join(
            f"{hop['release']} ({hop['seconds']} s)" for hop in result["hops"])
            + f" -> revisions {result['revisions']}")


def upgrade_control_plane(lab, to):
    """The rolling hop to ``to`` as an operator runs it; returns the run's report."""
    pillar = {"cluster": "lab", "to": to}
    say(f"[demo] salt-run state.orch orch.upgrade_control_plane pillar='{json.dumps(pillar)}'")
    result = operator.orchestrate(lab.salt, "orch.upgrade_control_plane", pillar,
                                  log=lambda line: say(f"    {line}"))
    if result.returncode != 0:
        raise SystemExit(f"[demo] the upgrade failed at {result.failed()} (exit "
                         f"{result.returncode}); salt-run leapfrog.status cluster=lab")
    found = glob.glob(os.path.join(lab.salt.base, "**", "leapfrog", "lab", result.run,
                                   "report", "report.md"), recursive=True)
    return found[0] if found else None


def run_demo(lab):
    started = time.monotonic()
    say("[demo] 1/5 lab up: OpenStack 2024.1 (3 controllers, 2 computes) + Salt cluster")
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
    say("[demo]     the rehearsal took the cloud's nova databases to 2026.1 on clones; "
        "production was not migrated")

    say("[demo] 5/5 the control plane, one rolling hop: 2024.1 -> 2025.1")
    report = upgrade_control_plane(lab, "2025.1")
    grains = lab.salt.salt("ctl*", "grains.item", "oscodename", timeout=60)
    say("[demo]     controllers now: " + ", ".join(
        f"{node} {g.get('oscodename')}" for node, g in sorted(grains.items())))
    say(f"[demo] done in {time.monotonic() - started:.0f} s; report: {report}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="leave the lab running")
    parser.add_argument("--controllers", type=int, default=3)
    parser.add_argument("--computes", type=int, default=2)
    args = parser.parse_args(argv)
    run_dir = tempfile.mkdtemp(prefix="lf-lab-", dir="/var/tmp")
    lab = stack.Lab(run_dir, controllers=args.controllers, computes=args.computes,
                    log=lambda line: print(line, file=sys.stderr, flush=True))
    try:
        run_demo(lab)
    finally:
        if args.keep:
            say(f"[demo] lab left running: python -m lab down --run-dir {run_dir}")
        else:
            lab.down()
            say("[demo] lab stopped; nothing left running")


if __name__ == "__main__":
    main()
