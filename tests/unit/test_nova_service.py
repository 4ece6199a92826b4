"""nova_service against a fake keystone + compute API on a real local HTTP server (services
with UUID ids as microversion 2.53 gives them, PUT /os-services/{uuid}, servers with task
states, migrations; keystone from tests/unit/fake_openstack.py) and a fake cell database
for the service versions."""
import datetime
import inspect
import json
import logging
import threading
import time
import urllib.parse

import pytest
from salt.exceptions import CommandExecutionError

from tests.loader import load
from tests.unit.fake_openstack import PASSWORD, TOKEN, FakeCloud

nova = load("modules", "nova_service")
PILLAR = {}
DB_PASSWORD = "db-s3cret-Pa55"
UUIDS = {"cmp01": "8f7c2a52-0000-4000-8000-000000000001",
         "cmp02": "8f7c2a52-0000-4000-8000-000000000002"}


class FakeNova(FakeCloud):
    """fake_openstack's keystone (token + catalog) with the compute API calls nova_service
    makes: services with UUID ids (microversion 2.53), PUT /os-services/{uuid}, servers with
    task states and paging, migrations."""

    def __init__(self):
        self.calls = []  # (method, path, query, microversion header)
        self.services = {host: {"id": uuid, "binary": "nova-compute", "host": host,
                                "zone": "nova", "status": "enabled", "state": "up",
                                "disabled_reason": None, "forced_down": False,
                                "updated_at": "2026-01-31T12:00:00.000000"}
                         for host, uuid in UUIDS.items()}
        self.servers = [
            {"id": f"s{i}", "name": f"vm{i}", "status": "ACTIVE",
             "OS-EXT-SRV-ATTR:host": host, "OS-EXT-STS:task_state": None}
            for i, host in ((1, "cmp01"), (2, "cmp01"), (3, "cmp02"))]
        self.migrations = []
        self.page = 1000
        self.busy = 0  # answer the next so many compute requests 503 (haproxy, no backend up)
        super().__init__()

    def _handler(self):
        fake = self

        class Handler(super()._handler()):
            def _start(self, method):
                url = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(url.query))
                fake.calls.append((method, url.path, query,
                                   self.headers.get("OpenStack-API-Version")))
                if fake.busy and url.path.startswith("/compute/"):
                    fake.busy -= 1
                    return "busy", query
                return url.path, query

            def do_GET(self):
                path, query = self._start("GET")
                if path == "busy":
                    return self._send(503, {"message": "No server is available"})
                if self.headers.get("X-Auth-Token") != TOKEN:
                    return self._send(401, {"error": {"message": "no token"}})
                if path == "/compute/v2.1/os-services":
                    found = [s for s in fake.services.values()
                             if query.get("binary") in (None, s["binary"])
                             and query.get("host") in (None, s["host"])]
                    return self._send(200, {"services": found + [
                        {"id": "c0", "binary": "nova-conductor", "host": "ctl01",
                         "status": "enabled", "state": "up"}]})
                if path == "/compute/v2.1/servers/detail":
                    found = [s for s in fake.servers
                             if query.get("host") in (None, s["OS-EXT-SRV-ATTR:host"])]
                    if "marker" in query:
                        ids = [s["id"] for s in found]
                        found = found[ids.index(query["marker"]) + 1:]
                    page = found[:min(int(query.get("limit", 1000)), fake.page)]
                    body = {"servers": page}
                    if len(found) > len(page):
                        body["servers_links"] = [{"rel": "next", "href": "http://elsewhere/"}]
                    return self._send(200, body)
                if path == "/compute/v2.1/os-migrations":
                    return self._send(200, {"migrations": [
                        m for m in fake.migrations
                        if query.get("host") in (m["source_compute"], m["dest_compute"])]})
                self._send(404, {"itemNotFound": {"code": 404, "message": f"no {path}"}})

            def do_PUT(self):
                path, _ = self._start("PUT")
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                if path == "busy":
                    return self._send(503, {"message": "No server is available"})
                fake.bodies.append(raw)
                body = json.loads(raw)
                uuid = path.rsplit("/", 1)[-1]
                found = [s for s in fake.services.values() if s["id"] == uuid]
                if not path.startswith("/compute/v2.1/os-services/") or not found:
                    return self._send(404, {"itemNotFound": {"message": f"no {uuid}"}})
                service = found[0]
                service["status"] = body["status"]
                service["disabled_reason"] = body.get("disabled_reason") \
                    if body["status"] == "disabled" else None
                self._send(200, {"service": service})

        return Handler


