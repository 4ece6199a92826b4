"""
One compute's nova-compute service through the compute API: the building blocks of the data
plane upgrade (disable with a reason, wait until no operation is in progress, wait until the
restarted service reports up with the new release's service version, enable).

Run it on a minion that has API credentials (a controller): keystone v3 password login from
pillar ``leapfrog:verify``, exactly as ``openstack_verify`` (the password and the token are
never logged or returned). Requests use compute API microversion 2.53 (Pike and later: the
service's UUID in ``PUT /os-services/{id}``, ``disabled_reason``, ``forced_down``).

Service versions: the compute API does not show a service's version in any microversion
(``GET /os-services`` gives host, status, state, updated_at, disabled_reason, forced_down;
``/os-hypervisors`` gives the driver's hypervisor_version). The version nova itself compares
(``services.version``, nova/objects/service.py ``SERVICE_VERSION``: 67 for 2024.1, 68 for
2025.1, 72 for 2026.1) is read from the cell database's ``services`` table, the same row
nova-conductor checks, with the database settings the controllers' modules already use::

    leapfrog:
      verify: {auth_url: ..., username: ..., password: ..., project_name: ...}  # the API
      database: {host: ..., port: ..., socket: ..., user: ..., password: ...}   # the versions
      nova:
        database: nova                  # the cell database (default nova)
        cell_databases: [nova, nova_c2] # optional: every cell's database

Without ``leapfrog:database`` ``list`` shows ``version: None`` and ``wait_up(version=...)``
refuses with what to set. Connection arguments (``auth_url``, ``username``, ``password``,
``project_name``, ``user_domain_name``, ``project_domain_name``, ``region_name``,
``interface``, ``timeout_request``, ``verify_tls``) may be given to every function; they win
over the pillar.
"""
import datetime
import logging
import re
import time

import salt.utils.data

import leapfrog_errors
import leapfrog_keystone
import leapfrog_parse
import leapfrog_plan

try:
    import pymysql

    HAS_PYMYSQL = True
except ImportError:  # pragma: no cover - depends on the minion
    HAS_PYMYSQL = False

log = logging.getLogger(__name__)

__virtualname__ = "nova_service"
__func_alias__ = {"list_": "list"}

BINARY = "nova-compute"
MICROVERSION = "2.53"
# an idempotent call answered 503 (the API overloaded, or haproxy with no backend up for a
# moment) is sent again after each of these pauses, then the 503 is the error
BUSY_PAUSES = (1, 2, 4)
PAGE = 1000
# nova's own "in progress" (migration_get_in_progress_by_host_and_node): every status but these
MIGRATION_DONE = ("confirmed", "reverted", "error", "failed", "completed", "cancelled", "done")


class NovaServiceError(leapfrog_errors.LeapfrogError):
    """A compute service could not be read or changed, or did not reach the asked state."""


def __virtual__():
    if not leapfrog_keystone.HAS_REQUESTS:
        return (False, "nova_service needs the python 'requests' library")
    return __virtualname__


# -- settings ----------------------------------------------------------------------------------

def _pillar(key, default=None):
    """From ``__pillar__`` itself (Salt 3008's ``pillar.get`` masks values inside modules)."""
    value = salt.utils.data.traverse_dict_and_list(globals().get("__pillar__") or {}, key, None)
    return default if value is None else value


def _conf(connection):
    connection = {k: v for k, v in connection.items() if not k.startswith("__")}
    allowed = set(leapfrog_keystone.KEYS) - {"timeout"} | {"timeout_request"}
    unknown = sorted(set(connection) - allowed)
    if unknown:
        raise NovaServiceError(
            f"nova_service: unknown argument(s) {', '.join(unknown)}; connection arguments "
            f"are {', '.join(sorted(allowed))}")
    if "timeout_request" in connection:
        connection["timeout"] = connection.pop("timeout_request")
    return leapfrog_keystone.settings(globals().get("__pillar__") or {}, connection,
                                      NovaServiceError, __virtualname__)


