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
        if func == "nova_service.list":
            return {"ctl01": [{"host": kwargs["host"], "version": servers.get("version", 67),
                               **servers.get("service", {})}]}
        if func == "nova_service.servers" and (kwargs or {}).get("deleted"):
            return {"ctl01": servers.get("deleted", [])}
        if func == "nova_service.servers":
            key = "after" if any(c[1] == "nova_service.enable" for c in calls) else "before"
            return {"ctl01": servers.get(key, servers["before"])}
        return {target[2:]: {"ok": True}}

    def call_each(opts, target, func, kwargs=None, timeout=600, first=False):
        calls.append((target, func, dict(kwargs or {})))
        hosts = target[2:].split(",")
        return ({h: {"ok": True} for h in hosts if h not in broken},
                {h: f"{h}: {func} failed: {broken[h]}" for h in hosts if h in broken})

    broken = {}
    monkeypatch.setattr(runner.leapfrog_minions, "call", call)
    monkeypatch.setattr(runner.leapfrog_minions, "call_each", call_each)
    return {"calls": calls, "servers": servers, "pillar": pillar, "broken": broken}


def test_forced_switch_runs_every_phase_in_order_on_the_right_minion(minions):
    out = runner.switch_compute("cmp01", release="2025.1", cluster="lab", servers="force")
    assert "retcode" not in out, out
    assert [(t, f) for t, f, _ in minions["calls"]] == [
        ("L@ctl01", "nova_service.list"),
        ("L@ctl01", "nova_service.servers"), ("L@ctl01", "nova_service.disable"),
        ("L@ctl01", "nova_service.wait_idle"), ("L@cmp01", "state.apply"),
        ("L@ctl01", "nova_service.wait_up"), ("L@ctl01", "nova_service.enable"),
        ("L@ctl01", "nova_service.servers")]
    apply = minions["calls"][4][2]
    assert apply == {"mods": "nova.compute",
                     "pillar": {"leapfrog": {"release": "2025.1", "services": "running"}}}
    wait_up = minions["calls"][5][2]
    assert wait_up["version"] == "2025.1" and wait_up["since"]
    assert minions["calls"][6][2]["reason"] == minions["calls"][2][2]["reason"]
    assert set(out["phases"]) >= {"disable", "idle", "redeploy", "up", "enable"}


def test_a_batch_is_redeployed_in_one_job_after_every_host_is_disabled(minions):
    out = runner.switch_computes(["cmp01", "cmp02"], release="2025.1", cluster="lab",
                                 servers="force")
    assert "retcode" not in out, out
    calls = [(t, f, k.get("host")) for t, f, k in minions["calls"]]
    assert calls.index(("L@ctl01", "nova_service.disable", "cmp02")) < calls.index(
        ("L@ctl01", "nova_service.wait_idle", "cmp01"))
    assert [t for t, f, _ in calls if f == "state.apply"] == ["L@cmp01,cmp02"]
    assert sorted(h for _, f, h in calls if f == "nova_service.enable") == ["cmp01", "cmp02"]
    assert {h: r["release"] for h, r in out["hosts"].items()} == {"cmp01": "2025.1",
                                                                  "cmp02": "2025.1"}


def test_a_host_whose_redeploy_fails_stays_disabled_and_fails_the_batch_naming_it(minions):
    minions["broken"]["cmp02"] = "nova-compute (2025.1) on cmp02 exited"
    out = runner.switch_computes("cmp01,cmp02,cmp03", release="2025.1", cluster="lab",
                                 servers="force")
    assert out["retcode"] == 1 and out["failed"] == ["cmp02"]
    assert out["error"].startswith("cmp02: cmp02: state.apply failed: nova-compute (2025.1)")
    enabled = sorted(k["host"] for _, f, k in minions["calls"] if f == "nova_service.enable")
    assert enabled == ["cmp01", "cmp03"]
    assert out["hosts"]["cmp01"]["release"] == "2025.1"


