"""haproxy_admin and haproxy_server against a real haproxy 2.6 and stand-in API servers."""
import threading
import time
import urllib.request

import pytest

from tests.loader import load

haproxy_admin = load("modules", "haproxy_admin")
haproxy_server = load("states", "haproxy_server")
PILLAR = {}



@pytest.fixture
def configure_loader_modules(haproxy_lab):
    PILLAR.clear()
    PILLAR["leapfrog"] = {"haproxy": {"socket": haproxy_lab.socket, "timeout": 5}}
    funcs = {}
    for name in ("server_status", "drain", "ready"):
        funcs[f"haproxy_admin.{name}"] = getattr(haproxy_admin, name)
    return {
        haproxy_admin: {"__pillar__": PILLAR},
        haproxy_server: {"__salt__": funcs, "__opts__": {"test": False}},
    }


def statuses(lab, server):
    return {be: s for (be, srv), s in lab.statuses().items() if srv == server}


def test_getters_read_the_real_haproxy(haproxy_lab):
    assert haproxy_admin.backends() == {api: ["ctl01", "ctl02"]
                                        for api in ("keystone", "nova", "placement")}
    assert haproxy_admin.server_backends("ctl02") == ["keystone", "nova", "placement"]
    record = haproxy_admin.server_status("ctl01", backends=["nova"])["nova"]
    assert record["status"] == "UP" and record["scur"] == 0 and record["weight"] == 1
    assert record["addr"] == haproxy_lab.backends["ctl01"].addresses[1]
    assert haproxy_admin.level() == "admin"
    # the TCP admin socket answers the same
    assert haproxy_admin.backends(socket=haproxy_lab.proxy.admin_tcp) == haproxy_admin.backends()


def test_server_in_three_backends_is_drained_in_all_three(haproxy_lab):
    out = haproxy_admin.drain("ctl01", timeout=10)
    assert sorted(out["backends"]) == ["keystone", "nova", "placement"]
    assert statuses(haproxy_lab, "ctl01") == {"keystone": "MAINT", "nova": "MAINT",
                                              "placement": "MAINT"}
    assert set(statuses(haproxy_lab, "ctl02").values()) == {"UP"}
    # traffic now only reaches ctl02
    for api in ("keystone", "nova", "placement"):
        for _ in range(4):
            with urllib.request.urlopen(haproxy_lab.url(api), timeout=5) as response:
                assert response.headers["X-Backend"] == "ctl02"
    back = haproxy_admin.ready("ctl01", timeout=10)
    assert {be: i["status"] for be, i in back["backends"].items()} == {
        "keystone": "UP", "nova": "UP", "placement": "UP"}
    assert set(statuses(haproxy_lab, "ctl01").values()) == {"UP"}


def _slow_request_on(lab, server, api, seconds):
    """Start GET /slow?s=N through haproxy that lands on ``server``; return (thread, result)."""
    other = [name for name in lab.backends if name != server]
    for name in other:  # let only ``server`` take the request
        haproxy_admin.set_state(name, "maint", backends=[api])
    result = {}

    def call():
        with urllib.request.urlopen(lab.url(api, f"/slow?s={seconds}"), timeout=30) as response:
            result["backend"] = response.headers["X-Backend"]
            result["status"] = response.status
        result["done_at"] = time.time()

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while haproxy_admin.server_status(server, backends=[api])[api]["scur"] != 1:
        assert time.monotonic() < deadline, "slow request never reached the server"
        time.sleep(0.05)
    for name in other:
        haproxy_admin.ready(name, backends=[api], timeout=10)
    return thread, result