def _seconds(value, name):
    return leapfrog_parse.seconds(value, name, error=NovaServiceError)


# -- the compute API ---------------------------------------------------------------------------

class _Compute:
    """The compute API with one keystone session (re-authenticated once on a 401)."""

    def __init__(self, conf):
        self.session = leapfrog_keystone.Session(
            conf, agent="leapfrog-nova-service",
            headers={"OpenStack-API-Version": f"compute {MICROVERSION}"})
        self.base = None

    def __enter__(self):
        try:
            self.session.authenticate()
            found = self.session.endpoint(("compute",))
        except leapfrog_keystone.RequestFailed as exc:
            self.session.close()
            raise NovaServiceError(f"{exc.args[0]}: fix the credentials in pillar "
                                   f"{leapfrog_keystone.PILLAR_KEY}") from None
        if found is None:
            self.session.close()
            raise NovaServiceError(
                "keystone's catalog has no compute service: register nova's endpoint, or "
                f"fix region_name/interface in pillar {leapfrog_keystone.PILLAR_KEY}")
        self.base = found[1]
        return self

    def __exit__(self, *exc):
        self.session.close()

    def call(self, method, path, params=None, json=None):
        url = leapfrog_keystone.join(self.base, path)
        renewed, busy = False, 0
        while True:
            try:
                return self.session.request(method, url, params=params, json=json,
                                            expect=(200, 201, 202, 204))
            except leapfrog_keystone.RequestFailed as exc:
                reason = exc.args[0]
                if not renewed and reason.startswith("HTTP 401"):
                    renewed = True
                    try:  # the token expired during a long wait
                        self.session.authenticate()
                        continue
                    except leapfrog_keystone.RequestFailed as again:
                        reason = again.args[0]
                elif (reason.startswith("HTTP 503") and method in ("GET", "PUT")
                      and busy < len(BUSY_PAUSES)):
                    time.sleep(BUSY_PAUSES[busy])  # an overloaded API: the same call again
                    busy += 1
                    continue
                raise NovaServiceError(f"compute API: {reason}") from None

    def services(self):
        found = self.call("GET", "os-services", params={"binary": BINARY}) or {}
        return [s for s in found.get("services", []) if s.get("binary") == BINARY]

    def service(self, host):
        """The nova-compute service of ``host``; an unknown host names the known ones."""
        services = self.services()
        for service in services:
            if service.get("host") == host:
                return service
        known = ", ".join(sorted(str(s.get("host")) for s in services)) or "none"
        raise NovaServiceError(
            f"no nova-compute service on host {host!r}; known hosts: {known} (use the name "
            "`openstack compute service list` shows, which is nova.conf [DEFAULT] host)")

    def servers(self, host=None, deleted=False, changes_since=None):
        params = {"all_tenants": "1", "limit": PAGE}
        if host:
            params["host"] = host
        if deleted:  # admin only: the servers deleted (since changes_since)
            params["deleted"] = "true"
        if changes_since:
            params["changes-since"] = changes_since
        out = []
        while True:
            found = self.call("GET", "servers/detail", params=params) or {}
            page = found.get("servers", [])
            out.extend(page)
            nxt = [link for link in found.get("servers_links") or [] if link.get("rel") == "next"]
            if not page or not nxt:
                return out
            params = dict(params, marker=page[-1]["id"])

    def migrations(self, host):
        found = self.call("GET", "os-migrations", params={"host": host}) or {}
        return found.get("migrations", [])


def _row(service, versions):
    return {"host": service.get("host"), "status": service.get("status"),
            "state": service.get("state"), "disabled_reason": service.get("disabled_reason"),
            "forced_down": service.get("forced_down"), "zone": service.get("zone"),
            "updated_at": service.get("updated_at"), "id": service.get("id"),
            "version": (versions.get(service.get("host")) or {}).get("version")
            if versions is not None else None}


