"""The nova_db state with loader dunders: the nova_manage functions it calls are mocked."""
from unittest.mock import MagicMock

import pytest
from salt.exceptions import CommandExecutionError

from tests.loader import load

nova_db = load("states", "nova_db")

PATH = ["2024.1", "2025.1", "2026.1"]
HEAD = "2903cd72dc14"
OLD = "13863f4e1612"
API = "cdeec0c85668"


def plan(pending_2025=("d60bddf7a903", HEAD), cells=()):
    return {"path": PATH, "cells_to_map": list(cells),
            "revisions": {"api": API, "main": HEAD, "cell0": HEAD},
            "hops": [{"release": "2024.1", "pending": {"api": [], "main": [], "cell0": []}},
                     {"release": "2025.1", "pending": {"api": [], "main": list(pending_2025),
                                                       "cell0": list(pending_2025)}},
                     {"release": "2026.1", "pending": {"api": [], "main": [], "cell0": []}}]}


def staged(changed=True, migrated=0):
    before = OLD if changed else HEAD
    odm = {"step": "online_data_migrations", "migrated": migrated,
           "migrations": {"populate_instance_compute_id": {"found": migrated, "done": migrated}}}
    steps = [{"step": "api_db sync", "before": {"api": API}, "after": {"api": API}},
             {"step": "cell mapping", "ran": False, "cells_before": ["cell0", "cell1"],
              "cells_after": ["cell0", "cell1"]},
             {"step": "db sync", "before": {"main": before, "cell0": before},
              "after": {"main": HEAD, "cell0": HEAD}}, odm]
    return {"path": PATH, "seconds": 12.5, "revisions": {"api": API, "main": HEAD, "cell0": HEAD},
            "hops": [{"release": "2025.1", "changed": changed or bool(migrated), "steps": steps}]}


@pytest.fixture
def salt_mods():
    return {
        "nova_manage.staged_pending": MagicMock(return_value=plan()),
        "nova_manage.staged_sync": MagicMock(return_value=staged()),
        "nova_manage.pending": MagicMock(),
        "nova_manage.api_db_sync": MagicMock(),
        "nova_manage.db_sync": MagicMock(),
        "nova_manage.online_data_migrations": MagicMock(
            return_value={"migrated": 0, "migrations": {}}),
        "nova_manage.list_cells": MagicMock(),
        "nova_manage.map_cell0": MagicMock(),
        "nova_manage.create_cell": MagicMock(),
        "nova_manage.discover_hosts": MagicMock(return_value={"hosts": []}),
    }


@pytest.fixture
def opts():
    return {"test": False}


@pytest.fixture
def configure_loader_modules(salt_mods, opts):
    return {nova_db: {"__salt__": salt_mods, "__opts__": opts}}


def test_virtual():
    assert nova_db.__virtual__() == "nova_db"


def test_path_under_test_lists_pending_and_changes_nothing(salt_mods, opts):
    opts["test"] = True
    ret = nova_db.synced("nova", path=PATH, __id__="x")
    assert ret["result"] is None
    assert ret["changes"] == {"pending": {"2025.1": plan()["hops"][1]["pending"]},
                              "cells_to_map": []}
    assert ret["comment"] == ("Would apply: 2025.1: main: d60bddf7a903 2903cd72dc14; "
                              "cell0: d60bddf7a903 2903cd72dc14")
    salt_mods["nova_manage.staged_sync"].assert_not_called()
    assert "__id__" not in salt_mods["nova_manage.staged_pending"].call_args.kwargs


def test_path_under_test_in_sync(salt_mods, opts):
    opts["test"] = True
    salt_mods["nova_manage.staged_pending"].return_value = plan(pending_2025=())
    ret = nova_db.synced("nova", path=PATH)
    assert ret["result"] is True and ret["changes"] == {}


def test_path_under_test_cells_to_map(salt_mods, opts):
    opts["test"] = True
    salt_mods["nova_manage.staged_pending"].return_value = plan(pending_2025=(), cells=["cell0"])
    ret = nova_db.synced("nova", path=PATH)
    assert ret["result"] is None and ret["comment"].startswith("Would apply: map cells: cell0")