def test_one_host_switch_reports_its_failure_with_the_retcode(minions):
    minions["broken"]["cmp01"] = "boom"
    out = runner.switch_compute("cmp01", release="2025.1", cluster="lab", servers="force")
    assert out["retcode"] == 1 and out["host"] == "cmp01" and "boom" in out["error"]
    assert "nova_service.enable" not in [f for _, f, _ in minions["calls"]]


def test_host_with_servers_is_skipped_by_default(minions):
    out = runner.switch_compute("cmp01", release="2025.1", cluster="lab")
    assert out["skipped"] is True and "1 server(s) on cmp01" in out["reason"]
    assert [f for _, f, _ in minions["calls"]] == ["nova_service.list", "nova_service.servers"]


def test_a_host_already_at_the_release_is_skipped_untouched(minions):
    minions["servers"]["version"] = 68
    out = runner.switch_compute("cmp01", release="2025.1", cluster="lab", servers="force")
    assert out == {"host": "cmp01", "skipped": True,
                   "reason": "cmp01 already runs 2025.1 (service version 68)"}
    assert [f for _, f, _ in minions["calls"]] == ["nova_service.list"]


def test_a_host_an_earlier_attempt_switched_but_left_disabled_is_enabled(minions):
    """The attempt that switched it died before its enable (its salt-run killed): a resume
    finishes it, and only when it was disabled with the run's own reason."""
    minions["servers"]["version"] = 68
    minions["servers"]["service"] = {"status": "disabled",
                                     "disabled_reason": "leapfrog: fast-forward to 2025.1"}
    out = runner.switch_compute("cmp01", release="2025.1", cluster="lab", servers="force",
                                reason="leapfrog: fast-forward to 2025.1")
    assert out["skipped"] is True and out["reason"].endswith(
        "enabled again (an earlier attempt stopped before enabling it)")
    assert [(f, k.get("reason")) for _, f, k in minions["calls"]] == [
        ("nova_service.list", None),
        ("nova_service.enable", "leapfrog: fast-forward to 2025.1")]
    del minions["calls"][:]
    minions["servers"]["service"]["disabled_reason"] = "operator: disk failing"
    out = runner.switch_compute("cmp01", release="2025.1", cluster="lab", servers="force",
                                reason="leapfrog: fast-forward to 2025.1")
    assert [f for _, f, _ in minions["calls"]] == ["nova_service.list"]


def test_a_server_that_changed_fails_the_switch(minions):
    minions["servers"]["after"] = [{"id": "s1", "status": "ERROR"}]
    out = runner.switch_compute("cmp01", release="2025.1", cluster="lab", servers="force")
    assert out["retcode"] == 1 and "servers on cmp01 changed" in out["error"]


def test_a_server_being_deleted_when_the_switch_began_may_be_gone_after_it(minions):
    """A user's delete under way (status DELETED) is not a lost server; an ACTIVE one gone
    still fails the switch."""
    minions["servers"]["before"] = [{"id": "s1", "status": "ACTIVE"},
                                    {"id": "s2", "status": "DELETED"}]
    minions["servers"]["after"] = [{"id": "s1", "status": "ACTIVE"}]
    out = runner.switch_compute("cmp01", release="2025.1", cluster="lab", servers="force")
    assert "retcode" not in out, out
    minions["calls"].clear()
    minions["servers"]["after"] = [{"id": "s2", "status": "DELETED"}]
    out = runner.switch_compute("cmp01", release="2026.1", cluster="lab", servers="force")
    assert out["retcode"] == 1 and "servers on cmp01 changed" in out["error"]


