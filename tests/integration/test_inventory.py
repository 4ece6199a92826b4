"""The pipes end to end: modules synced from file_roots to a real master and minions,
the leapfrog runner targeting them by pillar and grain, and an orchestration that stops
with a non-zero exit when a step fails."""
import json

import pytest

pytestmark = pytest.mark.usefixtures("salt_minions")


def run(salt_master, *args):
    return salt_master.salt_run_cli(timeout=180).run(*args)


def test_synced_module_answers_on_every_minion(salt_master, salt_minions):
    ret = salt_master.salt_cli(timeout=60).run("leapfrog.node_info", minion_tgt="*")
    assert ret.returncode == 0, ret
    assert sorted(ret.data) == sorted(salt_minions)
    assert ret.data["cmp01"]["services"] == ["nova:compute"]
    assert ret.data["cmp01"]["release"] == "2024.1"
    assert ret.data["ctl01"]["roles"] == ["ctl"]


def test_compound_targets_by_pillar_and_grain(salt_master):
    cli = salt_master.salt_cli(timeout=60)
    ret = cli.run("-C", "grains.item", "oscodename", minion_tgt="I@nova:compute")
    assert sorted(ret.data) == ["cmp01", "cmp02"]
    assert {v["oscodename"] for v in ret.data.values()} == {"bookworm"}
    ret = cli.run("-C", "test.ping", minion_tgt="G@roles:ctl")
    assert sorted(ret.data) == ["ctl01"]


def test_inventory_lists_nodes_by_role(salt_master):
    ret = run(salt_master, "leapfrog.inventory", "cluster=lab")
    assert ret.returncode == 0, ret
    roles = ret.data["roles"]
    assert sorted(roles["compute"]["nodes"]) == ["cmp01", "cmp02"]
    assert sorted(roles["controller"]["nodes"]) == ["ctl01"]
    assert sorted(roles["hypervisor"]["nodes"]) == ["kvm01"]
    assert roles["database"]["target"] == "I@mysql:server"
    assert ret.data["problems"] == []


def test_inventory_fails_when_a_role_matches_nothing(salt_master):
    override = {"leapfrog": {"clusters": {"lab": {"roles": {"compute": "I@nova:nothing"}}}}}
    ret = run(salt_master, "leapfrog.inventory", "cluster=lab", f"pillar={json.dumps(override)}")
    assert ret.returncode != 0
    assert "role compute: target 'I@nova:nothing' matches no minion" in ret.stdout


def orch_states(ret):
    """The orchestration's state results by state id, from salt-run's JSON output."""
    states = next(iter(ret.data["data"].values()))
    return {value["__id__"]: value for value in states.values()}


def test_orchestration_runs_the_inventory(salt_master):
    ret = run(salt_master, "state.orch", "orch.inventory", 'pillar={"cluster": "lab"}')
    assert ret.returncode == 0, ret.stdout
    states = orch_states(ret)
    assert [states[s]["result"] for s in ("validate_pillar", "inventory")] == [True, True]
    nodes = states["inventory"]["changes"]["return"]["roles"]["compute"]["nodes"]
    assert sorted(nodes) == ["cmp01", "cmp02"]


def test_failing_step_stops_the_orchestration(salt_master):
    ret = run(salt_master, "state.orch", "orch.inventory", 'pillar={"cluster": "nope"}')
    assert ret.returncode == 1
    states = orch_states(ret)
    problems = states["validate_pillar"]["changes"]["return"]["problems"]
    assert problems == ["cluster 'nope' is not in the master's pillar (leapfrog:clusters); "
                        "known: lab. Add it as shown in pillar_examples/cluster.sls"]
    # the inventory step requires the failed validation: it does not run
    assert states["inventory"]["__state_ran__"] is False
    assert states["inventory"]["comment"].startswith("One or more requisite failed")
