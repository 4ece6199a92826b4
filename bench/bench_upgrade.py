"""Benchmark: leapfrog's rolling control-plane hop against a naive stop-everything upgrade
(MCP-style), 2024.1 -> 2025.1 on the same lab shape, in one run.

    python bench/bench_upgrade.py [--controllers 2] [--computes 1]

Brings the lab (lab.stack.Lab) up at 2024.1 twice, one after the other, each in its own
run dir, and upgrades its control plane to 2025.1:

1. leapfrog: ``salt-run state.orch orch.upgrade_control_plane`` (approved when it waits):
   precheck, DB backup, then each controller drained, rebuilt on the new OS and redeployed
   while the others serve. Figures from the run's report (its probe through the VIP).
2. naive, as MCP's upgrade pipeline did it: every controller's services stopped at once and
   redeployed at 2025.1 (``lab_openstack.node``, services stopped), the DB syncs on the
   first controller (nova api_db/db sync with online migrations, keystone and glance
   expand+migrate+contract, placement), every controller started; no backup, no rebuild.
   The same probe (leapfrog_probe, the same URLs on the VIP) runs from before the first
   stop until the API answers again.

Prints per approach: total time, requests, failed requests, longest API outage, the
naive/leapfrog ratios, and leapfrog's total against its irreducible work (the rebuild,
start and DB sync/finish steps' own seconds, from the run's report; and the wall time
they cover, steps side by side counted once). Loopback only; each lab is stopped and removed at the end.
"""
import argparse
import glob
import json
import os
import shutil
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(REPO, "_utils"), REPO]

import leapfrog_journal  # noqa: E402
import leapfrog_probe  # noqa: E402
from lab import operator, stack  # noqa: E402

FROM, TO = "2024.1", "2025.1"


def log(line):
    print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)


def _lab(args):
    run_dir = tempfile.mkdtemp(prefix="lf-bench-up-", dir="/tmp")
    return run_dir, stack.Lab(run_dir, controllers=args.controllers, computes=args.computes,
                              log=log)


def leapfrog_hop(lab):
    started = time.monotonic()
    result = operator.orchestrate(lab.salt, "orch.upgrade_control_plane",
                                  {"cluster": "lab", "to": TO}, log=log)
    seconds = time.monotonic() - started
    if result.returncode != 0:
        raise RuntimeError(f"orch.upgrade_control_plane failed at {result.failed()}")
    found = glob.glob(os.path.join(lab.salt.base, "**", "leapfrog", "lab", result.run,
                                   "report", "report.json"), recursive=True)
    with open(found[0]) as handle:
        report = json.load(handle)
    available = report["availability"]
    return {"seconds": seconds, "requests": available["requests"],
            "failures": available["failures"], "longest_outage": available["longest_outage"],
            "irreducible": irreducible(report["steps"])}


# the work a rolling hop cannot do without: each controller's rebuild and service start,
# and the DB sync commands (the steps of these kinds, as the run's report times them)
IRREDUCIBLE_KINDS = ("rebuild", "start", "db_sync", "db_finish")


def irreducible(steps):
    """Seconds of a run's steps whose kind is irreducible work: their sum, and the wall
    time they cover (steps side by side counted once)."""
    mine = [s for s in steps if s.get("kind") in IRREDUCIBLE_KINDS]
    spans = sorted((leapfrog_journal.parse_iso(s["started"]), leapfrog_journal.parse_iso(
        s["ended"])) for s in mine if s.get("started") and s.get("ended"))
    covered, reach = 0.0, None
    for start, end in spans:
        if reach is None or start > reach:
            covered, reach = covered + end - start, end
        elif end > reach:
            covered, reach = covered + end - reach, end
    return {"sum": sum(s.get("seconds") or 0 for s in mine), "wall": covered}


def naive_hop(lab):
    config = lab.salt.run("leapfrog.cluster_config", "cluster=lab")
    urls = json.loads(config.stdout)["haproxy"]["probe_urls"]
    with leapfrog_probe.Probe(urls, duration=3600, timeout=5) as probe:
        time.sleep(5)
        started = time.monotonic()
        operator.stop_everything_upgrade(lab.salt, FROM, TO, log=log)
        seconds = time.monotonic() - started
        time.sleep(5)
    summary = probe.summary()
    return {"seconds": seconds, "requests": summary["requests"],
            "failures": summary["failures"], "longest_outage": summary["longest_outage"]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--controllers", type=int, default=2)
    parser.add_argument("--computes", type=int, default=1)
    args = parser.parse_args(argv)
    rows = {}
    for name, hop in (("leapfrog", leapfrog_hop), ("naive", naive_hop)):
        run_dir, lab = _lab(args)
        try:
            lab.up()
            log(f"{name}: lab up at {FROM} ({args.controllers} controllers, "
                f"{args.computes} computes)")
            rows[name] = hop(lab)
            log(f"{name}: {rows[name]}")
        finally:
            lab.down()
            shutil.rmtree(run_dir, ignore_errors=True)
    print()
    print(f"control plane {FROM} -> {TO}, {args.controllers} controllers, "
          f"{args.computes} computes")
    print(f"{'approach':<10}{'total s':>9}{'requests':>10}{'failed':>8}{'failed %':>10}"
          f"{'longest outage s':>18}")
    for name, row in rows.items():
        rate = 100.0 * row["failures"] / max(row["requests"], 1)
        print(f"{name:<10}{row['seconds']:>9.1f}{row['requests']:>10}{row['failures']:>8}"
              f"{rate:>10.2f}{row['longest_outage']:>18.1f}")
    ours, naive = rows["leapfrog"], rows["naive"]
    work = ours["irreducible"]
    print(f"leapfrog total / irreducible work ({', '.join(IRREDUCIBLE_KINDS)} steps' own "
          f"time {work['sum']:.1f} s): {ours['seconds'] / max(work['sum'], 0.001):.2f}x "
          f"(target 1.25x); against the wall time those steps cover ({work['wall']:.1f} s, "
          f"side by side counted once): {ours['seconds'] / max(work['wall'], 0.001):.2f}x")
    print(f"naive/leapfrog: time {naive['seconds'] / max(ours['seconds'], 0.001):.2f}x, "
          f"failed requests {naive['failures']} vs {ours['failures']}, longest outage "
          f"{naive['longest_outage']:.1f} s vs {ours['longest_outage']:.1f} s")


if __name__ == "__main__":
    main()