# -- service versions from the cell database -----------------------------------------------------

def _db_settings():
    db = dict(_pillar("leapfrog:database", {}) or {})
    if not (db.get("socket") or db.get("host")):
        return None
    cells = _pillar("leapfrog:nova:cell_databases") or [_pillar("leapfrog:nova:database") or "nova"]
    if isinstance(cells, str):
        cells = [c.strip() for c in cells.split(",") if c.strip()]
    db["cells"] = [str(c) for c in cells]
    return db


def _versions(required=False, binary=BINARY):
    """``{host: {"version", "updated_at"}}`` of ``binary``'s rows in every cell database, or
    ``None`` when no database is configured (``required`` raises instead)."""
    db = _db_settings()
    fix = ("set leapfrog:database (host or socket, user, password) and leapfrog:nova:database "
           "(the cell database) in this minion's pillar")
    if db is None:
        if required:
            raise NovaServiceError(
                "the compute API does not show nova service versions; nova_service reads them "
                f"from the cell database's services table: {fix}")
        return None
    if not HAS_PYMYSQL:
        raise NovaServiceError("reading nova service versions needs PyMySQL on this minion: "
                               "pip install PyMySQL")
    kwargs = {"user": str(db.get("user") or "root"), "password": str(db.get("password") or ""),
              "connect_timeout": 10, "charset": "utf8mb4"}
    if db.get("socket"):
        kwargs["unix_socket"], where = db["socket"], db["socket"]
    else:
        kwargs["host"], kwargs["port"] = db["host"], int(db.get("port") or 3306)
        where = f"{db['host']}:{kwargs['port']}"
    out = {}
    try:
        conn = pymysql.connect(**kwargs)
    except pymysql.MySQLError as exc:
        reason = str(exc.args[1] if len(exc.args) > 1 else exc).replace(kwargs["password"] or "\0", "****")
        raise NovaServiceError(f"cannot read nova service versions: database at {where}: "
                               f"{reason}: {fix}") from None
    try:
        with conn.cursor() as cur:
            for cell in db["cells"]:
                try:
                    cur.execute(f"SELECT host, version, updated_at FROM `{cell.replace('`', '')}`"
                                ".services WHERE `binary`=%s AND deleted=0", (binary,))
                except pymysql.MySQLError as exc:
                    raise NovaServiceError(
                        f"cannot read nova service versions from database {cell} at {where}: "
                        f"{exc.args[1] if len(exc.args) > 1 else exc}: {fix}") from None
                for host, version, updated in cur.fetchall():
                    out[host] = {"version": version, "updated_at": updated}
    finally:
        conn.close()
    return out


def _wanted_version(version):
    """``(service version, label)`` from a number or a release name (``2025.1``)."""
    if version is None:
        return None, None
    text = str(version).strip()
    if text.isdigit():
        return int(text), f"service version {int(text)}"
    known = {r: v for r, (v, _) in leapfrog_plan.NOVA.items() if v is not None}
    if text in known:
        return known[text], f"service version {known[text]} (release {text})"
    raise NovaServiceError(
        f"version {version!r} is neither a nova service version (a number) nor a release "
        f"whose service version leapfrog knows ({', '.join(f'{r}={v}' for r, v in known.items())})")


def _utc(value, name):
    """A naive UTC datetime from a datetime or an ISO 8601 text (what nova stores and shows)."""
    if value in (None, ""):
        return None
    if isinstance(value, datetime.datetime):
        stamp = value
    else:
        try:
            stamp = datetime.datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
        except ValueError:
            raise NovaServiceError(f"{name} must be a UTC time in ISO 8601 "
                                   f"(2026-01-31T12:00:00), got {value!r}") from None
    if stamp.tzinfo is not None:
        stamp = stamp.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return stamp


# -- public functions ----------------------------------------------------------------------------