def test_a_server_being_built_when_the_switch_began_may_end_either_way(minions):
    """A user's server in BUILD (seen in the demo: the provisioning probe's, deleted by it
    during the switch) may be gone, ACTIVE or in ERROR after the switch; a server at rest
    must still be as it was."""
    minions["servers"]["before"] = [{"id": "s1", "status": "ACTIVE"},
                                    {"id": "s2", "status": "BUILD"}]
    for after in ([{"id": "s1", "status": "ACTIVE"}],
                  [{"id": "s1", "status": "ACTIVE"}, {"id": "s2", "status": "ACTIVE"}],
                  [{"id": "s1", "status": "ACTIVE"}, {"id": "s2", "status": "ERROR"}]):
        minions["calls"].clear()
        minions["servers"]["after"] = after
        out = runner.switch_compute("cmp01", release="2025.1", cluster="lab", servers="force")
        assert "retcode" not in out, (after, out)
    minions["calls"].clear()
    minions["servers"]["after"] = [{"id": "s2", "status": "ACTIVE"}]
    out = runner.switch_compute("cmp01", release="2026.1", cluster="lab", servers="force")
    assert out["retcode"] == 1 and "servers on cmp01 changed" in out["error"]


def test_a_server_its_user_deleted_during_the_switch_is_not_lost(minions):
    """Seen in the demo: the provisioning probe deleted its ACTIVE server while cmp02 was
    being switched. Nova lists it deleted since the switch began: not a lost server; one
    that vanished without nova knowing it deleted still fails the switch."""
    minions["servers"]["before"] = [{"id": "s1", "status": "ACTIVE"},
                                    {"id": "s2", "status": "ACTIVE"}]
    minions["servers"]["after"] = [{"id": "s1", "status": "ACTIVE"}]
    minions["servers"]["deleted"] = [{"id": "s2", "status": "DELETED"}]
    out = runner.switch_compute("cmp01", release="2025.1", cluster="lab", servers="force")
    assert "retcode" not in out, out
    asked = [k for _, f, k in minions["calls"] if f == "nova_service.servers"
             and (k or {}).get("deleted")]
    assert len(asked) == 1 and asked[0]["host"] == "cmp01"
    assert asked[0]["changes_since"].endswith("Z")
    minions["calls"].clear()
    minions["servers"]["deleted"] = []
    out = runner.switch_compute("cmp01", release="2026.1", cluster="lab", servers="force")
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


def test_stop_compute_disables_waits_idle_then_stops_at_its_own_release(minions):
    out = runner.stop_compute("cmp01", "2024.1", reason="leapfrog: fast-forward to 2026.1",
                              cluster="lab")
    assert "retcode" not in out, out
    assert [(t, f) for t, f, _ in minions["calls"]] == [
        ("L@ctl01", "nova_service.servers"), ("L@ctl01", "nova_service.disable"),
        ("L@ctl01", "nova_service.wait_idle"), ("L@cmp01", "state.apply")]
    assert minions["calls"][1][2]["reason"] == "leapfrog: fast-forward to 2026.1"
    assert minions["calls"][3][2] == {
        "mods": "nova.compute", "pillar": {"leapfrog": {"release": "2024.1",
                                                        "services": "stopped"}}}
    assert out["release_before"] == "2024.1" and out["servers"] == 1


def test_stop_compute_without_a_redeploy_sls_touches_nothing(minions):
    minions["pillar"]["leapfrog"]["clusters"]["lab"]["data_plane"] = {}
    out = runner.stop_compute("cmp01", "2024.1", cluster="lab")
    assert out["retcode"] == 1 and "data_plane:redeploy_sls is not set" in out["error"]
    assert minions["calls"] == []


def _releases(minions, computes):
    calls = minions["calls"]
    real = runner.leapfrog_minions.call

    def call(opts, target, func, kwargs=None, timeout=600, first=False):
        if func == "nova_service.releases":
            calls.append((target, func, {}))
            return {"ctl01": {"control": "2025.1", "computes": computes}}
        return real(opts, target, func, kwargs, timeout, first)

    return call