class FakeDB:
    """What nova_service reads from the cell DB: SELECT host, version, updated_at ..."""

    def __init__(self):
        self.rows = {"cmp01": 67, "cmp02": 67}
        self.queries = []
        self.connects = []
        self.refuse = False

    def connect(self, **kwargs):
        self.connects.append(kwargs)
        if self.refuse:
            raise nova.pymysql.OperationalError(2002, "Can't connect to local server")
        return self

    def cursor(self):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def execute(self, sql, args=()):
        self.queries.append((sql, args))

    def fetchall(self):
        return [(h, v, datetime.datetime(2026, 1, 31, 12)) for h, v in self.rows.items()]

    def close(self):
        pass


@pytest.fixture
def cloud():
    fake = FakeNova()
    PILLAR.clear()
    PILLAR["leapfrog"] = {"verify": {"auth_url": f"{fake.base}/identity", "username": "admin",
                                     "password": PASSWORD, "project_name": "admin",
                                     "region_name": "RegionOne", "timeout": 2}}
    yield fake
    fake.close()
    PILLAR.clear()


@pytest.fixture
def db(cloud, monkeypatch):
    fake = FakeDB()
    monkeypatch.setattr(nova.pymysql, "connect", fake.connect)
    PILLAR["leapfrog"].update(database={"socket": "/run/mysqld.sock", "user": "root",
                                        "password": DB_PASSWORD},
                              nova={"database": "lfos_nova"})
    return fake


@pytest.fixture
def configure_loader_modules():
    return {nova: {"__pillar__": PILLAR}}


def no_secret(value, caplog):
    text = json.dumps(value, default=str) + caplog.text
    for secret in (PASSWORD, TOKEN, DB_PASSWORD):
        assert secret not in text


def test_list_shows_compute_services_with_microversion_2_53(cloud, caplog):
    caplog.set_level(logging.DEBUG)
    rows = nova.list_()
    assert [(r["host"], r["status"], r["state"], r["disabled_reason"], r["version"])
            for r in rows] == [("cmp01", "enabled", "up", None, None),
                               ("cmp02", "enabled", "up", None, None)]
    assert rows[0]["id"] == UUIDS["cmp01"]
    gets = [r for r in cloud.calls if r[0] == "GET"]
    assert gets == [("GET", "/compute/v2.1/os-services", {"binary": "nova-compute"},
                     "compute 2.53")]
    assert nova.list_(host="cmp02")[0]["host"] == "cmp02"
    no_secret(rows, caplog)


def test_list_reads_versions_from_the_cell_database(cloud, db):
    db.rows["cmp02"] = 68
    assert {r["host"]: r["version"] for r in nova.list_()} == {"cmp01": 67, "cmp02": 68}
    sql, args = db.queries[0]
    assert "FROM `lfos_nova`.services" in sql and args == ("nova-compute",)
    assert db.connects[0]["unix_socket"] == "/run/mysqld.sock"
    PILLAR["leapfrog"]["nova"] = {"cell_databases": ["lfos_nova", "lfos_cell2"]}
    nova.list_()
    assert [q[0].split("FROM ")[1].split(".")[0] for q in db.queries[1:]] == \
        ["`lfos_nova`", "`lfos_cell2`"]


def test_unknown_host_names_the_known_ones(cloud):
    for call in (lambda: nova.list_(host="cmp9"), lambda: nova.disable("cmp9", "x"),
                 lambda: nova.enable("cmp9"), lambda: nova.busy("cmp9"),
                 lambda: nova.servers(host="cmp9"), lambda: nova.wait_up("cmp9", timeout=5)):
        with pytest.raises(CommandExecutionError) as err:
            call()
        assert str(err.value).startswith(
            "no nova-compute service on host 'cmp9'; known hosts: cmp01, cmp02")
    assert not any(r[0] == "PUT" for r in cloud.calls)