def list_(host=None, **connection):
    """
    The nova-compute services (all, or ``host``'s): host, status (enabled/disabled), state
    (up/down), disabled_reason, forced_down, zone, updated_at (last heartbeat, UTC), id (the
    service UUID) and version (nova service version, read from the cell database when
    pillar ``leapfrog:database`` is set, and then a database it cannot read is an error;
    ``None`` without it: the API does not show it). An unknown ``host`` raises an error
    listing the known hosts.

    CLI Example:

    .. code-block:: bash

        salt ctl01 nova_service.list
        salt ctl01 nova_service.list host=cmp01
    """
    with _Compute(_conf(connection)) as api:
        services = [api.service(host)] if host else api.services()
    versions = _versions()
    return sorted((_row(s, versions) for s in services), key=lambda r: str(r["host"]))


def _set_status(host, status, reason, connection):
    with _Compute(_conf(connection)) as api:
        service = api.service(host)
        old = {"status": service.get("status"), "disabled_reason": service.get("disabled_reason")}
        out = {"host": host, "changes": {}}
        if old["status"] == status and (status == "enabled" or old["disabled_reason"] == reason):
            out.update(old, comment=f"nova-compute on {host} is already {status}")
            return out
        if status == "disabled" and old["status"] == "disabled":
            # disabled by someone else for another reason: keep their reason
            out.update(old, comment=f"nova-compute on {host} is already disabled "
                                    f"(reason: {old['disabled_reason']!r}); left as it is")
            return out
        body = {"status": status}
        if status == "disabled":
            body["disabled_reason"] = reason
        found = (api.call("PUT", f"os-services/{service['id']}", json=body) or {}).get("service")
        if not found:
            found = api.service(host)
    new = {"status": found.get("status"), "disabled_reason": found.get("disabled_reason")}
    if new["status"] != status:
        raise NovaServiceError(f"nova-compute on {host} is still {new['status']} after the "
                               f"compute API accepted status {status}")
    out.update(new, changes={"old": old, "new": new},
               comment=f"nova-compute on {host} {status}")
    return out


def disable(host, reason, **connection):
    """
    Disable ``host``'s nova-compute service with ``reason`` (the scheduler stops placing
    servers there; running servers are untouched). Idempotent: already disabled with the
    same reason changes nothing. A service an operator disabled for another reason is left
    as it is (its reason kept; ``changes`` empty, ``comment`` says so). Returns
    ``{"host", "status", "disabled_reason", "changes": {"old", "new"} or {}, "comment"}``.

    CLI Example:

    .. code-block:: bash

        salt ctl01 nova_service.disable cmp01 reason="leapfrog: upgrade to 2025.1"
    """
    reason = str(reason or "").strip()
    if not reason:
        raise NovaServiceError("nova_service.disable needs a reason (operators read it in "
                               "`openstack compute service list --long`)")
    if len(reason) > 255:
        raise NovaServiceError(f"reason is {len(reason)} characters; nova takes at most 255")
    return _set_status(host, "disabled", reason, connection)


def enable(host, reason=None, **connection):
    """
    Enable ``host``'s nova-compute service again. Idempotent: an enabled service changes
    nothing. With ``reason``, only a service disabled with that very reason is enabled (what
    ``disable`` set); one disabled for another reason is left disabled and the ``comment``
    says why, so an upgrade never re-enables a host an operator took out. Returns
    ``{"host", "status", "disabled_reason", "changes": {"old", "new"} or {}, "comment"}``.

    CLI Example:

    .. code-block:: bash

        salt ctl01 nova_service.enable cmp01
        salt ctl01 nova_service.enable cmp01 reason="leapfrog: upgrade to 2025.1"
    """
    if reason:
        current = list_(host, **connection)[0]
        if current["status"] == "disabled" and current["disabled_reason"] != reason:
            return {"host": host, "status": "disabled",
                    "disabled_reason": current["disabled_reason"], "changes": {},
                    "comment": f"nova-compute on {host} was disabled for "
                               f"{current['disabled_reason']!r}, not {reason!r}: left disabled "
                               "(enable it without reason= to override)"}
    return _set_status(host, "enabled", None, connection)


