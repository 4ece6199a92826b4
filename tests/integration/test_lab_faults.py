"""Heavy: a seeded sample of the fault matrix on the whole lab (issue 17). Cells of the
rehearsal and of a rolling control-plane hop, generated from each run's plan
(lab/fault_matrix.py), each struck for real (lab/fault_strike.py: salt-run or salt-master
killed, the step's minion killed, the Galera node the cloud writes to killed, the
controller VM destroyed) and recovered as README's "Recovery" says; every cell must come
back (lab/fault_runs.py's checks). The seed is printed; LEAPFROG_FAULT_SEED replays it,
LEAPFROG_FAULT_CELLS changes how many cells each run gets (default 3).
"""
import os

import pytest

from lab import fault_matrix, fault_runs
from tests.integration.whole_lab import log, whole_lab

@pytest.fixture(scope="module")
def lab():
    with whole_lab(controllers=2, computes=2, db="galera") as the_lab:
        yield the_lab


@pytest.mark.heavy
@pytest.mark.parametrize("kind", ["rehearsal", "hop"])
def test_a_seeded_sample_of_cells_recovers(lab, kind):
    seed = int(os.environ.get("LEAPFROG_FAULT_SEED") or 20261207)
    count = int(os.environ.get("LEAPFROG_FAULT_CELLS") or 3)
    run = fault_runs.KINDS[kind]
    plan = fault_runs.plan_of(lab, run)
    cells = fault_matrix.sample(fault_matrix.cells(plan), count, seed)
    log(f"fault cells of {kind} (seed {seed}; LEAPFROG_FAULT_SEED={seed} replays): {cells}")
    rows = [fault_runs.run_cell(lab, run, plan, cell, number, log)
            for number, cell in enumerate(cells, 1)]
    for row in rows:
        log(f"{row['boundary']} x {row['fault']}: {row['how']} in {row['recover_seconds']} s "
            f"{row['wrong'] or ''}")
    assert [r for r in rows if not r["ok"]] == []
