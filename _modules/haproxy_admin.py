"""
haproxy admin-socket client: stats, drain and ready, for taking API servers out of haproxy
before they are touched and putting them back after.

A small, careful client of haproxy's runtime API (no saltext-haproxy: it is broken on
Python 3). One command per connection, a timeout on every socket operation, and every name
checked before anything is sent: a backend or server name may only hold ``A-Z a-z 0-9 . _ -``
(so it can never smuggle a second command in with a space, newline or ``;``), and names that
are not in haproxy's ``show stat`` are refused before any ``set`` command.

Configuration (arguments win over pillar)::

    leapfrog:
      haproxy:
        socket: /run/haproxy/admin.sock   # unix path or host:port (stats socket ... level admin)
        timeout: 5                        # socket timeout, seconds
        drain_timeout: 300                # how long drain waits for sessions to end
        ready_timeout: 30                 # how long ready waits for UP
"""
import csv
import errno
import http.client
import io
import logging
import re
import socket as _socket
import time

import salt.utils.data

import leapfrog_errors
import leapfrog_parse

log = logging.getLogger(__name__)

__virtualname__ = "haproxy_admin"

PILLAR_KEY = "leapfrog:haproxy"
DEFAULT_TIMEOUT = 5.0
DEFAULT_DRAIN_TIMEOUT = 300.0
DEFAULT_READY_TIMEOUT = 30.0
MAX_ANSWER = 16 * 1024 * 1024

NAME_RE = re.compile(r"\A[A-Za-z0-9._-]{1,128}\Z")
KINDS = {0: "frontend", 1: "backend", 2: "server", 3: "listener"}
UP_STATUSES = ("UP", "no check")
STATES = ("ready", "drain", "maint")
HEALTH = ("up", "stopping", "down")
# show stat columns kept as text (everything else that looks like an integer becomes one)
TEXT_FIELDS = {
    "pxname", "svname", "status", "check_status", "last_chk", "last_agt", "addr", "cookie",
    "mode", "algo", "check_desc", "agent_desc", "agent_status", "agg_server_status",
    "agg_server_check_status", "agg_check_status", "tracked",
}
# the columns a record carries unless full=True is asked for
SUMMARY_FIELDS = (
    "backend", "server", "kind", "status", "scur", "qcur", "smax", "stot", "weight",
    "uweight", "act", "bck", "check_status", "check_desc", "lastchg", "downtime", "addr",
)


class HAProxyError(leapfrog_errors.LeapfrogError):
    """haproxy's admin socket could not be used or answered with an error."""


class SocketUnavailable(HAProxyError):
    """The admin socket is missing, refuses connections or does not answer in time."""


class NotAdmin(HAProxyError):
    """The socket answers, but not at ``level admin``: it cannot change server states."""


class NameRefused(HAProxyError):
    """A backend or server name that is not a plain haproxy name (injection guard)."""


class UnknownName(HAProxyError):
    """A backend or server that haproxy does not have."""


class DrainTimeout(HAProxyError):
    """A server still held sessions when the drain timeout ran out.

    ``holding`` maps each backend still holding sessions to ``{"scur": n, "qcur": n}``;
    ``drained`` holds what was drained (and put in maintenance) before the timeout.
    """

    def __init__(self, message, holding=None, drained=None):
        super().__init__(message)
        self.holding = holding or {}
        self.drained = drained or {}


class LastServer(HAProxyError):
    """Draining the server would leave a backend with no server UP (a full API outage)."""


class ReadyTimeout(HAProxyError):
    """A server did not come back UP in time after ``ready``."""


def __virtual__():
    return __virtualname__


# -- configuration and names ---------------------------------------------------------------

def _pillar(key, default=None):
    """Read ``leapfrog:haproxy:<key>`` from ``__pillar__`` itself: Salt 3008's ``pillar.get``
    hands modules masked values ("**********") unless ``unmask=True``, unknown to 3007."""
    pillar = globals().get("__pillar__") or {}
    value = salt.utils.data.traverse_dict_and_list(pillar, f"{PILLAR_KEY}:{key}", None)
    return default if value is None else value


