"""Done-when: under continuous load through haproxy, a drained restart loses no request and
the same restart without drain loses some (real haproxy 2.6, stand-in API servers)."""
import time

import pytest

import leapfrog_probe
from tests import drain_cycle
from tests.loader import load

haproxy_admin = load("modules", "haproxy_admin")

LOAD = {"concurrency": 8, "duration": 40, "interval": 0.02, "timeout": 5}
# an API server is down for a few seconds while it restarts (nova-api takes more): longer
# than haproxy's retries can hide
RESTART_GAP = 3.0


@pytest.fixture
def configure_loader_modules(haproxy_lab):
    pillar = {"leapfrog": {"haproxy": {"socket": haproxy_lab.socket, "timeout": 5,
                                       "drain_timeout": 20, "ready_timeout": 15}}}
    return {haproxy_admin: {"__pillar__": pillar}}


def _restart(lab, server, drain):
    """One maintenance cycle of ``server`` under load; returns the probe summary."""
    def restart():
        lab.backends[server].stop()
        time.sleep(RESTART_GAP)
        lab.backends[server].start()
    drained, summary = drain_cycle.restart_under_load(
        haproxy_admin, lab.urls(), LOAD, server, restart, drain, settle=1.0, up_timeout=15,
        poll=0.1)
    if drain:
        assert drained == ["keystone", "nova", "placement"]
    return summary


def test_drained_restart_loses_nothing_and_plain_restart_loses_some(haproxy_lab):
    with_drain = _restart(haproxy_lab, "ctl01", drain=True)
    without = _restart(haproxy_lab, "ctl02", drain=False)
    # both numbers, side by side: the drain is what makes the difference
    assert with_drain["requests"] > 200 and without["requests"] > 200
    assert with_drain["failures"] == 0, with_drain
    assert without["failures"] > 0, without
    assert with_drain["longest_outage"] == 0.0
    assert without["longest_outage"] > 0.0
    # every API kept answering through the drained cycle
    assert all(v["failures"] == 0 and v["requests"] > 50 for v in with_drain["per_url"].values())


def test_drained_restart_loses_nothing_for_keepalive_clients(haproxy_lab):
    """API clients keep their connections to the VIP open: haproxy still balances each
    request, so a drained server gets none of them."""
    global LOAD
    saved, LOAD = LOAD, dict(LOAD, keepalive=True)
    try:
        summary = _restart(haproxy_lab, "ctl02", drain=True)
    finally:
        LOAD = saved
    assert summary["requests"] > 200 and summary["failures"] == 0, summary


def test_probe_stops_by_itself_and_keeps_a_timeline(haproxy_lab):
    started = time.monotonic()
    summary = leapfrog_probe.run(haproxy_lab.urls(), concurrency=4, duration=1.5, interval=0.01)
    took = time.monotonic() - started
    assert took < 4
    assert summary["failures"] == 0 and summary["requests"] > 20
    assert [slot["second"] for slot in summary["timeline"]] == [0, 1]
    assert sum(s["ok"] for s in summary["timeline"]) == summary["requests"]

    summary = leapfrog_probe.run(haproxy_lab.url("nova"), concurrency=3, duration=30,
                                 max_requests=25)
    assert summary["requests"] == 25


def test_probe_counts_an_outage_when_haproxy_is_gone(haproxy_lab):
    with leapfrog_probe.Probe(haproxy_lab.urls(), concurrency=4, duration=20,
                              interval=0.02) as probe:
        time.sleep(0.5)
        haproxy_lab.proxy.stop()
        time.sleep(1.0)
    summary = probe.summary()
    assert summary["ok"] > 0 and summary["failures"] > 0
    assert 0.5 <= summary["longest_outage"] <= 3.0
    assert "ConnectionRefusedError" in summary["errors"]
