"""The leapfrog execution module and runner, with loader dunders."""
import os

import pytest
import yaml

import leapfrog_cluster
from tests.conftest import REPO
from tests.loader import load

module = load("modules", "leapfrog")
runner = load("runners", "leapfrog")


@pytest.fixture
def configure_loader_modules():
    pillar = {"nova": {"compute": {"enabled": True, "version": "2024.1"}}}
    return {
        module: {
            "__grains__": {"id": "cmp01", "roles": ["cmp"], "os": "Debian",
                           "oscodename": "bookworm"},
            "__pillar__": pillar,
        },
        runner: {"__opts__": {"id": "cfg01"}, "__context__": {}},
    }


def test_node_info_reports_roles_os_and_release():
    info = module.node_info()
    assert info["id"] == "cmp01"
    assert info["roles"] == ["cmp"]
    assert info["oscodename"] == "bookworm"
    assert info["services"] == ["nova:compute"]
    assert info["release"] == "2024.1"


def example_pillar():
    with open(os.path.join(REPO, "pillar_examples", "cluster.sls")) as handle:
        return yaml.safe_load(handle)


def test_validate_ok(monkeypatch):
    monkeypatch.setattr(leapfrog_cluster, "master_pillar", lambda opts: example_pillar())
    result = runner.validate()
    assert result["valid"] is True
    assert result["path"] == "2024.1 -> 2025.1 -> 2026.1"
    assert "retcode" not in runner.__context__


def test_validate_lists_problems_and_fails(monkeypatch):
    pillar = example_pillar()
    del pillar["leapfrog"]["clusters"]["prod1"]["roles"]
    pillar["leapfrog"]["clusters"]["prod1"]["haproxy"]["vip"] = 10
    monkeypatch.setattr(leapfrog_cluster, "master_pillar", lambda opts: pillar)
    result = runner.validate(cluster="prod1")
    assert result["valid"] is False
    assert len(result["problems"]) == 2
    assert runner.__context__["retcode"] == 1


def test_unknown_cluster_names_the_known_ones(monkeypatch):
    monkeypatch.setattr(leapfrog_cluster, "master_pillar", lambda opts: example_pillar())
    result = runner.validate(cluster="prod9")
    assert result["problems"] == [
        "cluster 'prod9' is not in the master's pillar (leapfrog:clusters); known: prod1. "
        "Add it as shown in pillar_examples/cluster.sls"
    ]
    assert runner.__context__["retcode"] == 1


def test_pillar_override_is_merged(monkeypatch):
    monkeypatch.setattr(leapfrog_cluster, "master_pillar", lambda opts: example_pillar())
    override = {"leapfrog": {"clusters": {"prod1": {"releases": {"strategy": "fast_forward"}}}}}
    assert runner.validate(pillar=override)["strategy"] == "fast_forward"