def test_path_real_run_reports_revisions_and_online_migrations(salt_mods):
    salt_mods["nova_manage.staged_sync"].return_value = staged(migrated=3)
    ret = nova_db.synced("nova", path=PATH)
    assert ret["result"] is True
    assert ret["changes"] == {"main": {"old": OLD, "new": HEAD}, "cell0": {"old": OLD, "new": HEAD},
                              "online_migrations": {"2025.1": {"populate_instance_compute_id": 3}}}


def test_path_rerun_no_changes(salt_mods):
    salt_mods["nova_manage.staged_sync"].return_value = staged(changed=False)
    ret = nova_db.synced("nova", path=PATH)
    assert ret["result"] is True and ret["changes"] == {}
    assert ret["comment"].startswith("nova databases already at 2026.1")


def test_error_becomes_a_failed_state(salt_mods):
    salt_mods["nova_manage.staged_pending"].side_effect = CommandExecutionError(
        "unknown release 2027.1: not in pillar leapfrog:releases:venvs (known: 2024.1)")
    ret = nova_db.synced("nova", path=["2024.1", "2027.1"])
    assert ret["result"] is False
    assert ret["comment"].startswith("unknown release 2027.1")


def test_release_and_path_are_exclusive():
    ret = nova_db.synced("nova", release="2025.1", path=PATH)
    assert ret["result"] is False and "either release" in ret["comment"]


def test_release_under_test(salt_mods, opts):
    opts["test"] = True
    salt_mods["nova_manage.pending"].return_value = {
        "targets": {"api": API, "main": HEAD}, "current": {"api": API, "main": OLD},
        "pending": {"api": [], "main": ["d60bddf7a903", HEAD]}}
    ret = nova_db.synced("nova", release="2025.1")
    assert ret["result"] is None
    assert ret["comment"] == "Would apply (2025.1): main: d60bddf7a903 2903cd72dc14"
    salt_mods["nova_manage.db_sync"].assert_not_called()


def test_release_real_run(salt_mods):
    salt_mods["nova_manage.pending"].return_value = {
        "targets": {"api": API, "main": HEAD}, "current": {"api": API, "main": OLD, "cell0": OLD},
        "pending": {"api": [], "main": ["d60bddf7a903", HEAD], "cell0": ["d60bddf7a903", HEAD]}}
    salt_mods["nova_manage.db_sync"].return_value = {"after": {"main": HEAD, "cell0": HEAD}}
    ret = nova_db.synced("nova", release="2025.1")
    assert ret["changes"] == {"main": {"old": OLD, "new": HEAD}, "cell0": {"old": OLD, "new": HEAD}}
    salt_mods["nova_manage.api_db_sync"].assert_not_called()


def cells(*names):
    return [{"name": n, "uuid": ("00000000-0000-0000-0000-000000000000" if n == "cell0" else n)}
            for n in names]


def test_cells_mapped_under_test(salt_mods, opts):
    opts["test"] = True
    salt_mods["nova_manage.list_cells"].return_value = cells("cell0")
    ret = nova_db.cells_mapped("cell1", release="2026.1")
    assert ret["result"] is None and ret["comment"] == "Would map cell1"
    salt_mods["nova_manage.create_cell"].assert_not_called()


def test_cells_mapped_creates_missing(salt_mods):
    salt_mods["nova_manage.list_cells"].side_effect = [cells(), cells("cell0", "cell1")]
    ret = nova_db.cells_mapped("cell1", release="2026.1")
    assert ret["result"] is True
    assert ret["changes"] == {"cells": {"old": [], "new": ["cell0", "cell1"]}}
    salt_mods["nova_manage.map_cell0"].assert_called_once()
    salt_mods["nova_manage.create_cell"].assert_called_once()


def test_cells_mapped_nothing_to_do(salt_mods):
    salt_mods["nova_manage.list_cells"].return_value = cells("cell0", "cell1")
    ret = nova_db.cells_mapped("cell1", release="2026.1")
    assert ret["result"] is True and ret["changes"] == {}