def test_unpin_restarts_each_controller_without_the_cap_once_every_compute_is_new(
        minions, monkeypatch):
    minions["pillar"]["leapfrog"]["clusters"]["lab"]["vms"].update(
        redeploy_sls="openstack.controller", nodes={
            "ctl01": {"hypervisor": "kvm01", "domain": "ctl01"},
            "ctl02": {"hypervisor": "kvm01", "domain": "ctl02"}})
    monkeypatch.setattr(runner.leapfrog_minions, "call",
                        _releases(minions, {"cmp01": "2025.1", "cmp02": "2025.1"}))
    monkeypatch.setattr(runner.leapfrog_minions, "expected",
                        lambda opts, tgt: ["ctl01", "ctl02"])
    out = runner.unpin_compute_rpc("2025.1", cluster="lab")
    assert out["unpinned"] is True, out
    assert [(t, f) for t, f, _ in minions["calls"][1:4]] == [
        ("I@haproxy:proxy", "haproxy_admin.drain"), ("L@ctl01", "state.apply"),
        ("I@haproxy:proxy", "haproxy_admin.ready")]
    assert minions["calls"][2][2]["pillar"] == {"leapfrog": {
        "release": "2025.1", "services": "running", "compute_rpc": None}}
    assert [t for t, f, _ in minions["calls"] if f == "state.apply"] == ["L@ctl01", "L@ctl02"]


def test_unpin_changes_nothing_while_a_compute_is_older(minions, monkeypatch):
    monkeypatch.setattr(runner.leapfrog_minions, "call",
                        _releases(minions, {"cmp01": "2025.1", "cmp02": "2024.1"}))
    out = runner.unpin_compute_rpc("2025.1", cluster="lab")
    assert out["unpinned"] is False and "cmp02 (2024.1)" in out["skipped"]
    assert [f for _, f, _ in minions["calls"]] == ["nova_service.releases"]


def test_migrate_policy_empties_the_disabled_host_before_switching_it(minions, monkeypatch):
    real = runner.leapfrog_minions.call

    def call(opts, target, func, kwargs=None, timeout=600, first=False):
        if func == "nova_service.migrate_away":
            minions["calls"].append((target, func, dict(kwargs)))
            return {"ctl01": {"host": "cmp01", "migrated": [{"id": "s1", "to": "cmp02"}]}}
        return real(opts, target, func, kwargs, timeout, first)

    monkeypatch.setattr(runner.leapfrog_minions, "call", call)
    minions["servers"]["after"] = []
    out = runner.switch_compute("cmp01", release="2025.1", cluster="lab", servers="migrate")
    assert "retcode" not in out, out
    assert [f for _, f, _ in minions["calls"]][:6] == [
        "nova_service.list", "nova_service.servers", "nova_service.disable", "nova_service.wait_idle",
        "nova_service.migrate_away", "state.apply"]
    assert out["migrated"] == [{"id": "s1", "to": "cmp02"}]


def test_compute_changes_says_per_host_what_the_redeploy_would_do(minions, monkeypatch):
    def call_each(opts, target, func, kwargs=None, timeout=600, first=False):
        minions["calls"].append((target, func, dict(kwargs or {})))
        state = {"__id__": "nova_conf", "result": None, "__run_num__": 1,
                 "comment": "The file /etc/nova/nova.conf is set to be changed",
                 "changes": {"diff": "-[upgrade_levels]\n+compute = auto"}}
        same = {"__id__": "pkgs", "result": True, "__run_num__": 0, "comment": "installed",
                "changes": {}}
        return {"cmp01": {"a": state, "b": same}, "cmp02": {"b": same}}, {}

    monkeypatch.setattr(runner.leapfrog_minions, "call_each", call_each)
    monkeypatch.setattr(runner.leapfrog_facts, "cloud_releases",
                        lambda opts, config, timeout: {"computes": {"cmp01": "2024.1"}})
    out = runner.compute_changes(release="2025.1", cluster="lab")
    assert "retcode" not in out, out
    target, func, kwargs = minions["calls"][0]
    assert (func, kwargs["test"], kwargs["pillar"]) == (
        "state.apply", True, {"leapfrog": {"release": "2025.1", "services": "running"}})
    assert out["hosts"]["cmp01"] == {"release": "2024.1", "target": "2025.1", "changes": [
        "nova_conf: The file /etc/nova/nova.conf is set to be changed\n"
        "-[upgrade_levels]\n+compute = auto"]}
    assert out["hosts"]["cmp02"]["changes"] == []
    assert "cmp02: ? -> 2025.1: nothing to change" in out["summary"]


