"""Benchmark: the fault matrix (issue 17), on demand; the whole of it takes hours.

    python bench/bench_faults.py [--runs rehearsal,hop,rollback,fast-forward,data-plane]
                                 [--faults salt-run,salt-master,minion,db-node,vm]
                                 [--sample N] [--seed S] [--db galera|mariadb]
                                 [--json bench/faults.json]

Brings the lab (lab.stack.Lab: 2 controller VMs, 2 computes, Galera by default) up at
2024.1 once. For each run kind its plan is asked from the master (``leapfrog.run_plan``)
and its cells generated from it (lab/fault_matrix.py: every step's start and end x every
fault that applies; ``--sample N`` a seeded sample, the seed printed). Each cell
(lab/fault_strike.py): the run is started stalled at the boundary, the fault struck for
real there (salt-run or salt-master SIGKILLed, the step's minion killed, the DB node the
cloud writes to killed, the controller VM destroyed), then README's recovery only: a
re-run with ``run=RUN``, or when that fails ``orch.rollback_control_plane``. Then checked:
the run (or its rollback) finished, no lock left, the APIs answer on the VIP, every
controller at one release, a keystone project written through the API before the fault
still there, the servers as before, no step run more than twice, nothing left (no
``*_upgrade`` clone). Before the next cell the cloud goes back to 2024.1 (the upgrade
rolled back, the computes redeployed).

Prints a table: run x boundary x fault -> recovered by none/resume/rollback or NOT, the
seconds to recover and what was wrong; writes the rows and the totals to ``--json`` for
README's figure. Loopback only; the lab is stopped and removed at the end.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(REPO, "_utils"), REPO]

from lab import fault_matrix, fault_runs, stack  # noqa: E402


def log(line):
    print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)


def table(rows):
    lines = [f"{'run':<13}{'boundary':<42}{'fault':<12}{'recovered':<11}{'s':>7}  wrong"]
    for row in rows:
        how = row["how"] if row["ok"] else "NOT"
        lines.append(f"{row['run']:<13}{row['boundary']:<42}{row['fault']:<12}{how:<11}"
                     f"{row['recover_seconds']:>7.1f}  {'; '.join(row['wrong'])}")
    done = sum(1 for row in rows if row["ok"])
    lines.append(f"{done} of {len(rows)} cells recovered "
                 f"({100.0 * done / max(len(rows), 1):.0f} %)")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", default=",".join(fault_runs.KINDS))
    parser.add_argument("--faults", default=",".join(fault_matrix.FAULTS))
    parser.add_argument("--sample", type=int, default=0, help="cells per run (0: all)")
    parser.add_argument("--seed", type=int, default=int(time.strftime("%Y%m%d")))
    parser.add_argument("--db", choices=stack.DBS, default="galera")
    parser.add_argument("--json", default=os.path.join(REPO, "bench", "faults.json"))
    args = parser.parse_args(argv)
    kinds = [fault_runs.KINDS[name] for name in args.runs.split(",")]
    faults = tuple(args.faults.split(","))
    log(f"[faults] seed {args.seed} (replay: --seed {args.seed})")
    run_dir = tempfile.mkdtemp(prefix="lf-bench-faults-", dir="/tmp")
    lab = stack.Lab(run_dir, controllers=2, computes=2, db=args.db, log=log)
    rows, started = [], time.monotonic()
    try:
        lab.up()
        for kind in kinds:
            prepared = kind.prepare(lab)
            plan = fault_runs.plan_of(lab, kind)
            cells = fault_matrix.cells(plan, faults)
            if args.sample:
                cells = fault_matrix.sample(cells, args.sample, args.seed)
            log(f"[faults] {kind.name}: {len(cells)} cell(s) {prepared or ''}: {cells}")
            for cell in cells:
                rows.append(fault_runs.run_cell(lab, kind, plan, cell, len(rows) + 1, log))
                if not rows[-1]["ok"]:
                    log("[faults] the cloud is not back at its start: the rest of this "
                        "run's cells are left out")
                    break
            kind.finish(lab, prepared)
    finally:
        lab.down()
        shutil.rmtree(run_dir, ignore_errors=True)
    print()
    print(table(rows))
    with open(args.json, "w") as handle:
        json.dump({"seed": args.seed, "seconds": round(time.monotonic() - started),
                   "cells": len(rows), "recovered": sum(1 for r in rows if r["ok"]),
                   "rows": rows}, handle, indent=1)
    print(f"written: {args.json}")


if __name__ == "__main__":
    main()
