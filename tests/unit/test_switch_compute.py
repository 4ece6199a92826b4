"""leapfrog.switch_compute's sequence with the cross-minion calls recorded: what runs
where, in which order, and when it stops (servers policy, a changed server, no SLS)."""
import copy

import pytest
import yaml

import leapfrog_cluster
from tests.unit.test_journal_runner import PILLAR, configure_loader_modules, runner  # noqa: F401  pylint: disable=unused-import


@pytest.fixture
def minions(monkeypatch):
    pillar = yaml.safe_load(PILLAR)
    pillar["leapfrog"]["clusters"]["lab"]["data_plane"] = {"redeploy_sls": "nova.compute"}
    monkeypatch.setattr(leapfrog_cluster, "master_pillar", lambda opts: copy.deepcopy(pillar))
    monkeypatch.setattr(runner.leapfrog_minions, "expected", lambda opts, tgt: ["ctl01"])
    calls, servers = [], {"before": [{"id": "s1", "status": "ACTIVE"}]}

    def call(opts, target, func, kwargs=None, timeout=600, first=False):
        calls.append((target, func, dict(kwargs or {})))
        if func == "nova_service.servers":
            key = "after" if any(c[1] == "nova_service.enable" for c in calls) else "before"
            return {"ctl01": servers.get(key, servers["before"])}
        return {target[2:]: {"ok": True}}

    monkeypatch.setattr(runner.leapfrog_minions, "call", call)
    return {"calls": calls, "servers": servers, "pillar": pillar}


def test_forced_switch_runs_every_phase_in_order_on_the_right_minion(minions):
    out = runner.switch_compute("cmp01", release="2025.1", cluster="lab", servers="force")
    assert "retcode" not in out, out
    assert [(t, f) for t, f, _ in minions["calls"]] == [
        ("L@ctl01", "nova_service.servers"), ("L@ctl01", "nova_service.disable"),
        ("L@ctl01", "nova_service.wait_idle"), ("L@cmp01", "state.apply"),
        ("L@ctl01", "nova_service.wait_up"), ("L@ctl01", "nova_service.enable"),
        ("L@ctl01", "nova_service.servers")]
    apply = minions["calls"][3][2]
    assert apply == {"mods": "nova.compute",
                     "pillar": {"leapfrog": {"release": "2025.1", "services": "running"}}}
    wait_up = minions["calls"][4][2]
    assert wait_up["version"] == "2025.1" and wait_up["since"]
    assert minions["calls"][5][2]["reason"] == minions["calls"][1][2]["reason"]
    assert set(out["phases"]) >= {"disable", "idle", "redeploy", "up", "enable"}


def test_host_with_servers_is_skipped_by_default(minions):
    out = runner.switch_compute("cmp01", release="2025.1", cluster="lab")
    assert out["skipped"] is True and "1 server(s) on cmp01" in out["reason"]
    assert [f for _, f, _ in minions["calls"]] == ["nova_service.servers"]


def test_a_server_that_changed_fails_the_switch(minions):
    minions["servers"]["after"] = [{"id": "s1", "status": "ERROR"}]
    out = runner.switch_compute("cmp01", release="2025.1", cluster="lab", servers="force")
    assert out["retcode"] == 1 and "servers on cmp01 changed" in out["error"]


def test_no_redeploy_sls_is_refused_before_anything(minions):
    minions["pillar"]["leapfrog"]["clusters"]["lab"]["data_plane"] = {}
    out = runner.switch_compute("cmp01", release="2025.1", cluster="lab")
    assert out["retcode"] == 1 and "data_plane:redeploy_sls is not set" in out["error"]
    assert minions["calls"] == []


def test_a_failed_state_in_a_state_run_is_a_failure_naming_it():
    import leapfrog_minions  # pylint: disable=import-outside-toplevel

    ret = {"lab_openstack_|-x_|-x_|-deployed": {"__id__": "lab_openstack_ctl01", "result": False,
                                                "comment": "nova-api did not start: port taken"},
           "test_|-ok_|-ok_|-succeed": {"__id__": "ok", "result": True, "comment": "fine"}}
    assert leapfrog_minions._failed_states(ret) == [  # pylint: disable=protected-access
        "lab_openstack_ctl01: nova-api did not start: port taken"]
    assert leapfrog_minions._failed_states(["Rendering SLS failed"]) == [  # pylint: disable=protected-access
        "Rendering SLS failed"]
