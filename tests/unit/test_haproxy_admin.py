"""haproxy_admin and haproxy_server against a socket spy: what is sent, what is refused."""
import os
import shutil
import socket
import tempfile
import time

import pytest
from salt.exceptions import CommandExecutionError

import leapfrog_errors
from tests.loader import load
from tests.unit.haproxy_spy import FakeHAProxy

haproxy_admin = load("modules", "haproxy_admin")
haproxy_server = load("states", "haproxy_server")

PILLAR = {}



@pytest.fixture
def tmpdir_short():
    path = tempfile.mkdtemp(prefix="lfu-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def spy(tmpdir_short):
    fake = FakeHAProxy(os.path.join(tmpdir_short, "admin.sock"))
    PILLAR.clear()
    PILLAR["leapfrog"] = {"haproxy": {"socket": fake.address, "timeout": 2}}
    yield fake
    fake.close()
    PILLAR.clear()


@pytest.fixture
def configure_loader_modules():
    funcs = {}
    for name in ("server_status", "drain", "ready"):
        funcs[f"haproxy_admin.{name}"] = getattr(haproxy_admin, name)
    return {
        haproxy_admin: {"__pillar__": PILLAR},
        haproxy_server: {"__salt__": funcs, "__opts__": {"test": False}},
    }


INJECTIONS = [
    "ctl01;disable frontend keystone",
    "ctl01 state maint",
    "ctl01\nset server nova/ctl02 state maint",
    "ctl01\r",
    "ctl01\tx",
    "ctl01/ctl02",
    "",
    "ctl\x00",
    "ctl01é",
    "x" * 129,
    None,
    5,
]


@pytest.mark.parametrize("name", INJECTIONS)
@pytest.mark.parametrize("call", ["drain", "ready", "server_status", "set_state"])
def test_injection_in_server_name_is_refused_before_connecting(spy, name, call):
    func = getattr(haproxy_admin, call)
    args = (name, "maint") if call == "set_state" else (name,)
    with pytest.raises(haproxy_admin.NameRefused) as err:
        func(*args)
    assert "nothing was sent to haproxy" in str(err.value)
    assert spy.connections == 0 and spy.raw == []


@pytest.mark.parametrize("backends", [["nova;shutdown sessions server nova/ctl02"],
                                      ["nova", "keystone maint"], "nova,place ment",
                                      ["nova\nshow info"], {"nova": 1}])
def test_injection_in_backend_names_is_refused_before_connecting(spy, backends):
    for func in (haproxy_admin.drain, haproxy_admin.ready):
        with pytest.raises(haproxy_admin.NameRefused):
            func("ctl01", backends=backends)
    assert spy.connections == 0


def test_errors_are_leapfrog_errors():
    assert issubclass(haproxy_admin.NameRefused, leapfrog_errors.LeapfrogError)
    assert issubclass(haproxy_admin.DrainTimeout, CommandExecutionError)


def test_unknown_server_is_refused_after_a_read_only_look(spy):
    with pytest.raises(haproxy_admin.UnknownName) as err:
        haproxy_admin.drain("ctl09")
    assert "'ctl09' is in no haproxy backend (known servers: ctl01, ctl02)" in str(err.value)
    assert spy.commands == ["show stat"] and spy.sets == []


def test_unknown_backend_is_refused_without_any_set(spy):
    with pytest.raises(haproxy_admin.UnknownName) as err:
        haproxy_admin.drain("ctl01", backends=["nova", "glance"])
    assert "unknown haproxy backend(s) glance (known: keystone, nova, placement)" in str(err.value)
    spy.servers["glance"] = {"ctl02": {"status": "UP"}}
    with pytest.raises(haproxy_admin.UnknownName, match="not in backend.s. glance"):
        haproxy_admin.ready("ctl01", backends="nova,glance")
    assert spy.sets == []


def test_non_admin_socket_says_so_and_changes_nothing(spy):
    spy.level = "operator"
    with pytest.raises(haproxy_admin.NotAdmin, match="level operator, not admin"):
        haproxy_admin.drain("ctl01")
    assert spy.sets == []
    assert haproxy_admin.level() == "operator"


def test_missing_socket_says_so(tmpdir_short):
    path = os.path.join(tmpdir_short, "nope.sock")
    with pytest.raises(haproxy_admin.SocketUnavailable, match="does not exist: is haproxy running"):
        haproxy_admin.stats(socket=path)


def test_stale_socket_file_says_nothing_listens(tmpdir_short):
    path = os.path.join(tmpdir_short, "stale.sock")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(path)
    sock.close()
    with pytest.raises(haproxy_admin.SocketUnavailable, match="nothing accepts connections"):
        haproxy_admin.stats(socket=path)


def test_silent_socket_times_out(tmpdir_short):
    fake = FakeHAProxy(os.path.join(tmpdir_short, "slow.sock"), silent=True)
    try:
        started = time.monotonic()
        with pytest.raises(haproxy_admin.SocketUnavailable, match="did not answer 'show' within 0.3s"):
            haproxy_admin.stats(socket=fake.address, timeout=0.3)
        assert time.monotonic() - started < 2
    finally:
        fake.close()


def test_no_socket_configured_names_the_pillar_key():
    PILLAR.clear()
    with pytest.raises(haproxy_admin.HAProxyError, match="leapfrog:haproxy:socket"):
        haproxy_admin.stats()


def test_tcp_socket():
    fake = FakeHAProxy(tcp=True)
    try:
        assert haproxy_admin.backends(socket=fake.address) == {
            "keystone": ["ctl01", "ctl02"], "nova": ["ctl01", "ctl02"],
            "placement": ["ctl01", "ctl02"]}
    finally:
        fake.close()


def test_stats_are_typed(spy):
    spy.servers["nova"]["ctl01"].update(scur=3, qcur=1)
    records = haproxy_admin.stats()
    nova = [r for r in records if r["backend"] == "nova" and r["server"] == "ctl01"][0]
    assert nova["scur"] == 3 and nova["qcur"] == 1 and nova["weight"] == 1
    assert nova["status"] == "UP" and nova["kind"] == "server"
    assert nova["downtime"] is None
    assert {r["kind"] for r in records} == {"server", "backend"}
    full = haproxy_admin.stats(full=True)
    assert "hrsp_2xx" in full[0] and "-" not in full[0]
    assert haproxy_admin.server_backends("ctl02") == ["keystone", "nova", "placement"]
    assert [r["server"] for r in haproxy_admin.servers(backend="nova")] == ["ctl01", "ctl02"]


def test_drain_waits_for_sessions_then_maint_on_every_backend(spy):
    spy.servers["nova"]["ctl01"]["scur"] = 2
    spy.servers["keystone"]["ctl01"]["qcur"] = 1
    shows = []

    def sessions_end(fake):
        shows.append(1)
        if len(shows) == 3:
            fake.servers["keystone"]["ctl01"]["qcur"] = 0
        if len(shows) == 5:
            fake.servers["nova"]["ctl01"]["scur"] = 0
    spy.on_show = sessions_end
    out = haproxy_admin.drain("ctl01", timeout=10, poll=0.05)
    assert sorted(out["backends"]) == ["keystone", "nova", "placement"]
    assert out["forced"] == []
    assert all(info["status"] == "MAINT" for info in out["backends"].values())
    assert out["backends"]["nova"]["sessions"] == 2
    assert out["backends"]["nova"]["seconds"] >= out["backends"]["placement"]["seconds"]
    assert spy.commands[:2] == ["show stat", "show cli level"]
    sets = spy.sets
    assert sets[:3] == [f"set server {be}/ctl01 state drain" for be in ("keystone", "nova", "placement")]
    # maint only after that backend's sessions ended: nova last
    assert sets[3:] == ["set server placement/ctl01 state maint",
                        "set server keystone/ctl01 state maint",
                        "set server nova/ctl01 state maint"]
    assert spy.servers["nova"]["ctl02"]["status"] == "UP"
    # again: already in maintenance everywhere, nothing sent but reads
    before = len(sets)
    again = haproxy_admin.drain("ctl01")
    assert not any(info["changed"] for info in again["backends"].values())
    assert len(spy.sets) == before


def test_drain_timeout_names_the_backend_and_leaves_state(spy):
    spy.servers["nova"]["ctl01"]["scur"] = 1
    with pytest.raises(haproxy_admin.DrainTimeout) as err:
        haproxy_admin.drain("ctl01", timeout=0.3, poll=0.05)
    text = str(err.value)
    assert "backend(s) nova still hold sessions (nova: 1 current, 0 queued)" in text
    assert "already drained: keystone (MAINT), placement (MAINT)" in text
    assert err.value.holding == {"nova": {"scur": 1, "qcur": 0}}
    assert spy.servers["nova"]["ctl01"]["status"] == "DRAIN"
    assert "set server nova/ctl01 state maint" not in spy.sets


def test_drain_timeout_can_force_maint(spy):
    spy.servers["nova"]["ctl01"]["scur"] = 1
    out = haproxy_admin.drain("ctl01", backends=["nova"], timeout=0.2, poll=0.05,
                              on_timeout="maint")
    assert out["forced"] == ["nova"]
    assert out["backends"]["nova"]["cut"] == {"scur": 1, "qcur": 0}
    assert spy.servers["nova"]["ctl01"]["status"] == "MAINT"
    assert spy.servers["keystone"]["ctl01"]["status"] == "UP"


def test_drain_rejects_bad_on_timeout(spy):
    with pytest.raises(haproxy_admin.HAProxyError, match="on_timeout"):
        haproxy_admin.drain("ctl01", on_timeout="kill")
    assert spy.connections == 0


def test_ready_waits_through_up_1_2(spy):
    for servers in spy.servers.values():
        servers["ctl01"]["status"] = "MAINT"
    spy.servers["placement"]["ctl01"]["status"] = "UP"
    spy.after_ready = ["UP 1/2", "UP 1/2", "UP"]
    spy.on_show = FakeHAProxy.advance
    out = haproxy_admin.ready("ctl01", timeout=5, poll=0.05)
    assert {be: info["status"] for be, info in out["backends"].items()} == {
        "keystone": "UP", "nova": "UP", "placement": "UP"}
    assert out["backends"]["placement"]["changed"] is False
    assert spy.sets == ["set server keystone/ctl01 state ready",
                        "set server nova/ctl01 state ready"]


def test_ready_timeout_names_backend_and_check(spy):
    spy.servers["nova"]["ctl01"].update(status="MAINT", check_desc="Layer4 connection problem")
    spy.after_ready = ["DOWN"]
    with pytest.raises(haproxy_admin.ReadyTimeout) as err:
        haproxy_admin.ready("ctl01", timeout=0.3, poll=0.05)
    assert "not UP after 0.3s on backend(s) nova (nova: DOWN (Layer4 connection problem))" in str(err.value)


# -- states --------------------------------------------------------------------------------

def test_state_drained_test_mode_changes_nothing(spy):
    haproxy_server.__opts__["test"] = True
    try:
        ret = haproxy_server.drained("ctl01")
    finally:
        haproxy_server.__opts__["test"] = False
    assert ret["result"] is None
    assert ret["comment"].startswith("Would drain ctl01 on keystone, nova, placement")
    assert ret["changes"] == {"old": {"keystone": "UP", "nova": "UP", "placement": "UP"},
                              "new": {"keystone": "MAINT", "nova": "MAINT", "placement": "MAINT"}}
    assert spy.sets == []


def test_state_drained_acts_then_is_idempotent(spy):
    ret = haproxy_server.drained("ctl01", backends=["nova", "keystone"])
    assert ret["result"] is True, ret
    assert ret["changes"] == {"old": {"keystone": "UP", "nova": "UP"},
                              "new": {"keystone": "MAINT", "nova": "MAINT"}}
    assert ret["comment"].startswith("Drained ctl01 and put it in maintenance: keystone")
    assert spy.servers["placement"]["ctl01"]["status"] == "UP"
    sets = len(spy.sets)
    again = haproxy_server.drained("ctl01", backends=["nova", "keystone"])
    assert again["result"] is True and again["changes"] == {}
    assert "already in maintenance" in again["comment"]
    assert len(spy.sets) == sets


def test_state_drained_reports_a_timeout_as_failure(spy):
    spy.servers["nova"]["ctl01"]["scur"] = 1
    ret = haproxy_server.drained("ctl01", timeout=0.2, poll=0.05)
    assert ret["result"] is False
    assert "nova still hold sessions" in ret["comment"]
    assert ret["changes"]["new"] == {"keystone": "MAINT", "nova": "DRAIN", "placement": "MAINT"}


def test_state_errors_are_failures_not_tracebacks(spy):
    ret = haproxy_server.drained("ctl01;shutdown")
    assert ret["result"] is False and "refused server" in ret["comment"]
    ret = haproxy_server.ready("ctl07")
    assert ret["result"] is False and "in no haproxy backend" in ret["comment"]
    assert spy.sets == []


def test_state_ready_test_mode_act_and_idempotent(spy):
    spy.servers["nova"]["ctl01"]["status"] = "MAINT"
    spy.on_show = FakeHAProxy.advance
    haproxy_server.__opts__["test"] = True
    try:
        ret = haproxy_server.ready("ctl01")
    finally:
        haproxy_server.__opts__["test"] = False
    assert ret["result"] is None and ret["comment"] == "Would set ctl01 ready on nova and wait for UP"
    assert ret["changes"] == {"old": {"nova": "MAINT"}, "new": {"nova": "UP"}}
    assert spy.sets == []
    ret = haproxy_server.ready("ctl01")
    assert ret["result"] is True, ret
    assert ret["changes"] == {"old": {"nova": "MAINT"}, "new": {"nova": "UP"}}
    again = haproxy_server.ready("ctl01")
    assert again["result"] is True and again["changes"] == {}
    assert spy.sets == ["set server nova/ctl01 state ready"]


def test_every_public_state_and_module_function_is_documented():
    import inspect
    for name, func in inspect.getmembers(haproxy_server, inspect.isfunction):
        if not name.startswith("_") and func.__module__ == haproxy_server.__name__:
            assert func.__doc__, name


def test_virtual():
    assert haproxy_admin.__virtual__() == "haproxy_admin"
    assert haproxy_server.__virtual__() == "haproxy_server"


def test_every_public_function_has_a_cli_example():
    import inspect
    for name, func in inspect.getmembers(haproxy_admin, inspect.isfunction):
        if not name.startswith("_") and func.__module__ == haproxy_admin.__name__:
            assert "CLI Example:" in (func.__doc__ or ""), name


def test_draining_the_last_server_up_of_a_backend_is_refused_unless_allowed(spy):
    spy.servers["nova"]["ctl02"]["status"] = "MAINT"
    spy.servers["keystone"]["ctl02"]["status"] = "DOWN"
    with pytest.raises(haproxy_admin.LastServer) as err:
        haproxy_admin.drain("ctl01", timeout=5, poll=0.05)
    assert "ctl01 is the last server UP in backend(s) keystone, nova" in str(err.value)
    assert "allow_last=True" in str(err.value) and spy.sets == []
    out = haproxy_admin.drain("ctl01", timeout=5, poll=0.05, allow_last="true")
    assert sorted(out["backends"]) == ["keystone", "nova", "placement"]
    with pytest.raises(haproxy_admin.HAProxyError, match="allow_last must be true or false"):
        haproxy_admin.drain("ctl01", allow_last="perhaps")
