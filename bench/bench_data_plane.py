"""Benchmark: the data plane at scale: time per compute and leapfrog's overhead per host
against the raw work (restart nova-compute at the new release + wait until it is up), in
one run, on a lab with many simulated computes.

    python bench/bench_data_plane.py [--computes 10] [--controllers 1]

1. ``lab up`` (no VMs: the data plane does not rebuild anything) with ``--computes`` fake
   computes at 2024.1; its time and memory (OpenStack processes, Salt daemons).
2. the control plane to 2025.1 the quick way (``lab.operator.stop_everything_upgrade``:
   the data plane's precondition, not what is measured).
3. raw work on cmp01: ``restart_compute`` (stop, start from 2025.1's venv, wait until the
   service is up with version 68 and a fresh heartbeat), no Salt.
4. ``salt-run state.orch orch.upgrade_data_plane`` (canary cmp02, approved when it waits,
   the rest in one batch switched together, servers forced) for every compute; the
   journal's canary seconds and the batch's, with their phases (API calls, redeploy, wait
   up).

Prints: lab up seconds and MB, raw seconds, the canary's switch against the raw work (the
overhead per host), the batch's seconds per host against the raw work done one host after
the other, and the run's total against the sum of the raw work. Loopback only; the lab is stopped and removed at the end.
"""
import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(REPO, "_utils"), REPO]

from lab import operator, stack  # noqa: E402
from tests.integration.test_lab_upgrade import _report as report_of  # noqa: E402
from tests.integration.whole_lab import journal_steps, log  # noqa: E402

TO = "2025.1"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--computes", type=int, default=10)
    parser.add_argument("--controllers", type=int, default=1)
    args = parser.parse_args(argv)
    run_dir = tempfile.mkdtemp(prefix="lf-bench-dp-", dir="/tmp")
    lab = stack.Lab(run_dir, controllers=args.controllers, computes=args.computes, log=log,
                    vms=False)
    try:
        started = time.monotonic()
        lab.up()
        up_seconds = time.monotonic() - started
        memory = (lab.rss_mb(), lab.salt.rss_mb())
        log(f"lab up in {up_seconds:.0f} s: OpenStack {memory[0]} MB, Salt {memory[1]} MB")

        operator.stop_everything_upgrade(lab.salt, "2024.1", TO, log=log)
        began = time.monotonic()
        lab.cloud.restart_compute("cmp01", release=TO)
        raw = time.monotonic() - began
        log(f"raw restart + wait of cmp01 at {TO}: {raw:.1f} s")

        began = time.monotonic()
        result = operator.orchestrate(
            lab.salt, "orch.upgrade_data_plane",
            {"cluster": "lab", "to": TO, "canary": "cmp02", "batch": "100%",
             "servers": "force"}, log=log)
        total = time.monotonic() - began
        if result.returncode != 0:
            raise SystemExit(f"orch.upgrade_data_plane failed at {result.failed()}")
        steps = journal_steps(lab, result.run)
        availability = report_of(lab, result.run)["availability"]
    finally:
        lab.down()
        shutil.rmtree(run_dir, ignore_errors=True)
    canary = steps["cmp02_switch"]["result"]
    # the others (cmp01, switched by the raw run, is skipped as already there)
    batch = next(s["result"] for name, s in steps.items()
                 if name.startswith("batch") and name.endswith("_switch"))
    switched = {h: r for h, r in batch["hosts"].items() if not r.get("skipped")}
    rest = sorted(switched)
    batch_seconds = batch["seconds"]
    phases = {}
    for result in switched.values():
        for name, seconds in result["phases"].items():
            phases.setdefault(name, []).append(seconds)
    print()
    print(f"lab: {args.controllers} controller(s), {args.computes} computes; up in "
          f"{up_seconds:.0f} s; memory OpenStack {memory[0]} MB + Salt {memory[1]} MB "
          f"({(memory[0] + memory[1]) / args.computes:.0f} MB per compute, all included)")
    print(f"raw work per compute (restart at {TO} + wait up, no Salt): {raw:.1f} s")
    print(f"canary cmp02 alone (leapfrog.switch_compute): {canary['seconds']:.1f} s; "
          f"overhead {canary['seconds'] - raw:.1f} s ({canary['seconds'] / raw:.2f}x the raw "
          "work)")
    print("  phases (s): " + ", ".join(f"{n} {v:.1f}" for n, v in canary["phases"].items()))
    print(f"the other {len(rest)} in one batch (leapfrog.switch_computes, one redeploy job): "
          f"{batch_seconds:.1f} s = {batch_seconds / len(rest):.1f} s per host; "
          f"{batch_seconds / (raw * len(rest)):.2f}x the raw work one after the other "
          f"({raw * len(rest):.0f} s)")
    print("  phases (mean s per host): " + ", ".join(
        f"{name} {statistics.mean(values):.1f}" for name, values in phases.items()))
    hosts = len(rest) + 1
    print(f"orch.upgrade_data_plane of {hosts} computes: {total:.0f} s, "
          f"{total / (raw * hosts):.2f}x the sum of the raw work ({raw * hosts:.0f} s); API "
          f"through the VIP: {availability.get('failures')} failed of "
          f"{availability.get('requests')} requests")


if __name__ == "__main__":
    main()