def test_disable_and_enable_are_idempotent_with_changes(cloud, caplog):
    out = nova.disable("cmp01", "leapfrog: upgrade to 2025.1")
    assert out["changes"] == {
        "old": {"status": "enabled", "disabled_reason": None},
        "new": {"status": "disabled", "disabled_reason": "leapfrog: upgrade to 2025.1"}}
    assert out["status"] == "disabled"
    put = [r for r in cloud.calls if r[0] == "PUT"]
    assert put == [("PUT", f"/compute/v2.1/os-services/{UUIDS['cmp01']}", {}, "compute 2.53")]
    assert json.loads(cloud.bodies[-1]) == {"status": "disabled",
                                            "disabled_reason": "leapfrog: upgrade to 2025.1"}
    again = nova.disable("cmp01", "leapfrog: upgrade to 2025.1")
    assert again["changes"] == {} and again["comment"] == "nova-compute on cmp01 is already disabled"
    assert len([r for r in cloud.calls if r[0] == "PUT"]) == 1

    out = nova.enable("cmp01")
    assert out["changes"] == {"old": {"status": "disabled",
                                      "disabled_reason": "leapfrog: upgrade to 2025.1"},
                              "new": {"status": "enabled", "disabled_reason": None}}
    assert json.loads(cloud.bodies[-1]) == {"status": "enabled"}
    assert nova.enable("cmp01")["changes"] == {}
    assert len([r for r in cloud.calls if r[0] == "PUT"]) == 2
    no_secret(out, caplog)


def test_an_operators_disable_is_kept(cloud):
    cloud.services["cmp02"].update(status="disabled", disabled_reason="bad DIMM")
    out = nova.disable("cmp02", "leapfrog: upgrade")
    assert out["changes"] == {} and out["disabled_reason"] == "bad DIMM"
    assert "left as it is" in out["comment"]
    out = nova.enable("cmp02", reason="leapfrog: upgrade")
    assert out["changes"] == {} and out["status"] == "disabled"
    assert out["comment"].startswith("nova-compute on cmp02 was disabled for 'bad DIMM'")
    assert not any(r[0] == "PUT" for r in cloud.calls)
    assert nova.enable("cmp02")["changes"]["new"]["status"] == "enabled"


def test_disable_needs_a_reason(cloud):
    with pytest.raises(CommandExecutionError, match="needs a reason"):
        nova.disable("cmp01", " ")
    with pytest.raises(CommandExecutionError, match="at most 255"):
        nova.disable("cmp01", "x" * 256)


def test_busy_lists_task_states_and_migrations_in_progress(cloud):
    assert nova.busy("cmp01") == []
    cloud.servers[1]["OS-EXT-STS:task_state"] = "rebooting"
    cloud.servers[2]["OS-EXT-STS:task_state"] = "migrating"  # on cmp02
    cloud.migrations = [
        {"id": 7, "instance_uuid": "s3", "migration_type": "live-migration",
         "status": "running", "source_compute": "cmp02", "dest_compute": "cmp01"},
        {"id": 6, "instance_uuid": "s1", "migration_type": "resize",
         "status": "confirmed", "source_compute": "cmp01", "dest_compute": "cmp02"}]
    assert nova.busy("cmp01") == [
        {"kind": "server", "id": "s2", "name": "vm2", "status": "ACTIVE",
         "task_state": "rebooting"},
        {"kind": "migration", "id": 7, "server": "s3", "type": "live-migration",
         "status": "running", "source": "cmp02", "dest": "cmp01"}]
    query = [r[2] for r in cloud.calls if r[1] == "/compute/v2.1/servers/detail"][-1]
    assert query == {"all_tenants": "1", "limit": "1000", "host": "cmp01"}


def test_wait_idle_waits_and_names_what_is_still_busy(cloud):
    cloud.servers[0]["OS-EXT-STS:task_state"] = "spawning"
    threading.Timer(0.5, cloud.servers[0].update, kwargs={"OS-EXT-STS:task_state": None}).start()
    out = nova.wait_idle("cmp01", timeout=10, interval=0.2)
    assert out["idle"] is True and out["attempts"] >= 2
    cloud.servers[1]["OS-EXT-STS:task_state"] = "resize_migrating"
    started = time.monotonic()
    with pytest.raises(CommandExecutionError) as err:
        nova.wait_idle("cmp01", timeout=0.6, interval=0.2)
    assert time.monotonic() - started < 3
    assert str(err.value).startswith(
        "cmp01 still busy after 0s: server vm2 (s2) ACTIVE/resize_migrating")


def test_servers_are_paged_and_filtered(cloud):
    cloud.page = 2
    rows = nova.servers()
    assert [(r["name"], r["status"], r["host"]) for r in rows] == [
        ("vm1", "ACTIVE", "cmp01"), ("vm2", "ACTIVE", "cmp01"), ("vm3", "ACTIVE", "cmp02")]
    markers = [r[2].get("marker") for r in cloud.calls if r[1].endswith("servers/detail")]
    assert markers == [None, "s2"]
    assert [r["id"] for r in nova.servers(host="cmp02")] == ["s3"]


