"""Shared test set-up: tier markers by folder, and the repo's helpers on sys.path."""
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# leapfrog's shared helpers are plain top-level modules (leapfrog_*), as in both install modes.
sys.path.insert(0, os.path.join(REPO, "_utils"))
sys.path.insert(0, REPO)

TIERS = ("unit", "functional", "integration")


def pytest_collection_modifyitems(config, items):
    run_heavy = "heavy" in (config.getoption("markexpr") or "")
    skip_heavy = pytest.mark.skip(reason="long end-to-end test: run with -m heavy")
    for item in items:
        parts = os.path.relpath(str(item.fspath), REPO).split(os.sep)
        for tier in TIERS:
            if tier in parts:
                item.add_marker(getattr(pytest.mark, tier))
        if "heavy" in item.keywords and not run_heavy:
            item.add_marker(skip_heavy)


def pytest_terminal_summary(terminalreporter):
    """Count the bad inputs refused (the test_bad_inputs_* files): the safety issue's figure."""
    counts = {}
    for status in ("passed", "failed"):
        for report in terminalreporter.stats.get(status, []):
            if report.when == "call" and "/test_bad_inputs" in report.nodeid.replace(os.sep, "/"):
                counts[status] = counts.get(status, 0) + 1
    if counts:
        terminalreporter.write_line(
            f"bad inputs: {counts.get('passed', 0)} refused with nothing changed, "
            f"{counts.get('failed', 0)} not")


@pytest.fixture(scope="session")
def repo_root():
    return REPO

# Each lab part's fixtures live in their own plugin module (one owner per file).
pytest_plugins = [
    "tests.fixtures.mariadb",
    "tests.fixtures.galera",
    "tests.fixtures.openstack",
    "tests.fixtures.haproxy",
    "tests.fixtures.libvirt",
    "tests.fixtures.salt",
]