def _config(socket=None, timeout=None):
    address = socket if socket not in (None, "") else _pillar("socket")
    if not address:
        raise HAProxyError(
            "no haproxy admin socket given: pass socket=PATH|HOST:PORT or set the pillar key "
            f"{PILLAR_KEY}:socket")
    if not isinstance(address, str) or "\n" in address or "\x00" in address:
        raise HAProxyError(f"haproxy socket must be a unix path or host:port, got {address!r}")
    if timeout in (None, ""):
        timeout = _pillar("timeout", DEFAULT_TIMEOUT)
    timeout = leapfrog_parse.seconds(timeout, "socket timeout", minimum=0.001, maximum=3600,
                                     error=HAProxyError)
    return address, timeout


def _seconds(value, pillar_key, default, what):
    if value in (None, ""):
        value = _pillar(pillar_key, default)
    return leapfrog_parse.seconds(value, what, error=HAProxyError)


def _refuse_last_up(server, where, table):
    """Refuse taking ``server`` out of a backend where it is the only server UP: every
    request there would fail until it is back (``allow_last=True`` accepts that)."""
    alone = sorted(
        be for be, record in where.items()
        if str(record["status"] or "").startswith(UP_STATUSES) and not any(
            name != server and str(other["status"] or "").startswith(UP_STATUSES)
            for name, other in table.get(be, {}).items()))
    if alone:
        raise LastServer(
            f"refused: {server} is the last server UP in backend(s) {', '.join(alone)}; "
            "draining it would stop every request there. Bring another server UP first, or "
            "pass allow_last=True to accept the outage; nothing was changed")