def _busy(api, host):
    out = []
    for server in api.servers(host):
        task = server.get("OS-EXT-STS:task_state")
        if task:
            out.append({"kind": "server", "id": server.get("id"), "name": server.get("name"),
                        "status": server.get("status"), "task_state": task})
    for migration in api.migrations(host):
        if migration.get("status") not in MIGRATION_DONE:
            out.append({"kind": "migration", "id": migration.get("id"),
                        "server": migration.get("instance_uuid"),
                        "type": migration.get("migration_type"),
                        "status": migration.get("status"),
                        "source": migration.get("source_compute"),
                        "dest": migration.get("dest_compute")})
    return out


def _describe(item):
    if item["kind"] == "server":
        return f"server {item['name']} ({item['id']}) {item['status']}/{item['task_state']}"
    return (f"{item['type'] or 'migration'} {item['id']} of server {item['server']} "
            f"{item['status']} ({item['source']} -> {item['dest']})")


def busy(host, **connection):
    """
    What is in progress on ``host``: servers there with a task_state (building, rebooting,
    migrating, resizing, ...) and migrations from or to it that nova counts as in progress
    (every status but confirmed, reverted, completed, done, error, failed, cancelled; a
    resize waiting for confirmation counts). An empty list means idle.

    CLI Example:

    .. code-block:: bash

        salt ctl01 nova_service.busy cmp01
    """
    with _Compute(_conf(connection)) as api:
        api.service(host)
        return _busy(api, host)


def wait_idle(host, timeout=600, interval=5, **connection):
    """
    Wait until ``busy(host)`` is empty; returns ``{"host", "idle": True, "waited",
    "attempts"}``. On timeout the error names what is still in progress.

    CLI Example:

    .. code-block:: bash

        salt ctl01 nova_service.wait_idle cmp01 timeout=900
    """
    limit, pause = _seconds(timeout, "timeout"), max(_seconds(interval, "interval"), 0.1)
    started = time.monotonic()
    attempts = 0
    with _Compute(_conf(connection)) as api:
        api.service(host)
        while True:
            attempts += 1
            found = _busy(api, host)
            waited = round(time.monotonic() - started, 3)
            if not found:
                return {"host": host, "idle": True, "waited": waited, "attempts": attempts}
            if waited + pause > limit:
                raise NovaServiceError(
                    f"{host} still busy after {waited:.0f}s: "
                    + "; ".join(_describe(item) for item in found)
                    + " (let them finish, or raise the timeout)")
            log.info("nova_service.wait_idle: %s busy with %d operation(s)", host, len(found))
            time.sleep(pause)


def _not_ready(service, versions, host, wanted, since):
    """What keeps ``host``'s service from being ready (empty when it is)."""
    wrong = []
    if service.get("state") != "up":
        wrong.append(f"state {service.get('state')}"
                     + (" (forced down)" if service.get("forced_down") else ""))
    if wanted is not None:
        seen = (versions.get(host) or {}).get("version")
        if seen != wanted:
            wrong.append(f"service version {seen}, want {wanted}")
    if since is not None:
        beat = _utc(service.get("updated_at"), "updated_at")
        if beat is None or beat <= since:
            wrong.append(f"last heartbeat {service.get('updated_at')} not after "
                         f"{since.isoformat()}")
    return wrong


