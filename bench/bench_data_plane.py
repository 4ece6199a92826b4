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
   the rest in one batch, no pause, servers forced) for every compute; per host the
   journal's ``<host>_switch`` seconds and their phases (API calls, redeploy, wait up).

Prints: lab up seconds and MB, raw seconds, per-host switch seconds (min, mean, max), the
overhead per host (mean switch - raw) and its ratio, and the run's total against the sum
of the raw work. Loopback only; the lab is stopped and removed at the end.
"""
import argparse
import glob
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(REPO, "_utils"), REPO]

from lab import operator, stack  # noqa: E402

TO = "2025.1"


def log(line):
    print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)


def journal_steps(lab, run):
    found = glob.glob(os.path.join(lab.salt.base, "**", "leapfrog", "lab", run,
                                   "journal.json"), recursive=True)
    with open(found[0]) as handle:
        return {s["name"]: s for s in json.load(handle)["steps"]}


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
        hosts = [f"cmp{i:02d}" for i in range(2, args.computes + 1)]
        switch = [steps[f"{h}_switch"]["result"]["seconds"] for h in hosts]
        phases = {}
        for host in hosts:
            for name, seconds in steps[f"{host}_switch"]["result"]["phases"].items():
                phases.setdefault(name, []).append(seconds)
    finally:
        lab.down()
        shutil.rmtree(run_dir, ignore_errors=True)
    mean = statistics.mean(switch)
    print()
    print(f"lab: {args.controllers} controller(s), {args.computes} computes; up in "
          f"{up_seconds:.0f} s; memory OpenStack {memory[0]} MB + Salt {memory[1]} MB "
          f"({(memory[0] + memory[1]) / args.computes:.0f} MB per compute, all included)")
    print(f"raw work per compute (restart at {TO} + wait up, no Salt): {raw:.1f} s")
    print(f"leapfrog.switch_compute per host ({len(hosts)} hosts): min {min(switch):.1f} s, "
          f"mean {mean:.1f} s, max {max(switch):.1f} s")
    print("  phases (mean s): " + ", ".join(
        f"{name} {statistics.mean(values):.1f}" for name, values in phases.items()))
    print(f"overhead per host: {mean - raw:.1f} s ({mean / raw:.2f}x the raw work)")
    print(f"orch.upgrade_data_plane of {args.computes} computes: {total:.0f} s, "
          f"{total / (raw * args.computes):.2f}x the sum of the raw work "
          f"({raw * args.computes:.0f} s)")


if __name__ == "__main__":
    main()