def _check_name(name, what="name"):
    """Raise ``NameRefused`` unless ``name`` is a plain haproxy name ([A-Za-z0-9._-], 1-128)."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise NameRefused(
            f"refused {what} {name!r}: haproxy names here may only hold letters, digits, "
            "'.', '_' and '-' (no whitespace, newline or ';'); nothing was sent to haproxy")
    return name


def _name_list(names, kind):
    """``names`` (a list or a comma-separated string) checked as ``kind`` names, each once;
    None when empty."""
    if names in (None, "", []):
        return None
    if isinstance(names, str):
        names = [part.strip() for part in names.split(",")]
    if not isinstance(names, (list, tuple)):
        raise NameRefused(f"{kind}s must be a list or a comma-separated string, got {names!r}")
    out = []
    for name in names:
        _check_name(name, kind)
        if name not in out:
            out.append(name)
    return out


def _backend_list(backends):
    return _name_list(backends, "backend")


# -- the socket ----------------------------------------------------------------------------

def _is_unix(address):
    return "/" in address or ":" not in address


def _send(command, address, timeout):
    """Send one command line and return haproxy's whole answer (text).

    The command is built by this module from checked names; it is checked once more here so
    that nothing but one single-line command ever reaches the socket.
    """
    if not command or any(ch in command for ch in "\r\n;\x00") or not command.isprintable():
        raise HAProxyError(f"refused to send {command!r}: not one plain command line")
    if _is_unix(address):
        family, target, shown = _socket.AF_UNIX, address, address
    else:
        host, _, port = address.rpartition(":")
        try:
            target = (host.strip("[]"), int(port))
        except ValueError:
            raise HAProxyError(f"haproxy socket {address!r} is neither a unix path nor host:port")
        family = _socket.AF_INET6 if ":" in target[0] else _socket.AF_INET
        shown = address
    deadline = time.monotonic() + timeout
    sock = _socket.socket(family, _socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        try:
            sock.connect(target)
        except FileNotFoundError:
            raise SocketUnavailable(
                f"haproxy admin socket {shown} does not exist: is haproxy running with "
                f"'stats socket {shown} level admin' in its global section?")
        except PermissionError:
            raise SocketUnavailable(f"no permission to open haproxy socket {shown}")
        except ConnectionRefusedError:
            raise SocketUnavailable(
                f"nothing accepts connections on haproxy socket {shown} (haproxy stopped, or a "
                "stale socket file)")
        except _socket.timeout:
            raise SocketUnavailable(f"haproxy socket {shown}: connect timed out after {timeout}s")
        except OSError as exc:
            if exc.errno in (errno.ENOTSOCK, errno.ECONNREFUSED):
                raise SocketUnavailable(f"{shown} is not a listening haproxy socket ({exc.strerror})")
            raise SocketUnavailable(f"cannot connect to haproxy socket {shown}: {exc}")
        chunks, size = [], 0
        try:
            sock.sendall(command.encode("ascii") + b"\n")
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise _socket.timeout()
                sock.settimeout(left)
                data = sock.recv(65536)
                if not data:
                    break
                chunks.append(data)
                size += len(data)
                if size > MAX_ANSWER:
                    raise HAProxyError(f"haproxy socket {shown}: answer larger than {MAX_ANSWER} bytes")
        except _socket.timeout:
            raise SocketUnavailable(
                f"haproxy socket {shown} did not answer {command.split()[0]!r} within {timeout}s")
        except (ConnectionResetError, BrokenPipeError) as exc:
            raise SocketUnavailable(f"haproxy socket {shown} closed the connection: {exc}")
    finally:
        sock.close()
    return b"".join(chunks).decode("utf-8", "replace")


def _denied(answer):
    return answer.strip().lower().startswith("permission denied")


def _level(address, timeout):
    answer = _send("show cli level", address, timeout).strip()
    if answer in ("admin", "operator", "user"):
        return answer
    if _denied(answer):
        return "user"
    return None  # an haproxy without "show cli level": the set command will tell


def _require_admin(address, timeout):
    found = _level(address, timeout)
    if found not in (None, "admin"):
        raise NotAdmin(
            f"haproxy socket {address} is at level {found}, not admin: changing server states "
            f"needs 'stats socket {address} level admin'")


def _set(backend, server, state, address, timeout):
    _check_name(backend, "backend")
    _check_name(server, "server")
    if state not in STATES:
        raise HAProxyError(f"unknown server state {state!r}; one of {', '.join(STATES)}")
    answer = _send(f"set server {backend}/{server} state {state}", address, timeout).strip()
    if not answer:
        log.info("haproxy %s: %s/%s state %s", address, backend, server, state)
        return
    if _denied(answer):
        raise NotAdmin(f"haproxy socket {address} is not an admin socket: {answer}")
    if "no such server" in answer.lower() or "no such backend" in answer.lower():
        raise UnknownName(f"haproxy has no {backend}/{server}: {answer}")
    raise HAProxyError(f"haproxy refused 'set server {backend}/{server} state {state}': {answer}")


def _set_health(backend, server, health, address, timeout):
    answer = _send(f"set server {backend}/{server} health {health}", address, timeout).strip()
    if answer:
        raise HAProxyError(
            f"haproxy refused 'set server {backend}/{server} health {health}': {answer} "
            "(the server needs health checks: 'check' on its server line)")


# -- show stat -------------------------------------------------------------------------------

def _typed(field, value):
    if value == "":
        return None
    if field in TEXT_FIELDS:
        return value
    try:
        return int(value)
    except ValueError:
        return value


def _parse_stat(text, full=False):
    """Parse ``show stat`` CSV into a list of typed records (``backend``/``server`` keys)."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("# "):
        first = lines[0] if lines else "nothing"
        if _denied(first):
            raise NotAdmin(f"haproxy refused show stat: {first}")
        raise HAProxyError(f"unexpected answer to show stat: {first[:200]!r}")
    header = lines[0][2:].split(",")
    records = []
    for row in csv.reader(io.StringIO("\n".join(line for line in lines[1:] if line.strip()))):
        raw = dict(zip(header, row))
        record = {field: _typed(field, value) for field, value in raw.items() if field and field != "-"}
        record["backend"] = record.pop("pxname", None)
        record["server"] = record.pop("svname", None)
        record["kind"] = KINDS.get(record.get("type"), "unknown")
        if not full:
            record = {key: record.get(key) for key in SUMMARY_FIELDS}
        records.append(record)
    return records


def _servers_by_backend(address, timeout):
    """Return ``{backend: {server: record}}`` for every server haproxy has."""
    out = {}
    for record in _parse_stat(_send("show stat", address, timeout)):
        if record["kind"] == "backend":
            out.setdefault(record["backend"], {})
        elif record["kind"] == "server":
            out.setdefault(record["backend"], {})[record["server"]] = record
    return out