def wait_up(host, version=None, timeout=300, since=None, interval=2, **connection):
    """
    Wait until ``host``'s nova-compute service reports state up and, if asked:

    - ``version``: a nova service version (``68``) or a release (``2025.1``: its service
      version, 67 for 2024.1, 68 for 2025.1, 72 for 2026.1), read from the cell database's
      ``services`` row (the API does not show it; pillar ``leapfrog:database``). nova-compute
      writes it when it starts, so it proves the new release's process registered;
    - ``since``: a heartbeat (``updated_at``, UTC) strictly later than this time (ISO 8601):
      give the ``updated_at`` that ``list`` showed after the old process stopped, so a
      heartbeat of the new process is required (state stays "up" for service_down_time
      after a stop, so state alone proves nothing right after a restart).

    The service may be disabled meanwhile (as during an upgrade). Returns the service's row
    with ``waited`` and ``attempts``; on timeout the error names the host, what is still
    wrong and the versions seen. Transient API errors are retried until the timeout.

    CLI Example:

    .. code-block:: bash

        salt ctl01 nova_service.wait_up cmp01 version=2025.1 timeout=300
        salt ctl01 nova_service.wait_up cmp01 since=2026-01-31T12:00:00.000000
    """
    wanted, label = _wanted_version(version)
    since_utc = _utc(since, "since")
    limit, pause = _seconds(timeout, "timeout"), max(_seconds(interval, "interval"), 0.1)
    if wanted is not None:
        _versions(required=True)  # fail now, not after the timeout, when it cannot be read
    started = time.monotonic()
    attempts, seen, wrong = 0, [], []
    with _Compute(_conf(connection)) as api:
        api.service(host)  # an unknown host fails at once
        while True:
            attempts += 1
            try:
                service = api.service(host)
                versions = _versions() if wanted is not None else {}
                found = (versions.get(host) or {}).get("version")
                if found is not None and found not in seen:
                    seen.append(found)
                wrong = _not_ready(service, versions, host, wanted, since_utc)
            except NovaServiceError as exc:  # nova-api or the DB restarting: retry
                service, wrong = None, [str(exc)]
            waited = round(time.monotonic() - started, 3)
            if not wrong:
                row = _row(service, versions if wanted is not None else None)
                row.update(waited=waited, attempts=attempts)
                return row
            if waited + pause > limit:
                want = f" with {label}" if label else ""
                versions_seen = (", ".join(map(str, seen)) if seen else "none read") \
                    if wanted is not None else "not checked (no version asked)"
                raise NovaServiceError(
                    f"nova-compute on {host} not up{want} after {waited:.0f}s: "
                    f"{'; '.join(wrong)}; service versions seen: {versions_seen}")
            log.info("nova_service.wait_up: %s not ready: %s", host, "; ".join(wrong))
            time.sleep(pause)


def releases():
    """
    The releases the cloud runs, from the service versions nova records in the cell
    databases (no API call): ``computes`` maps each nova-compute host to its release,
    ``control`` is the release of the oldest nova-conductor (the control plane's), with the
    raw ``versions``. Needs pillar ``leapfrog:database``. A version leapfrog does not know
    maps to the newest known release below it.

    CLI Example:

    .. code-block:: bash

        salt ctl01 nova_service.releases
    """
    computes = _versions(required=True)
    conductors = _versions(required=True, binary="nova-conductor")
    oldest = min((row["version"] for row in conductors.values()), default=None)
    return {"control": leapfrog_plan.release_of(oldest) if oldest is not None else None,
            "computes": {host: leapfrog_plan.release_of(row["version"])
                         for host, row in sorted(computes.items())},
            "versions": {"nova-conductor": {h: r["version"] for h, r in conductors.items()},
                         "nova-compute": {h: r["version"] for h, r in computes.items()}}}


_ISO_UTC = re.compile(r"\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z\Z")


def _server_row(server):
    return {"id": server.get("id"), "name": server.get("name"), "status": server.get("status"),
            "host": server.get("OS-EXT-SRV-ATTR:host"),
            "task_state": server.get("OS-EXT-STS:task_state")}


