"""Plans: the strategy decision (rolling vs fast_forward, refusals with alternatives) and the
plan tree, golden-tested against tests/unit/golden/ (LEAPFROG_UPDATE_GOLDEN=1 rewrites)."""
import json
import os

import pytest
import yaml

import leapfrog_cluster
import leapfrog_plan
import leapfrog_schema
from tests.conftest import REPO
from tests.loader import load

GOLDEN = os.path.join(REPO, "tests", "unit", "golden")
PATH = ["2024.1", "2025.1", "2026.1"]

runner = load("runners", "leapfrog")


@pytest.fixture
def configure_loader_modules(tmp_path):
    return {runner: {"__opts__": {"id": "cfg01", "cachedir": str(tmp_path)}, "__context__": {}}}


def example_pillar():
    with open(os.path.join(REPO, "pillar_examples", "cluster.sls")) as handle:
        return yaml.safe_load(handle)


def example_config():
    return leapfrog_schema.validate(example_pillar()["leapfrog"]["clusters"]["prod1"], "prod1")


def golden(name, text):
    path = os.path.join(GOLDEN, name)
    if os.environ.get("LEAPFROG_UPDATE_GOLDEN"):
        with open(path, "w") as handle:
            handle.write(text + "\n")
    with open(path) as handle:
        assert text + "\n" == handle.read(), f"differs from {path}"


# ------------------------------------------------------------------------- decisions
def test_rolling_first_hop_is_possible_with_computes_at_2024_1():
    decision = leapfrog_plan.strategy(PATH, "rolling", "2024.1", {"cmp01": "2024.1"},
                                      to="2025.1")
    assert decision["hops"] == [("2024.1", "2025.1")]
    assert decision["why"].startswith("rolling: the API stays up")


def test_rolling_2024_1_to_2026_1_with_old_computes_is_refused_with_alternatives():
    with pytest.raises(leapfrog_plan.Impossible) as err:
        leapfrog_plan.strategy(PATH, "rolling", "2024.1",
                               {"cmp01": "2024.1", "cmp02": "2024.1"})
    assert err.value.reason == (
        "rolling control-plane hop 2025.1 -> 2026.1 is impossible: nova 2026.1 (Gazpacho, "
        "service version 72) refuses computes older than 2025.1 (Epoxy); found cmp01 "
        "(2024.1), cmp02 (2024.1). The computes must reach 2025.1 before this hop")
    assert err.value.alternatives[0].startswith("rolling, one hop now: to=2025.1")
    assert err.value.alternatives[1].startswith("strategy fast_forward")


def test_rolling_second_hop_needs_the_computes_first():
    with pytest.raises(leapfrog_plan.Impossible) as err:
        leapfrog_plan.strategy(PATH, "rolling", "2025.1", {"cmp01": "2024.1"})
    assert err.value.alternatives[0] == (
        "upgrade the computes to 2025.1 or newer first (orch.upgrade_data_plane), then the "
        "rolling hop 2025.1 -> 2026.1")


def test_rolling_second_hop_once_the_computes_followed():
    decision = leapfrog_plan.strategy(PATH, "rolling", "2025.1", {"cmp01": "2025.1"})
    assert decision["hops"] == [("2025.1", "2026.1")]


def test_fast_forward_takes_every_hop_and_switches_the_computes():
    decision = leapfrog_plan.strategy(PATH, "fast_forward", "2024.1", {"cmp01": "2024.1"})
    assert decision["hops"] == [("2024.1", "2025.1"), ("2025.1", "2026.1")]
    assert decision["computes_to"] == "2026.1"
    assert "disable_compute_service_check_for_ffu" in decision["why"]


@pytest.mark.parametrize("control, computes, to, message", [
    ("2023.1", {}, None, "not on the path"),
    ("2024.1", {"cmp01": "2022.1"}, None, "compute release unknown for cmp01"),
    ("2024.1", {"cmp01": "2025.1"}, None, "newer release than the control plane"),
    ("2025.1", {}, "2024.1", "does not downgrade"),
])
def test_impossible_inputs_are_refused(control, computes, to, message):
    with pytest.raises(leapfrog_plan.leapfrog_errors.LeapfrogError, match=message):
        leapfrog_plan.strategy(PATH, "fast_forward", control, computes, to=to)


# ------------------------------------------------------------------------- trees
def test_golden_refusal():
    with pytest.raises(leapfrog_plan.Impossible) as err:
        leapfrog_plan.strategy(PATH, "rolling", "2024.1", {"cmp01": "2024.1"})
    golden("plan_prod1_rolling_refused.txt", str(err.value))