def _locate(server, backends, address, timeout, table=None):
    """Return ``{backend: record}`` for ``server`` (checked names; unknown ones refused);
    ``table`` is a ``_servers_by_backend`` already read."""
    _check_name(server, "server")
    wanted = _backend_list(backends)
    if table is None:
        table = _servers_by_backend(address, timeout)
    if wanted is None:
        found = {be: servers[server] for be, servers in sorted(table.items()) if server in servers}
        if not found:
            raise UnknownName(
                f"server {server!r} is in no haproxy backend (known servers: "
                f"{', '.join(sorted({s for v in table.values() for s in v})) or 'none'}); "
                "nothing was changed")
        return found
    unknown = [be for be in wanted if be not in table]
    if unknown:
        raise UnknownName(
            f"unknown haproxy backend(s) {', '.join(unknown)} (known: "
            f"{', '.join(sorted(table)) or 'none'}); nothing was changed")
    missing = [be for be in wanted if server not in table[be]]
    if missing:
        raise UnknownName(
            f"server {server!r} is not in backend(s) {', '.join(missing)}; nothing was changed")
    return {be: table[be][server] for be in wanted}


# -- getters ---------------------------------------------------------------------------------

def stats(socket=None, timeout=None, full=False):
    """
    Return haproxy's ``show stat`` as a list of typed records: ``backend`` (the proxy),
    ``server`` (FRONTEND/BACKEND or the server's name), ``kind`` (frontend, backend, server),
    ``status``, ``scur`` (current sessions), ``qcur`` (queued), ``weight``, ``check_status``...
    ``full=True`` keeps every column haproxy prints.

    CLI Example:

    .. code-block:: bash

        salt prx01 haproxy_admin.stats
        salt prx01 haproxy_admin.stats socket=127.0.0.1:9999 full=True
    """
    address, timeout = _config(socket, timeout)
    return _parse_stat(_send("show stat", address, timeout), full=full)


def servers(backend=None, socket=None, timeout=None):
    """
    Return the server records (see ``stats``), of one backend or of all.

    CLI Example:

    .. code-block:: bash

        salt prx01 haproxy_admin.servers backend=nova_api
    """
    address, timeout = _config(socket, timeout)
    table = _servers_by_backend(address, timeout)
    if backend is not None:
        _check_name(backend, "backend")
        if backend not in table:
            raise UnknownName(f"unknown haproxy backend {backend!r} (known: "
                              f"{', '.join(sorted(table)) or 'none'})")
        return list(table[backend].values())
    return [record for be in sorted(table) for record in table[be].values()]


def backends(socket=None, timeout=None):
    """
    Return every backend and the names of its servers: ``{backend: [server, ...]}``.

    CLI Example:

    .. code-block:: bash

        salt prx01 haproxy_admin.backends
    """
    address, timeout = _config(socket, timeout)
    return {be: list(servers_) for be, servers_ in sorted(_servers_by_backend(address, timeout).items())}


def server_backends(server, socket=None, timeout=None):
    """
    Return the backends where ``server`` appears (sorted); an unknown server is an error.

    CLI Example:

    .. code-block:: bash

        salt prx01 haproxy_admin.server_backends ctl01
    """
    address, timeout = _config(socket, timeout)
    return list(_locate(server, None, address, timeout))


def server_status(server, backends=None, socket=None, timeout=None):
    """
    Return ``{backend: record}`` for ``server`` on every backend where it appears (or the
    given ``backends``): its status (UP, DRAIN, MAINT, DOWN...), sessions and weight.

    CLI Example:

    .. code-block:: bash

        salt prx01 haproxy_admin.server_status ctl01
        salt prx01 haproxy_admin.server_status ctl01 backends=keystone,nova_api
    """
    _backend_list(backends)
    _check_name(server, "server")
    address, timeout = _config(socket, timeout)
    return _locate(server, backends, address, timeout)


def _http_status(addr, path, timeout):
    """GET http://``addr````path``; return the HTTP status (raises OSError / HTTPException)."""
    host, _, port = addr.rpartition(":")
    conn = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=timeout)
    try:
        conn.request("GET", path, headers={"User-Agent": "leapfrog-haproxy-check"})
        return conn.getresponse().status
    finally:
        conn.close()


