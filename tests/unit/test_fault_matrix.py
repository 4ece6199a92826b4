"""The fault matrix's cells come from a run's plan (lab/fault_matrix.py): every step's start
and end, each with the faults that apply to it; a seeded sample is reproducible."""
import os

import pytest
import yaml

import leapfrog_steps
from lab import fault_matrix
from tests.conftest import REPO

GOLDEN = os.path.join(REPO, "tests", "unit", "golden", "plans")


def golden(name):
    with open(os.path.join(GOLDEN, f"{name}.yaml")) as handle:
        data = yaml.safe_load(handle)
    data.pop("text")
    return leapfrog_steps.Plan.from_dict(data)


def test_every_boundary_of_the_rehearsal_gets_the_faults_that_apply():
    plan = golden("rehearsal")
    found = fault_matrix.cells(plan)
    assert [c for c in found if c[1] == "salt-run"] == [
        (f"{name}:{b}", "salt-run") for name in plan.names() for b in ("start", "end")]
    assert ("staged_sync:end", "minion") in found  # a minion does its work
    assert ("production_unchanged:start", "minion") not in found  # the master does
    assert not [c for c in found if c[1] == "vm"]  # no controller VM in a rehearsal
    calls = sum(1 for s in plan.steps if s.function == "leapfrog.call")
    assert len(found) == 2 * (3 * len(plan.steps) + calls)


def test_a_rolling_hop_has_vm_cells_on_its_rebuilds_and_parallel_steps_can_be_left_out():
    plan = golden("rolling_2_controllers")
    found = fault_matrix.cells(plan, ("vm",))
    assert ("ctl01_rebuild:start", "vm") in found and ("ctl02_redeploy:end", "vm") in found
    assert ("backup_dbs:start", "vm") not in found
    parallel = set(plan.parallel_steps())
    assert parallel  # the services' DB syncs run side by side
    alone = fault_matrix.cells(plan, ("salt-run",), skip_parallel=True)
    assert alone and not [c for c in alone if c[0].split(":")[0] in parallel]


def test_a_sample_is_reproducible_distinct_and_in_plan_order():
    found = fault_matrix.cells(golden("rehearsal"), ("salt-run", "minion"))
    first = fault_matrix.sample(found, 6, seed=17)
    assert first == fault_matrix.sample(found, 6, seed=17)
    assert len(set(first)) == 6 and first == sorted(first, key=found.index)
    assert fault_matrix.sample(found, 6, seed=18) != first
    assert fault_matrix.sample(found, 10 ** 6, seed=1) == found


def test_an_unknown_fault_is_refused_naming_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown fault\(s\) power; known: salt-run, "
                                         r"salt-master, minion, db-node, vm"):
        fault_matrix.cells(golden("rehearsal"), ("power",))


def test_a_cell_is_struck_once_the_journal_notes_the_stall_of_its_step():
    journal = {"steps": [{"name": "snapshot", "notes": []}, {"name": "clone", "notes": [
        "a DB node was out", "stalled at its end by the test-only fault switch"]}]}
    assert fault_matrix.stalled(journal, "clone:end")
    assert not fault_matrix.stalled(journal, "clone:start")  # the note of the other boundary
    assert not fault_matrix.stalled(journal, "snapshot:start")  # no note yet
    assert not fault_matrix.stalled({}, "clone:end")  # the journal is not written yet
    journal["steps"][0]["notes"].append("stalled at its start by the test-only fault switch")
    assert fault_matrix.stalled(journal, "snapshot")  # a bare name is its start