# ------------------------------------------------------------------------- runner
@pytest.fixture(autouse=True)
def three_controllers(monkeypatch):
    monkeypatch.setattr(runner.leapfrog_minions, "rolled_controllers",
                        lambda opts, config: ["ctl01", "ctl02", "ctl03"])
    monkeypatch.setattr(runner.leapfrog_minions, "expected",
                        lambda opts, target: ["cmp001", "cmp002"])


def test_runner_plan_prints_the_plan_a_run_executes(monkeypatch):
    monkeypatch.setattr(leapfrog_cluster, "master_pillar", lambda opts: example_pillar())
    result = runner.plan(cluster="prod1", to=2025.1, computes="2024.1")
    assert result["possible"] is True
    assert result["text"].startswith(
        "Upgrade the control plane of prod1: 2024.1 -> 2025.1 (rolling)")
    assert "backup_dbs" in result["steps"] and "ctl03_ready" in result["steps"]
    assert [s["name"] for s in result["plan"]["steps"]] == result["steps"]
    assert json.dumps(result["plan"])
    assert "retcode" not in runner.__context__


def test_nothing_to_do_at_the_target(monkeypatch):
    monkeypatch.setattr(leapfrog_cluster, "master_pillar", lambda opts: example_pillar())
    result = runner.plan(cluster="prod1", control="2026.1", to="2026.1", computes="2026.1")
    assert result["steps"] == []
    assert result["text"] == "Nothing to do: the control plane of prod1 already runs 2026.1"


def test_runner_plan_refuses_with_reason_and_alternatives(monkeypatch):
    monkeypatch.setattr(leapfrog_cluster, "master_pillar", lambda opts: example_pillar())
    result = runner.plan(cluster="prod1", computes={"cmp001": "2024.1"})
    assert result["possible"] is False
    assert result["retcode"] == 1 and runner.__context__["retcode"] == 1
    assert "refuses computes older than 2025.1 (Epoxy); found cmp001 (2024.1)" in \
        result["reason"]
    assert len(result["alternatives"]) == 2


def test_runner_plan_strategy_from_argument(monkeypatch):
    monkeypatch.setattr(leapfrog_cluster, "master_pillar", lambda opts: example_pillar())
    # salt-run parses computes=2024.1 as a float
    result = runner.plan(cluster="prod1", strategy="fast_forward", computes=2024.1)
    assert result["strategy"] == "fast_forward"
    assert result["hops"] == [["2024.1", "2025.1"], ["2025.1", "2026.1"]]


def test_runner_plan_reads_compute_releases_from_the_inventory(monkeypatch):
    monkeypatch.setattr(leapfrog_cluster, "master_pillar", lambda opts: example_pillar())
    monkeypatch.setattr(runner.leapfrog_facts, "cloud_releases", lambda opts, config, timeout: {})
    monkeypatch.setattr(runner.leapfrog_minions, "ask_node_info", lambda opts, target, timeout: {
        "cmp001": {"release": "2025.1"}, "cmp002": {"release": "2025.1"}})
    result = runner.plan(cluster="prod1", control="2025.1")
    assert result["possible"] is True
    assert result["computes"] == {"cmp001": "2025.1", "cmp002": "2025.1"}
    assert result["hops"] == [["2025.1", "2026.1"]]


def test_runner_plan_prefers_the_releases_nova_records(monkeypatch):
    """After a data-plane run the pillar still declares 2024.1 everywhere: the service
    versions in nova's cell database say where the cloud really is."""
    monkeypatch.setattr(leapfrog_cluster, "master_pillar", lambda opts: example_pillar())
    monkeypatch.setattr(runner.leapfrog_facts, "cloud_releases", lambda opts, config, timeout: {
        "control": "2025.1", "computes": {"cmp001": "2025.1", "cmp002": "2025.1"}})
    monkeypatch.setattr(runner.leapfrog_minions, "ask_node_info",
                        lambda opts, target, timeout: pytest.fail("pillar asked"))
    result = runner.plan(cluster="prod1")
    assert result["possible"] is True, result
    assert result["control"] == "2025.1" and result["releases_from"] == "nova's service versions"
    assert result["hops"] == [["2025.1", "2026.1"]]


@pytest.mark.parametrize("version,release", [(66, "2023.1"), (67, "2024.1"), (68, "2025.1"),
                                             (70, "2025.1"), (72, "2026.1"), (80, "2026.1"),
                                             (10, None)])
def test_release_of_a_service_version(version, release):
    assert leapfrog_plan.release_of(version) == release