def check(server, backends=None, path="/", timeout=5, socket=None, socket_timeout=None):
    """
    Check ``server``'s own endpoints directly, the way haproxy's health check would, while it
    is still out of rotation: for every backend where it appears (or the given ``backends``),
    GET ``path`` on the server's address from ``show stat``; any HTTP answer below 500 is
    healthy. Raises naming every backend whose server does not answer. The "verify locally"
    step before ``ready``.

    CLI Example:

    .. code-block:: bash

        salt prx01 haproxy_admin.check ctl01
    """
    address, stimeout = _config(socket, socket_timeout)
    where = _locate(server, backends, address, stimeout)
    results, failures = {}, []
    for backend, record in where.items():
        addr = record.get("addr")
        if not addr:
            failures.append(f"{backend}: haproxy shows no address for {server}")
            continue
        started = time.monotonic()
        try:
            status = _http_status(addr, path, float(timeout))
        except (OSError, http.client.HTTPException, ValueError) as exc:
            failures.append(f"{backend}: {server} at {addr} does not answer: {exc}")
            continue
        results[backend] = {"addr": addr, "status": status,
                            "seconds": round(time.monotonic() - started, 3)}
        if status >= 500:
            failures.append(f"{backend}: {server} at {addr} answered HTTP {status}")
    if failures:
        raise HAProxyError(f"{server} is not healthy: " + "; ".join(failures))
    return {"server": server, "healthy": True, "backends": results}


def level(socket=None, timeout=None):
    """
    Return the privilege level of the socket (``admin``, ``operator`` or ``user``).

    CLI Example:

    .. code-block:: bash

        salt prx01 haproxy_admin.level
    """
    address, timeout = _config(socket, timeout)
    return _level(address, timeout)


# -- mutators --------------------------------------------------------------------------------

def set_state(server, state, backends=None, socket=None, timeout=None, health=None):
    """
    Set ``server`` to ``state`` (ready, drain or maint) on every backend where it appears (or
    the given ones) without waiting; returns ``{backend: status read back}``. ``health``
    (up, stopping or down) forces the server's health first: ``state=ready health=down``
    puts a stopped server back so that only its health checks bring it UP (without it,
    haproxy trusts the health it had before maint and sends traffic to it until its checks
    fail). Prefer ``drain``/``ready``, which wait for the outcome.

    CLI Example:

    .. code-block:: bash

        salt prx01 haproxy_admin.set_state ctl01 maint backends=nova_api
        salt prx01 haproxy_admin.set_state ctl01 ready health=down
    """
    if state not in STATES:
        raise HAProxyError(f"unknown server state {state!r}; one of {', '.join(STATES)}")
    if health is not None and health not in HEALTH:
        raise HAProxyError(f"unknown server health {health!r}; one of {', '.join(HEALTH)}")
    _backend_list(backends)
    _check_name(server, "server")
    address, timeout = _config(socket, timeout)
    where = _locate(server, backends, address, timeout)
    _require_admin(address, timeout)
    for be in where:  # health after the state: leaving maint restores the old health
        _set(be, server, state, address, timeout)
        if health:
            _set_health(be, server, health, address, timeout)
    after = _locate(server, list(where), address, timeout)
    return {be: record["status"] for be, record in after.items()}