def test_prestage_applies_its_sls_on_every_compute_or_says_why_not(minions, monkeypatch):
    out = runner.prestage_computes(release="2025.1", cluster="lab")
    assert out["skipped"] is True and "data_plane:prestage_sls is not set" in out["reason"]
    assert minions["calls"] == []

    minions["pillar"]["leapfrog"]["clusters"]["lab"]["data_plane"]["prestage_sls"] = "nova.pkgs"

    def call_each(opts, target, func, kwargs=None, timeout=600, first=False):
        minions["calls"].append((target, func, dict(kwargs or {})))
        done = {"__id__": "nova_pkgs", "result": True, "comment": "installed nova 31.0.0",
                "changes": {"nova": {"new": "31.0.0"}}}
        return {"cmp01": {"a": done}}, {"cmp02": "cmp02: state.apply failed: no space left"}

    monkeypatch.setattr(runner.leapfrog_minions, "call_each", call_each)
    out = runner.prestage_computes(release="2025.1", cluster="lab")
    assert minions["calls"][0][2] == {"mods": "nova.pkgs",
                                      "pillar": {"leapfrog": {"release": "2025.1"}}}
    assert out["retcode"] == 1 and out["failed"] == ["cmp02"] and "no space" in out["error"]
    assert out["hosts"] == {"cmp01": ["nova_pkgs: installed nova 31.0.0"]}


def test_a_batch_waits_for_its_hosts_side_by_side(minions, monkeypatch):
    import threading  # pylint: disable=import-outside-toplevel

    both = threading.Barrier(2, timeout=10)  # broken unless two waits are in flight at once
    real = runner.leapfrog_minions.call

    def call(opts, target, func, kwargs=None, timeout=600, first=False):
        if func == "nova_service.wait_up":
            both.wait()
        return real(opts, target, func, kwargs, timeout, first)

    monkeypatch.setattr(runner.leapfrog_minions, "call", call)
    out = runner.switch_computes(["cmp01", "cmp02"], release="2025.1", cluster="lab",
                                 servers="force")
    assert "retcode" not in out, out
    assert sorted(out["hosts"]) == ["cmp01", "cmp02"]


@pytest.mark.parametrize("api_calls", [1, 3])
def test_a_batch_makes_at_most_data_plane_api_calls_at_once(minions, monkeypatch, api_calls):
    import threading  # pylint: disable=import-outside-toplevel
    import time  # pylint: disable=import-outside-toplevel

    minions["pillar"]["leapfrog"]["clusters"]["lab"]["data_plane"]["api_calls"] = api_calls
    lock, flight = threading.Lock(), {"now": 0, "most": 0}
    real = runner.leapfrog_minions.call

    def call(opts, target, func, kwargs=None, timeout=600, first=False):
        with lock:
            flight["now"] += 1
            flight["most"] = max(flight["most"], flight["now"])
        time.sleep(0.05)  # long enough for every thread allowed to be in flight together
        try:
            return real(opts, target, func, kwargs, timeout, first)
        finally:
            with lock:
                flight["now"] -= 1

    monkeypatch.setattr(runner.leapfrog_minions, "call", call)
    out = runner.switch_computes(["cmp01", "cmp02", "cmp03", "cmp04"], release="2025.1",
                                 cluster="lab", servers="force")
    assert "retcode" not in out, out
    assert flight["most"] == api_calls