def test_wait_up_checks_state_version_and_heartbeat(cloud, db):
    out = nova.wait_up("cmp01", version="2024.1", timeout=5)
    assert out["state"] == "up" and out["version"] == 67 and out["attempts"] == 1
    db.rows["cmp01"] = 68
    assert nova.wait_up("cmp01", version=68, timeout=5, since="2026-01-31T11:59:59Z")["version"] == 68

    cloud.services["cmp01"]["state"] = "down"
    threading.Timer(0.5, cloud.services["cmp01"].update, kwargs={"state": "up"}).start()
    assert nova.wait_up("cmp01", version="2025.1", timeout=10, interval=0.2)["attempts"] >= 2


def test_wait_up_timeout_names_host_and_versions_seen(cloud, db):
    db.rows["cmp01"] = 67
    threading.Timer(0.3, db.rows.update, kwargs={"cmp01": 68}).start()
    started = time.monotonic()
    with pytest.raises(CommandExecutionError) as err:
        nova.wait_up("cmp01", version="2026.1", timeout=1, interval=0.2,
                     since=datetime.datetime(2026, 1, 31, 12))
    assert time.monotonic() - started < 4
    assert str(err.value) == (
        "nova-compute on cmp01 not up with service version 72 (release 2026.1) after 1s: "
        "service version 68, want 72; last heartbeat 2026-01-31T12:00:00.000000 not after "
        "2026-01-31T12:00:00; service versions seen: 67, 68")


def test_wait_up_errors_come_at_once(cloud, db):
    with pytest.raises(CommandExecutionError, match="neither a nova service version"):
        nova.wait_up("cmp01", version="2023.2", timeout=60)
    with pytest.raises(CommandExecutionError, match="since must be a UTC time"):
        nova.wait_up("cmp01", since="yesterday", timeout=60)
    del PILLAR["leapfrog"]["database"]
    started = time.monotonic()
    with pytest.raises(CommandExecutionError) as err:
        nova.wait_up("cmp01", version=68, timeout=60)
    assert time.monotonic() - started < 2
    assert "the compute API does not show nova service versions" in str(err.value)
    assert "set leapfrog:database" in str(err.value)
    # without version, no database needed
    assert nova.wait_up("cmp01", timeout=5)["version"] is None


def test_database_unreachable_is_clear_and_secret_free(cloud, db, caplog):
    db.refuse = True
    with pytest.raises(CommandExecutionError) as err:
        nova.list_()
    assert str(err.value).startswith("cannot read nova service versions: database at "
                                     "/run/mysqld.sock: Can't connect to local server")
    no_secret(str(err.value), caplog)


def test_credentials_missing_wrong_or_keystone_down(cloud, caplog):
    with pytest.raises(CommandExecutionError, match="keystone refused the credentials of admin"):
        nova.list_(password="wrong")
    with pytest.raises(CommandExecutionError, match="unknown argument.s. passwd"):
        nova.list_(passwd="x")
    assert nova.list_(timeout_request=5, __pub_jid="1")  # Salt's own kwargs are ignored
    cloud.close()
    with pytest.raises(CommandExecutionError, match=f"keystone: connection refused by 127.0.0.1:{cloud.port}"):
        nova.busy("cmp01")
    PILLAR.clear()
    with pytest.raises(CommandExecutionError, match="nova_service needs auth_url, username, "
                                                    "password, project_name: set them under "
                                                    "the pillar key leapfrog:verify"):
        nova.list_()
    no_secret(caplog.text, caplog)


def test_virtual_alias_and_docs():
    assert nova.__virtual__() == "nova_service"
    assert nova.__func_alias__ == {"list_": "list"}
    for name, func in inspect.getmembers(nova, inspect.isfunction):
        if not name.startswith("_") and func.__module__ == nova.__name__:
            assert "CLI Example:" in (func.__doc__ or ""), name


def test_an_overloaded_api_is_asked_again_then_named(cloud, monkeypatch):
    monkeypatch.setattr(nova, "BUSY_PAUSES", (0, 0, 0))
    cloud.busy = 2
    assert nova.disable("cmp01", "leapfrog: busy API")["status"] == "disabled"
    cloud.busy = 4
    with pytest.raises(nova.NovaServiceError, match="compute API: HTTP 503"):
        nova.list_()