def drain(server, backends=None, timeout=None, poll=0.5, on_timeout="fail", socket=None,
          socket_timeout=None, allow_last=False):
    """
    Take ``server`` out of haproxy without cutting a request: set it to drain on every
    backend where it appears (or the given ``backends``), wait until it has no current and
    no queued session there, then put it in maintenance (per backend, as soon as that
    backend is empty).

    Returns ``{"server", "backends": {backend: {"from", "status", "seconds", "sessions",
    "forced"}}, "seconds", "forced": [...]}`` — ``seconds`` per backend is how long its
    sessions took to end. A server already in maintenance is left as it is.

    When ``timeout`` (seconds; pillar ``leapfrog:haproxy:drain_timeout``, default 300) runs
    out: ``on_timeout=fail`` raises an error naming the backends still holding sessions and
    leaves every state as it is (those backends stay in DRAIN); ``on_timeout=maint`` puts
    them in maintenance anyway and lists them under ``forced``.

    A server that is the last one UP in one of its backends is refused (nothing changes)
    unless ``allow_last=True``: an orchestration that takes the API down on purpose (a
    rollback, a one-controller cloud) says so.

    CLI Example:

    .. code-block:: bash

        salt prx01 haproxy_admin.drain ctl01
        salt prx01 haproxy_admin.drain ctl01 backends=keystone,nova_api timeout=60 on_timeout=maint
    """
    leapfrog_parse.choice(on_timeout, "on_timeout", ("fail", "maint"), error=HAProxyError)
    allow_last = leapfrog_parse.boolean(allow_last, "allow_last", error=HAProxyError)
    _backend_list(backends)
    _check_name(server, "server")
    address, stimeout = _config(socket, socket_timeout)
    limit = _seconds(timeout, "drain_timeout", DEFAULT_DRAIN_TIMEOUT, "drain timeout")
    poll = max(_seconds(poll, "drain_poll", 0.5, "poll interval"), 0.05)
    table = _servers_by_backend(address, stimeout)
    where = _locate(server, backends, address, stimeout, table=table)
    _require_admin(address, stimeout)
    if not allow_last:
        _refuse_last_up(server, where, table)

    started = time.monotonic()
    done, pending = {}, {}
    for be, record in where.items():
        status = record["status"] or ""
        if status.startswith("MAINT"):
            done[be] = {"from": status, "status": status, "seconds": 0.0,
                        "sessions": record["scur"], "forced": False, "changed": False}
            continue
        if status != "DRAIN":
            _set(be, server, "drain", address, stimeout)
        pending[be] = {"from": status, "start": time.monotonic(), "sessions": record["scur"]}

    holding = {}
    while pending:
        table = _locate(server, list(pending), address, stimeout)
        now = time.monotonic()
        holding = {}
        for be, record in table.items():
            status = record["status"] or ""
            if status.startswith("MAINT") or (not record["scur"] and not record["qcur"]):
                if not status.startswith("MAINT"):
                    _set(be, server, "maint", address, stimeout)
                info = pending.pop(be)
                done[be] = {"from": info["from"], "status": "MAINT",
                            "seconds": round(now - info["start"], 3),
                            "sessions": info["sessions"], "forced": False, "changed": True,
                            "maint_at": time.time()}
            else:
                holding[be] = {"scur": record["scur"] or 0, "qcur": record["qcur"] or 0}
        if not pending:
            break
        elapsed = time.monotonic() - started
        if elapsed >= limit:
            text = "; ".join(f"{be}: {h['scur']} current, {h['qcur']} queued"
                             for be, h in sorted(holding.items()))
            if on_timeout == "maint":
                log.warning("drain of %s timed out after %.1fs, forcing maintenance (%s)",
                            server, elapsed, text)
                for be in sorted(pending):
                    _set(be, server, "maint", address, stimeout)
                    info = pending.pop(be)
                    done[be] = {"from": info["from"], "status": "MAINT",
                                "seconds": round(elapsed, 3), "sessions": info["sessions"],
                                "forced": True, "changed": True, "maint_at": time.time(),
                                "cut": holding.get(be)}
                break
            drained = ", ".join(f"{be} (MAINT)" for be in sorted(done)) or "none"
            raise DrainTimeout(
                f"drain of server {server} timed out after {limit:g}s: backend(s) "
                f"{', '.join(sorted(holding))} still hold sessions ({text}); left as is "
                f"(DRAIN there); already drained: {drained}. Wait longer (timeout=), or pass "
                "on_timeout=maint to force maintenance",
                holding=holding, drained=done)
        time.sleep(min(poll, max(limit - elapsed, 0.01)))

    return {
        "server": server,
        "backends": done,
        "seconds": round(time.monotonic() - started, 3),
        "forced": sorted(be for be, info in done.items() if info["forced"]),
    }