def migrate_away(host, timeout=600, interval=2, **connection):
    """
    Live-migrate every server off ``host`` (the scheduler picks each destination; disable
    the host first so nothing lands on it again), one at a time, and wait until each is
    ACTIVE on another host with no task in progress. A server that ends in ERROR, comes
    back on ``host`` or is still moving after ``timeout`` seconds stops it, named with its
    status. A server counts as moved once nova has also closed its migration record.
    Returns ``{"host", "migrated": [{"id", "name", "to", "seconds"}], "seconds"}``.

    CLI Example:

    .. code-block:: bash

        salt ctl01 nova_service.migrate_away cmp01 timeout=600
    """
    limit, pause = _seconds(timeout, "timeout"), max(_seconds(interval, "interval"), 0.1)
    started, moved = time.monotonic(), []
    with _Compute(_conf(connection)) as api:
        api.service(host)
        for server in api.servers(host):
            begun = time.monotonic()
            api.call("POST", f"servers/{server['id']}/action",
                     json={"os-migrateLive": {"host": None, "block_migration": "auto"}})
            while True:
                try:
                    row = _server_row(api.call("GET", f"servers/{server['id']}")["server"])
                except NovaServiceError as exc:  # the API restarting: retry until the timeout
                    row = {"status": f"unknown ({exc})", "host": None, "task_state": None}
                if row["status"] == "ERROR":
                    raise NovaServiceError(f"live migration of server {server.get('name')} "
                                           f"({server['id']}) off {host} ended in ERROR")
                if row["status"] == "ACTIVE" and row["task_state"] is None and row["host"]:
                    if row["host"] == host:
                        raise NovaServiceError(
                            f"server {server.get('name')} ({server['id']}) is still on {host} "
                            "after its live migration (no other host could take it?)")
                    # the server is ACTIVE on its destination before the source compute
                    # marks the migration completed: restarting the source before that
                    # leaves the record "running" and the destination looks busy for ever
                    if not _migrating(api, server["id"]):
                        break
                if time.monotonic() - begun + pause > limit:
                    raise NovaServiceError(
                        f"live migration of server {server.get('name')} ({server['id']}) off "
                        f"{host} not done after {limit:.0f}s: status {row['status']}, task "
                        f"{row['task_state']}, host {row['host']}")
                time.sleep(pause)
            moved.append({"id": server["id"], "name": server.get("name"), "to": row["host"],
                          "seconds": round(time.monotonic() - begun, 2)})
    return {"host": host, "migrated": moved, "seconds": round(time.monotonic() - started, 2)}


def _migrating(api, server_id):
    """The server's migrations nova still counts as in progress."""
    found = api.call("GET", "os-migrations", params={"instance_uuid": server_id}) or {}
    return [m for m in found.get("migrations", []) if m.get("status") not in MIGRATION_DONE]


def servers(host=None, deleted=False, changes_since=None, **connection):
    """
    Every server (all projects), or those on ``host``: id, name, status, host, task_state,
    sorted by name — for the "servers ACTIVE before/after" checks of an upgrade.
    ``deleted=True``: the servers deleted instead (with ``changes_since``, an ISO 8601 UTC
    time: those deleted since then), to tell a server its user deleted from a lost one.

    CLI Example:

    .. code-block:: bash

        salt ctl01 nova_service.servers
        salt ctl01 nova_service.servers host=cmp01
        salt ctl01 nova_service.servers host=cmp01 deleted=True changes_since=2026-12-07T07:00:00Z
    """
    deleted = leapfrog_parse.boolean(deleted, "deleted", error=NovaServiceError)
    if changes_since is not None and not _ISO_UTC.match(str(changes_since)):
        raise NovaServiceError(f"changes_since {changes_since!r} is not an ISO 8601 UTC time "
                               "(e.g. 2026-12-07T07:00:00Z)")
    with _Compute(_conf(connection)) as api:
        if host:
            api.service(host)
        found = api.servers(host, deleted, changes_since)
    rows = [_server_row(s) for s in found]
    return sorted(rows, key=lambda r: (str(r["name"]), str(r["id"])))