def test_long_request_completes_before_maint(haproxy_lab):
    thread, result = _slow_request_on(haproxy_lab, "ctl01", "nova", 2)
    seen = []
    stop = threading.Event()

    def watch():  # what haproxy says while the drain waits
        while not stop.is_set():
            record = haproxy_admin.server_status("ctl01", backends=["nova"])["nova"]
            seen.append((record["status"], record["scur"]))
            time.sleep(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    out = haproxy_admin.drain("ctl01", timeout=20, poll=0.1)
    stop.set()
    watcher.join()
    thread.join(10)
    assert result["status"] == 200 and result["backend"] == "ctl01"
    nova = out["backends"]["nova"]
    assert nova["sessions"] == 1 and nova["seconds"] >= 1.0
    assert nova["maint_at"] >= result["done_at"]          # maint only after it completed
    assert out["backends"]["keystone"]["seconds"] < 1.0    # empty backends go at once
    assert ("DRAIN", 1) in seen
    assert not [s for s in seen if s[0] == "MAINT" and s[1]]  # never MAINT with a session


def test_drain_timeout_names_backend_and_leaves_it_draining(haproxy_lab):
    thread, result = _slow_request_on(haproxy_lab, "ctl02", "placement", 3)
    with pytest.raises(haproxy_admin.DrainTimeout) as err:
        haproxy_admin.drain("ctl02", timeout=0.5, poll=0.1)
    assert "backend(s) placement still hold sessions (placement: 1 current, 0 queued)" in str(err.value)
    assert statuses(haproxy_lab, "ctl02") == {"keystone": "MAINT", "nova": "MAINT",
                                              "placement": "DRAIN"}
    # forced: maint now, the request in flight still finishes (haproxy does not cut it)
    out = haproxy_admin.drain("ctl02", timeout=0.2, on_timeout="maint")
    assert out["forced"] == ["placement"]
    assert statuses(haproxy_lab, "ctl02")["placement"] == "MAINT"
    thread.join(10)
    assert result["status"] == 200


def test_names_refused_against_real_haproxy(haproxy_lab):
    before = haproxy_lab.statuses()
    with pytest.raises(haproxy_admin.NameRefused):
        haproxy_admin.drain("ctl01;disable server nova/ctl02")
    with pytest.raises(haproxy_admin.UnknownName, match="unknown haproxy backend.s. glance"):
        haproxy_admin.drain("ctl01", backends=["glance"])
    with pytest.raises(haproxy_admin.UnknownName, match="'ctl03' is in no haproxy backend"):
        haproxy_admin.ready("ctl03")
    assert haproxy_lab.statuses() == before


def test_user_level_socket_and_missing_socket(haproxy_lab):
    user = haproxy_lab.proxy.user_socket
    assert haproxy_admin.level(socket=user) == "user"
    assert haproxy_admin.server_backends("ctl01", socket=user) == ["keystone", "nova", "placement"]
    with pytest.raises(haproxy_admin.NotAdmin, match="level user, not admin"):
        haproxy_admin.drain("ctl01", socket=user)
    assert set(statuses(haproxy_lab, "ctl01").values()) == {"UP"}
    haproxy_lab.proxy.stop()
    with pytest.raises(haproxy_admin.SocketUnavailable, match="does not exist"):
        haproxy_admin.stats()


def test_ready_of_a_stopped_server_times_out_with_the_check_result(haproxy_lab):
    haproxy_admin.drain("ctl02", backends=["nova"], timeout=10)
    haproxy_lab.backends["ctl02"].stop()
    with pytest.raises(haproxy_admin.ReadyTimeout, match=r"backend\(s\) nova \(nova: DOWN"):
        haproxy_admin.ready("ctl02", backends=["nova"], timeout=2)
    haproxy_lab.backends["ctl02"].start()
    out = haproxy_admin.ready("ctl02", timeout=10)
    assert out["backends"]["nova"]["status"] == "UP"


def test_states_on_real_haproxy(haproxy_lab):
    haproxy_server.__opts__["test"] = True
    try:
        ret = haproxy_server.drained("ctl01")
    finally:
        haproxy_server.__opts__["test"] = False
    assert ret["result"] is None and ret["comment"].startswith("Would drain ctl01")
    assert set(statuses(haproxy_lab, "ctl01").values()) == {"UP"}

    ret = haproxy_server.drained("ctl01")
    assert ret["result"] is True, ret
    assert ret["changes"]["new"] == {"keystone": "MAINT", "nova": "MAINT", "placement": "MAINT"}
    assert haproxy_server.drained("ctl01")["changes"] == {}

    ret = haproxy_server.ready("ctl01")
    assert ret["result"] is True, ret
    assert ret["changes"] == {"old": {be: "MAINT" for be in ("keystone", "nova", "placement")},
                              "new": {be: "UP" for be in ("keystone", "nova", "placement")}}
    again = haproxy_server.ready("ctl01")
    assert again["result"] is True and again["changes"] == {}


def test_check_reaches_a_maintained_servers_own_endpoints_and_names_a_dead_one(haproxy_lab):
    haproxy_admin.drain("ctl02", timeout=10)
    out = haproxy_admin.check("ctl02")
    assert out["healthy"] and sorted(out["backends"]) == ["keystone", "nova", "placement"]
    assert all(r["status"] < 500 for r in out["backends"].values())
    assert statuses(haproxy_lab, "ctl02")["nova"] == "MAINT"  # checked, still out of rotation
    haproxy_lab.backends["ctl02"].stop()
    try:
        with pytest.raises(haproxy_admin.HAProxyError,
                           match=r"ctl02 is not healthy: keystone: ctl02 at 127\.[0-9.]+:\d+ "
                                 r"does not answer"):
            haproxy_admin.check("ctl02", timeout=2)
    finally:
        haproxy_lab.backends["ctl02"].start()
    haproxy_admin.ready("ctl02", timeout=10)


def test_a_stopped_server_set_ready_with_health_down_gets_no_traffic(haproxy_lab):
    """A controller's VM stopped after its drain, put back ``ready`` so its health checks
    bring it UP once its services answer: with ``health=down`` haproxy sends it nothing
    meanwhile; without, haproxy trusts the health it had before maint (UP)."""
    haproxy_admin.drain("ctl01", backends=["nova"], timeout=10)
    haproxy_lab.backends["ctl01"].stop()
    assert haproxy_admin.set_state("ctl01", "ready", backends=["nova"],
                                   health="down") == {"nova": "DOWN"}
    for _ in range(8):  # every request lands on ctl02, none fails
        with urllib.request.urlopen(haproxy_lab.url("nova"), timeout=5) as response:
            assert response.headers["X-Backend"] == "ctl02"
    haproxy_admin.set_state("ctl01", "maint", backends=["nova"])
    # without: UP (going down as its checks fail), and traffic goes to it meanwhile
    assert haproxy_admin.set_state("ctl01", "ready", backends=["nova"])["nova"].startswith("UP")
    with pytest.raises(haproxy_admin.HAProxyError, match="unknown server health 'sick'"):
        haproxy_admin.set_state("ctl01", "ready", backends=["nova"], health="sick")


def test_handover_moves_one_backend_from_the_others_with_a_short_overlap(haproxy_lab):
    """ctl01 (out of nova) takes nova over from ctl02: ctl01 UP everywhere, ctl02 in
    maintenance in nova only, both UP in nova for well under a second."""
    haproxy_admin.drain("ctl01", backends=["nova"], timeout=10)
    out = haproxy_admin.handover("ctl01", others="ctl02", backends="nova", timeout=10)
    assert statuses(haproxy_lab, "ctl01") == {"keystone": "UP", "nova": "UP",
                                              "placement": "UP"}
    assert statuses(haproxy_lab, "ctl02") == {"keystone": "UP", "nova": "MAINT",
                                              "placement": "UP"}
    assert out["drained"]["ctl02"]["backends"]["nova"]["status"] == "MAINT"
    assert out["overlap_seconds"] < 0.5
    haproxy_admin.ready("ctl02", backends=["nova"], timeout=10)


def test_handover_refuses_unknown_servers_and_changes_nothing(haproxy_lab):
    haproxy_admin.drain("ctl01", backends=["nova"], timeout=10)
    with pytest.raises(Exception, match="ctl09"):
        haproxy_admin.handover("ctl01", others="ctl09", backends="nova")
    with pytest.raises(Exception, match="handover needs others"):
        haproxy_admin.handover("ctl01", others="", backends="nova")
    assert statuses(haproxy_lab, "ctl01")["nova"] == "MAINT"
    haproxy_admin.ready("ctl01", timeout=10)