def ready(server, backends=None, timeout=None, poll=0.2, socket=None, socket_timeout=None):
    """
    Put ``server`` back: set it ready on every backend where it appears (or the given
    ``backends``) and wait until haproxy reports it ``UP`` there (right after ready it reads
    ``UP 1/2`` for a moment; a server whose health check fails stays DOWN and this raises,
    naming the backend and the check's last result).

    ``timeout``: seconds (pillar ``leapfrog:haproxy:ready_timeout``, default 30).

    CLI Example:

    .. code-block:: bash

        salt prx01 haproxy_admin.ready ctl01
        salt prx01 haproxy_admin.ready ctl01 backends=nova_api timeout=60
    """
    _backend_list(backends)
    _check_name(server, "server")
    address, stimeout = _config(socket, socket_timeout)
    limit = _seconds(timeout, "ready_timeout", DEFAULT_READY_TIMEOUT, "ready timeout")
    poll = max(_seconds(poll, "ready_poll", 0.2, "poll interval"), 0.05)
    where = _locate(server, backends, address, stimeout)
    _require_admin(address, stimeout)

    started = time.monotonic()
    done, pending = {}, {}
    for be, record in where.items():
        status = record["status"] or ""
        if status in UP_STATUSES:
            done[be] = {"from": status, "status": status, "seconds": 0.0, "changed": False}
            continue
        _set(be, server, "ready", address, stimeout)
        pending[be] = {"from": status, "start": time.monotonic()}
    last = {}
    while pending:
        table = _locate(server, list(pending), address, stimeout)
        now = time.monotonic()
        for be, record in table.items():
            if record["status"] in UP_STATUSES:
                info = pending.pop(be)
                done[be] = {"from": info["from"], "status": record["status"],
                            "seconds": round(now - info["start"], 3), "changed": True}
            else:
                last[be] = record
        if not pending:
            break
        elapsed = time.monotonic() - started
        if elapsed >= limit:
            text = "; ".join(
                f"{be}: {last[be]['status']}"
                + (f" ({last[be]['check_desc'] or last[be]['check_status']})"
                   if (last[be].get('check_desc') or last[be].get('check_status')) else "")
                for be in sorted(pending))
            raise ReadyTimeout(
                f"server {server} is not UP after {limit:g}s on backend(s) "
                f"{', '.join(sorted(pending))} ({text}); it was set ready: haproxy sends it "
                "traffic as soon as its health check passes")
        time.sleep(min(poll, max(limit - elapsed, 0.01)))
    return {"server": server, "backends": done,
            "seconds": round(time.monotonic() - started, 3)}


def handover(server, others, backends, timeout=None, socket=None, socket_timeout=None):
    """
    ``server`` takes ``backends`` over from ``others``, with the least overlap haproxy
    allows: ``server`` set ready on every backend where it appears and waited for until UP
    (``ready``), then each of ``others`` set to DRAIN at once on ``backends`` only, and put
    in maintenance there as its requests end (``drain``, forced after ``timeout``). What
    one release writes the other cannot read: a rolling hop hands an API over this way,
    so both releases answer it for well under a second instead of a step apart.

    Returns ``{"server", "ready": <ready's return>, "drained": {other: <drain's return>},
    "overlap_seconds"}`` (from ``server`` UP to the last of ``others`` in DRAIN).

    CLI Example:

    .. code-block:: bash

        salt prx01 haproxy_admin.handover ctl01 others=ctl02,ctl03 backends=neutron_server
    """
    listed, names = _backend_list(backends), _name_list(others, "server")
    if not names or not listed:
        raise HAProxyError("handover needs others (the servers leaving) and backends (where "
                           "they leave), e.g. others=ctl02,ctl03 backends=neutron_server")
    address, stimeout = _config(socket, socket_timeout)
    for name in names:  # every name known there before anything changes
        _locate(name, listed, address, stimeout)
    readied = ready(server, timeout=timeout, socket=socket, socket_timeout=socket_timeout)
    up_at = time.monotonic()
    for name in names:
        for be, record in _locate(name, listed, address, stimeout).items():
            if not str(record["status"] or "").startswith(("MAINT", "DRAIN")):
                _set(be, name, "drain", address, stimeout)
    overlap = time.monotonic() - up_at
    drained = {name: drain(name, backends=listed, timeout=timeout, on_timeout="maint",
                           socket=socket, socket_timeout=socket_timeout) for name in names}
    return {"server": server, "ready": readied, "drained": drained,
            "overlap_seconds": round(overlap, 3)}
