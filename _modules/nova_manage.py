"""
nova-manage and nova-status of one OpenStack release, run from its virtualenv or a binary.

Which nova runs (per call):

- ``release=2025.1``: the virtualenv named in pillar ``leapfrog:releases:venvs:<release>``
  (or in the ``venvs`` mapping passed to the call);
- ``venv=/opt/openstack/2025.1``: that virtualenv (``bin/nova-manage``, ``bin/nova-status``);
- ``binary=/usr/bin/nova-manage``: that nova-manage (nova-status next to it).

Which databases (per call, else pillar ``leapfrog:database``: ``host``, ``port``, ``socket``,
``user``, ``password``; names ``api_database`` (nova_api), ``database`` (nova),
``cell0_database`` (``<database>_cell0``), ``transport_url`` from the call or pillar
``leapfrog:nova``), or ``config_file=/etc/nova/nova.conf`` to use an existing config as it is.
The module writes the connection URLs (``mysql+pymysql://``, ``unix_socket`` when a socket is
given) into a 0600 config file in a private temporary directory removed after the call: the
password is never on a command line, in a return or in a log.

Revisions are read from the databases' ``alembic_version`` tables with PyMySQL when it is
importable (milliseconds, what ``nova-manage db version`` prints), else with nova-manage
(``via="nova-manage"`` forces it). Migration chains are read from the release's own
migration files (``down_revision`` links), so targets are compared before anything runs:
nova itself silently ignores a target older than the current revision.
"""
import configparser
import contextlib
import glob
import logging
import os
import re
import shutil
import tempfile
import time
import urllib.parse

import salt.utils.data

import leapfrog_cmd
import leapfrog_status
import leapfrog_errors
import leapfrog_parse
import leapfrog_schema

try:
    import pymysql

    HAS_PYMYSQL = True
except ImportError:  # pragma: no cover - depends on the minion
    HAS_PYMYSQL = False

log = logging.getLogger(__name__)

__virtualname__ = "nova_manage"

DB_KEYS = ("host", "port", "socket", "user", "password")
NAME_KEYS = ("api_database", "database", "cell0_database", "transport_url")
TARGET_KEYS = ("release", "venv", "binary", "venvs", "config_file", "via", "suffix")
SCHEMAS = ("api", "main")
MASK = "****"
ANY_RC = range(-255, 256)
CELL0_UUID = "00000000-0000-0000-0000-000000000000"
DB_RETRIES = 2
DB_RETRY_INTERVAL = 1


def __virtual__():
    if "cmd.run_all" not in __salt__:  # pragma: no cover - always there on a minion
        return (False, "nova_manage needs cmd.run_all")
    return __virtualname__


# ---------------------------------------------------------------------------------------------
# errors


class NovaManageError(leapfrog_errors.LeapfrogError):
    """A nova-manage / nova-status call or a request to it is wrong (one line)."""


# ---------------------------------------------------------------------------------------------
# releases, venvs and binaries


def _release_of(nova_version):
    """``29.2.0`` -> ``2024.1`` (two nova majors per year since 29 = 2024.1)."""
    major = int(str(nova_version).split(".")[0])
    return f"{2024 + (major - 29) // 2}.{1 + (major - 29) % 2}"


class _Nova:
    """One nova installation: where nova-manage, nova-status and the nova package are."""

    def __init__(self, manage, status, package_dir, version=None, release=None, venv=None):
        self.manage = manage
        self.status = status
        self.package_dir = package_dir
        self.version = version
        self.release = release
        self.venv = venv

    def describe(self):
        return {"release": self.release, "nova": self.version, "venv": self.venv,
                "nova_manage": self.manage}


def _pillar(key, default=None):
    # __pillar__, not pillar.get: Salt 3008's pillar.get masks values ("**********") unless
    # unmask=True, a keyword 3007 does not know. Reading __pillar__ gives plain values on both.
    return salt.utils.data.traverse_dict_and_list(__pillar__, key, default)


def _venvs(opts):
    venvs = dict(_pillar("leapfrog:releases:venvs", {}) or {})
    venvs.update(opts.get("venvs") or {})
    return {str(k): v for k, v in venvs.items()}


def _dist_version(site_packages, dist):
    for path in glob.glob(os.path.join(site_packages, f"{dist}-*.dist-info")):
        return os.path.basename(path)[len(dist) + 1:-len(".dist-info")]
    return None


def _from_venv(venv, release=None):
    manage = os.path.join(venv, "bin", "nova-manage")
    if not os.path.isdir(venv):
        raise NovaManageError(f"venv {venv} does not exist" + (f" (release {release})" if release else ""))
    if not os.access(manage, os.X_OK):
        raise NovaManageError(f"venv {venv} has no bin/nova-manage: nova is not installed there")
    sites = sorted(glob.glob(os.path.join(venv, "lib", "python3*", "site-packages")))
    package = next((os.path.join(s, "nova") for s in sites if os.path.isdir(os.path.join(s, "nova"))), None)
    if package is None:
        raise NovaManageError(f"venv {venv} has no nova package")
    version = _dist_version(os.path.dirname(package), "nova")
    found = _release_of(version) if version else None
    if release and found and found != release:
        raise NovaManageError(f"venv {venv} holds nova {version} ({found}), not {release}")
    return _Nova(manage, os.path.join(venv, "bin", "nova-status"), package, version,
                 release or found, venv)


def _from_binary(binary):
    if not os.access(binary, os.X_OK):
        raise NovaManageError(f"{binary} is not an executable nova-manage")
    with open(binary, "rb") as handle:
        first = handle.readline().decode(errors="replace").strip()
    python = first[2:].strip().split()[0] if first.startswith("#!") else None
    if not python:
        raise NovaManageError(f"{binary} has no #! line naming its python")
    res = leapfrog_cmd.run(__salt__["cmd.run_all"], [
        python, "-c",
        "import importlib.util,importlib.metadata as m;"
        "print(importlib.util.find_spec('nova').submodule_search_locations[0]);"
        "print(m.version('nova'))",
    ])
    package, version = (res["stdout"].strip().splitlines() + ["", ""])[:2]
    return _Nova(binary, os.path.join(os.path.dirname(binary), "nova-status"), package,
                 version or None, _release_of(version) if version else None, None)


def _nova(opts, release=None):
    """Resolve which nova to run from ``release`` / ``venv`` / ``binary`` (call, then pillar)."""
    release = release or opts.get("release")
    if opts.get("binary"):
        return _from_binary(opts["binary"])
    if opts.get("venv"):
        return _from_venv(opts["venv"], str(release) if release else None)
    if release:
        venvs = _venvs(opts)
        release = str(release)
        if release not in venvs:
            known = ", ".join(sorted(venvs)) or "none"
            raise NovaManageError(
                f"unknown release {release}: not in pillar leapfrog:releases:venvs (known: {known})"
            )
        return _from_venv(venvs[release], release)
    raise NovaManageError("name a release (pillar leapfrog:releases:venvs), a venv or a binary")


# ---------------------------------------------------------------------------------------------
# migration chains


_REVISION_RE = re.compile(r"^revision(?:\s*:[^=]+)?\s*=\s*['\"]([0-9A-Za-z_]+)['\"]", re.M)
_DOWN_RE = re.compile(r"^down_revision(?:\s*:[^=]+)?\s*=\s*(?:None|['\"]([0-9A-Za-z_]+)['\"])", re.M)


def _read_chain(versions_dir):
    links = {}
    for path in glob.glob(os.path.join(versions_dir, "*.py")):
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        rev = _REVISION_RE.search(text)
        down = _DOWN_RE.search(text)
        if rev and down:
            links[rev.group(1)] = down.group(1)
    if not links:
        raise NovaManageError(f"no alembic migrations found in {versions_dir}")
    children = {}
    for rev, down in links.items():
        if down in children:
            raise NovaManageError(f"{versions_dir}: branched history at {down}")
        children[down] = rev
    chain, current = [], children.get(None)
    while current:
        chain.append(current)
        current = children.get(current)
    if len(chain) != len(links):
        raise NovaManageError(f"{versions_dir}: migrations do not form one chain")
    return chain


def _chains(nova):
    return {schema: _read_chain(os.path.join(nova.package_dir, "db", schema, "migrations", "versions"))
            for schema in SCHEMAS}


def _resolve(chain, revision, schema, nova):
    """Full revision id for ``revision`` (``head``, a full id or a unique prefix) in ``chain``."""
    if revision in (None, "head", "heads"):
        return chain[-1]
    revision = str(revision)
    if revision.isdigit():
        raise NovaManageError(
            f"{revision} is a sqlalchemy-migrate version; nova {nova.release} takes alembic revisions"
        )
    matches = [r for r in chain if r.startswith(revision)]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise NovaManageError(f"revision {revision} is ambiguous in the {schema} chain: {matches}")
    raise NovaManageError(
        f"revision {revision} is not in nova {nova.release}'s {schema} migrations "
        f"(head {chain[-1]}): wrong database or another release's revision"
    )


def _pending(chain, current, target, schema, nova, what="database"):
    """Revisions between ``current`` and ``target`` (exclusive, inclusive), refusing downgrades."""
    end = chain.index(target)
    if current is None:
        return chain[: end + 1]
    if current not in chain:
        raise NovaManageError(
            f"{what} is at revision {current}, unknown to nova {nova.release} ({schema} head "
            f"{chain[-1]}): it was upgraded by a newer release"
        )
    start = chain.index(current)
    if start > end:
        raise NovaManageError(
            f"target {target} is older than the {what}'s current revision {current}: "
            "nova cannot downgrade (restore a backup instead)"
        )
    return chain[start + 1: end + 1]


# ---------------------------------------------------------------------------------------------
# connection options, the config file, running commands


class _Conn:
    """Database and transport settings for one call; knows its secrets to scrub them."""

    def __init__(self, opts):
        db = dict(_pillar("leapfrog:database", {}) or {})
        nova = dict(_pillar("leapfrog:nova", {}) or {})
        self.config_file = opts.get("config_file")
        for key in DB_KEYS:
            setattr(self, key, opts[key] if opts.get(key) not in (None, "") else db.get(key))
        self.api_database = opts.get("api_database") or nova.get("api_database") or "nova_api"
        self.database = opts.get("database") or nova.get("database") or "nova"
        self.cell0_database = (opts.get("cell0_database") or nova.get("cell0_database")
                               or f"{self.database}_cell0")
        if opts.get("suffix"):  # the rehearsal's clones: nova_api_upgrade, nova_upgrade, ...
            self.api_database, self.database, self.cell0_database = (
                f"{name}{opts['suffix']}" for name in
                (self.api_database, self.database, self.cell0_database))
        self.transport_url = opts.get("transport_url") or nova.get("transport_url")
        self.urls = {}
        self._pool = {}
        if self.config_file:
            self._read_config()
        elif not (self.socket or self.host):
            raise NovaManageError(
                "no database: give host or socket (call or pillar leapfrog:database) or config_file"
            )
        else:
            self.urls = {"api": self.url(self.api_database), "main": self.url(self.database),
                         "cell0": self.url(self.cell0_database)}
        self.secrets = [s for s in {self.password, urllib.parse.quote(str(self.password or ""), safe="")} if s]

    def _read_config(self):
        if not os.path.isfile(self.config_file):
            raise NovaManageError(f"config file {self.config_file} does not exist")
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        parser.read(self.config_file)
        for schema, section in (("api", "api_database"), ("main", "database")):
            if parser.has_option(section, "connection"):
                self.urls[schema] = parser.get(section, "connection")
        if "main" in self.urls:
            parts = urllib.parse.urlsplit(self.urls["main"])
            self.urls["cell0"] = parts._replace(path=parts.path + "_cell0").geturl()
            self.password = urllib.parse.unquote(parts.password or "") or None

    def url(self, name):
        user = urllib.parse.quote(str(self.user or "root"), safe="")
        auth = user + (":" + urllib.parse.quote(str(self.password), safe="") if self.password else "")
        query = {"charset": "utf8"}
        if self.socket:
            host = "localhost"
            query["unix_socket"] = self.socket
        else:
            host = f"{self.host}:{self.port}" if self.port else str(self.host)
        return f"mysql+pymysql://{auth}@{host}/{name}?{urllib.parse.urlencode(query, safe='/')}"

    def scrub(self, text):
        text = str(text)
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return _mask_url(text)

    def config_text(self):
        lines = ["[DEFAULT]"]
        if self.transport_url:
            lines.append(f"transport_url = {_oslo_escape(self.transport_url)}")
        # Fail fast on an unreachable server: oslo.db retries 10 times 10 s apart by default.
        retries = [f"max_retries = {DB_RETRIES}", f"retry_interval = {DB_RETRY_INTERVAL}"]
        lines += ["", "[api_database]", f"connection = {_oslo_escape(self.urls['api'])}", *retries,
                  "", "[database]", f"connection = {_oslo_escape(self.urls['main'])}", *retries, ""]
        return "\n".join(lines)

    @contextlib.contextmanager
    def config(self):
        """Path of a config file holding the connections (0600, private dir, removed after)."""
        if self.config_file:
            yield self.config_file
            return
        tmpdir = tempfile.mkdtemp(prefix="leapfrog-nova-")  # 0700
        try:
            path = os.path.join(tmpdir, "nova.conf")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(self.config_text())
            yield path
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)

    def query(self, schema, sql, args=(), database=None):
        """Rows of ``sql`` run in one of the nova databases (``api``, ``main``, ``cell0``, or
        ``database`` on ``schema``'s server). One PyMySQL connection per server is kept for
        the life of this object (a staged sync asks for revisions dozens of times)."""
        parts = urllib.parse.urlsplit(self.urls[schema])
        query = dict(urllib.parse.parse_qsl(parts.query))
        kwargs = {"user": urllib.parse.unquote(parts.username or "root"),
                  "password": urllib.parse.unquote(parts.password or ""), "connect_timeout": 10}
        if query.get("unix_socket"):
            kwargs["unix_socket"] = query["unix_socket"]
        else:
            kwargs["host"] = parts.hostname or "localhost"
            kwargs["port"] = parts.port or 3306
        name = database or parts.path.lstrip("/")
        where = kwargs.get("unix_socket") or f"{kwargs.get('host')}:{kwargs.get('port')}"
        key = (where, kwargs["user"])
        try:
            db = self._pool.get(key)
            if db is None:
                db = self._pool[key] = pymysql.connect(**kwargs)
            with db.cursor() as cur:
                cur.execute(f"USE `{name}`")
                cur.execute(sql, args)
                rows = cur.fetchall()
            db.commit()  # end the read snapshot: the next call sees nova-manage's changes
            return rows
        except pymysql.MySQLError as exc:
            self._pool.pop(key, None)
            raise NovaManageError(
                f"cannot connect to database {name} at {where}: {self.scrub(exc)}"
            ) from None

    def close(self):
        for db in self._pool.values():
            try:
                db.close()
            except Exception:  # pylint: disable=broad-except
                pass
        self._pool.clear()

    def __del__(self):
        self.close()


def _oslo_escape(value):
    # oslo.config substitutes $name in values; percent-encoded URLs hold no other specials.
    return str(value).replace("$", "$$")


def _mask_url(text):
    """Replace passwords in URLs (``scheme://user:secret@``) with ``****``."""
    return re.sub(r"(//[^:/@\s]*):[^@\s]*@", rf"\1:{MASK}@", str(text))


def _split(kwargs):
    """Keep the options this module knows; drop Salt's ``__pub_*``; refuse typos."""
    opts = {}
    for key, value in kwargs.items():
        if key.startswith("__"):
            continue
        if key not in DB_KEYS + NAME_KEYS + TARGET_KEYS:
            raise NovaManageError(f"unknown option {key}")
        opts[key] = value
    return opts


_ERROR_LINE = re.compile(r"error|exception|can't|cannot|failed|refused|denied|not found|invalid|must",
                         re.I)


_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Failure|Exit)\b:?")
_NOISE_LINE = re.compile(r"^\(Background on this error|^\^+$|^~+$")


def _error_line(result, conn):
    """The one line that says what went wrong: the exception of a traceback, else the last
    line that reads like an error, else the last line."""
    def clean(text):
        return [l.strip() for l in (text or "").splitlines()
                if l.strip() and not _NOISE_LINE.match(l.strip())]

    stderr, stdout = clean(result.get("stderr")), clean(result.get("stdout"))
    for lines, pattern in ((stderr, _EXCEPTION_LINE), (stderr, _ERROR_LINE),
                           (stdout, _ERROR_LINE)):
        pick = next((l for l in reversed(lines) if pattern.search(l)), None)
        if pick:
            break
    else:
        pick = (stderr or stdout or ["no output"])[-1]
    return conn.scrub(pick)


def _run(nova, conn, args, ok=(0,), tool="manage", timeout=None):
    """Run nova-manage (or nova-status) with the call's config file; raise on an unexpected rc."""
    binary = nova.manage if tool == "manage" else nova.status
    if not os.access(binary, os.X_OK):
        raise NovaManageError(f"{binary} is missing")
    started = time.monotonic()
    with conn.config() as path:
        argv = [binary, "--config-file", path, *args]
        result = leapfrog_cmd.run(__salt__["cmd.run_all"], argv, ok_codes=ANY_RC,
                                  env={"PYTHONWARNINGS": "ignore"}, timeout=timeout)
    result = dict(result)
    result["seconds"] = round(time.monotonic() - started, 2)
    result["stdout"] = conn.scrub(result.get("stdout") or "")
    result["stderr"] = conn.scrub(result.get("stderr") or "")
    name = os.path.basename(binary)
    log.debug("%s %s: rc %s in %s s", name, " ".join(args), result["retcode"], result["seconds"])
    if result["retcode"] not in ok:
        raise NovaManageError(
            f"{name} {' '.join(args)} exited {result['retcode']}: {_error_line(result, conn)}"
        )
    return result


def _setup(kwargs, release=None):
    opts = _split(kwargs)
    return opts, _nova(opts, release), _Conn(opts)


# ---------------------------------------------------------------------------------------------
# revisions


def _has_table(conn, schema, table, database=None):
    rows = conn.query(schema, "SELECT COUNT(*) FROM information_schema.tables WHERE "
                              "table_schema = DATABASE() AND table_name = %s", (table,), database)
    return bool(rows[0][0])


def _sql_revision(conn, schema, database=None):
    if not _has_table(conn, schema, "alembic_version", database):
        return None
    rows = conn.query(schema, "SELECT version_num FROM alembic_version", (), database)
    return rows[0][0] if rows else None


def _cli_revision(nova, conn, schema):
    args = ["api_db", "version"] if schema == "api" else ["db", "version"]
    if schema == "cell0":
        raise NovaManageError("the cell0 revision can only be read with PyMySQL")
    out = _run(nova, conn, args)["stdout"].strip().splitlines()
    value = out[-1].strip() if out else "None"
    return None if value == "None" else value


def _revision(nova, conn, schema, via="auto"):
    if via == "nova-manage" or (via == "auto" and not HAS_PYMYSQL) or schema not in conn.urls:
        return _cli_revision(nova, conn, schema)
    return _sql_revision(conn, schema)


def _cell0_database(conn):
    """Name of the database cell0's mapping points at, or None when cell0 is not mapped."""
    if not _has_table(conn, "api", "cell_mappings"):
        return None
    rows = conn.query("api", "SELECT database_connection FROM cell_mappings WHERE uuid = %s",
                      (CELL0_UUID,))
    row = rows[0] if rows else None
    if not row or not row[0]:
        return None
    return urllib.parse.urlsplit(row[0]).path.lstrip("/") or None


def _revisions(nova, conn, via="auto"):
    """Current revisions: ``api``, ``main`` and, when cell0 is mapped (read by SQL), ``cell0``
    (nova's ``db sync`` upgrades cell0 through its mapping)."""
    out = {schema: _revision(nova, conn, schema, via) for schema in SCHEMAS}
    if conn.urls and via != "nova-manage" and HAS_PYMYSQL:
        name = _cell0_database(conn)
        if name:
            out["cell0"] = _sql_revision(conn, "main", database=name)
    return out


def api_db_version(release=None, **kwargs):
    """
    Return the API database's alembic revision, or None before its first sync.

    CLI Example:

    .. code-block:: bash

        salt ctl01 nova_manage.api_db_version release=2025.1
    """
    opts, nova, conn = _setup(kwargs, release)
    return _revision(nova, conn, "api", opts.get("via", "auto"))


def db_version(release=None, **kwargs):
    """
    Return the main (cell) database's alembic revision, or None before its first sync.

    CLI Example:

    .. code-block:: bash

        salt ctl01 nova_manage.db_version release=2025.1
    """
    opts, nova, conn = _setup(kwargs, release)
    return _revision(nova, conn, "main", opts.get("via", "auto"))


def versions(release=None, **kwargs):
    """
    Return the revisions of the api, main and cell0 databases and where the release's heads are.

    CLI Example:

    .. code-block:: bash

        salt ctl01 nova_manage.versions release=2026.1
    """
    opts, nova, conn = _setup(kwargs, release)
    chains = _chains(nova)
    current = _revisions(nova, conn, opts.get("via", "auto"))
    return {"release": nova.release, "nova": nova.version, "revisions": current,
            "heads": {s: chains[s][-1] for s in SCHEMAS},
            "at_head": all(current.get(s) == chains["api" if s == "api" else "main"][-1]
                           for s in current)}


def revisions(release=None, schema="main", **kwargs):
    """
    Return the alembic revision chain a release ships for ``schema`` (``main`` or ``api``),
    oldest first, read from its migration files.

    CLI Example:

    .. code-block:: bash

        salt ctl01 nova_manage.revisions release=2025.1 schema=api
    """
    if schema not in SCHEMAS:
        raise NovaManageError(f"schema must be one of {', '.join(SCHEMAS)}, not {schema}")
    opts = _split(kwargs)
    return _chains(_nova(opts, release))[schema]


def pending(release=None, revision=None, api_revision=None, **kwargs):
    """
    Return the migrations a sync to ``release``'s heads (or to ``revision`` / ``api_revision``)
    would apply, per database, without changing anything.

    CLI Example:

    .. code-block:: bash

        salt ctl01 nova_manage.pending release=2025.1
    """
    opts, nova, conn = _setup(kwargs, release)
    return _pending_for(nova, conn, revision, api_revision, opts.get("via", "auto"))


def _pending_for(nova, conn, revision=None, api_revision=None, via="auto", current=None):
    chains = _chains(nova)
    current = current or _revisions(nova, conn, via)
    targets = {"api": _resolve(chains["api"], api_revision, "api", nova),
               "main": _resolve(chains["main"], revision, "main", nova)}
    out = {"release": nova.release, "targets": targets, "current": current, "pending": {}}
    for schema in ("api", "main", "cell0"):
        if schema not in current:
            continue
        chain = chains["api" if schema == "api" else "main"]
        target = targets["api" if schema == "api" else "main"]
        what = {"api": "API database", "main": "main database", "cell0": "cell0 database"}[schema]
        out["pending"][schema] = _pending(chain, current[schema], target, schema, nova, what)
    return out


# ---------------------------------------------------------------------------------------------
# schema syncs


def api_db_sync(release=None, revision=None, **kwargs):
    """
    Upgrade the API database to ``revision`` (default: the release's head).

    Refuses a revision that is not in the release's API chain and a target older than the
    current revision (nova would silently do nothing). Returns the revisions before/after and
    the migrations applied.

    CLI Example:

    .. code-block:: bash

        salt ctl01 nova_manage.api_db_sync release=2025.1
    """
    opts, nova, conn = _setup(kwargs, release)
    return _sync(nova, conn, "api", revision, opts.get("via", "auto"))


def db_sync(release=None, revision=None, local_cell=False, **kwargs):
    """
    Upgrade the main database (and cell0 unless ``local_cell``) to ``revision`` (default:
    the release's head). Same refusals as ``api_db_sync``.

    CLI Example:

    .. code-block:: bash

        salt ctl01 nova_manage.db_sync release=2025.1 revision=2903cd72dc14
    """
    opts, nova, conn = _setup(kwargs, release)
    return _sync(nova, conn, "main", revision, opts.get("via", "auto"), local_cell)


def _sync(nova, conn, schema, revision, via="auto", local_cell=False):
    chain = _chains(nova)[schema]
    target = _resolve(chain, revision, schema, nova)
    before = _revisions(nova, conn, via)
    names = ["api"] if schema == "api" else (["main"] if local_cell else ["main", "cell0"])
    names = [n for n in names if n in before]
    todo = {n: _pending(chain, before[n], target, schema, nova, f"{n} database") for n in names}
    step = {"step": "api_db sync" if schema == "api" else "db sync", "release": nova.release,
            "target": target, "before": {n: before[n] for n in names}, "pending": todo,
            "ran": False, "seconds": 0.0}
    if not any(todo.values()):
        step["after"] = dict(step["before"])
        return step
    args = (["api_db", "sync"] if schema == "api" else ["db", "sync"] +
            (["--local_cell"] if local_cell else []))
    result = _run(nova, conn, args + [target])
    after = _revisions(nova, conn, via)
    step.update(ran=True, seconds=result["seconds"], after={n: after[n] for n in names})
    wrong = {n: after[n] for n in names if after[n] != target}
    if wrong:
        raise NovaManageError(
            f"{step['step']} to {target} exited 0 but left {wrong}: check nova-manage's output"
        )
    return step


# ---------------------------------------------------------------------------------------------
# online data migrations

_TABLE_ROW = re.compile(r"^\|(.+)\|\s*$")


def _parse_table(text):
    """Parse a PrettyTable printed by nova-manage into a list of dicts (header -> cell)."""
    rows = [[c.strip() for c in m.group(1).split("|")]
            for m in (_TABLE_ROW.match(l.strip()) for l in text.splitlines()) if m]
    if not rows:
        return []
    header = rows[0]
    return [dict(zip(header, row)) for row in rows[1:] if len(row) == len(header)]


def _parse_migrations(text):
    out = {}
    for row in _parse_table(text):
        name = row.get("Migration")
        if name:
            out[name] = {"found": int(row.get("Total Needed") or 0),
                         "done": int(row.get("Completed") or 0)}
    return out


def online_data_migrations(release=None, max_count=None, max_batches=1000, **kwargs):
    """
    Run the release's online data migrations until nothing is left.

    ``max_count=None`` lets nova run batches of 50 until complete in one process;
    ``max_count=N`` runs one batch of N per call and repeats while nova exits 1 (more work),
    stopping at exit 0. Returns per migration the rows found and migrated (summed over the
    batches), the total migrated and the number of calls.

    CLI Example:

    .. code-block:: bash

        salt ctl01 nova_manage.online_data_migrations release=2025.1 max_count=1000
    """
    _opts, nova, conn = _setup(kwargs, release)
    return _online(nova, conn, max_count, max_batches)


def _count(value, name):
    """A positive whole number of rows or calls (1 to 10 million)."""
    return leapfrog_parse.number(value, name, minimum=1, maximum=10_000_000, integer=True,
                                 error=NovaManageError)


def _online(nova, conn, max_count=None, max_batches=1000):
    args = ["db", "online_data_migrations"]
    max_batches = _count(max_batches, "max_batches")
    if max_count is not None:
        args += ["--max-count", str(_count(max_count, "max_count"))]
    totals, calls, seconds = {}, 0, 0.0
    while True:
        result = _run(nova, conn, args, ok=(0, 1))
        calls += 1
        seconds += result["seconds"]
        for name, counts in _parse_migrations(result["stdout"]).items():
            slot = totals.setdefault(name, {"found": 0, "done": 0})
            slot["found"] += counts["found"]
            slot["done"] += counts["done"]
        if result["retcode"] == 0:
            break
        if max_count is None or calls >= max_batches:
            raise NovaManageError(
                f"online data migrations still report work after {calls} call(s): "
                f"{_error_line(result, conn)}"
            )
    return {"step": "online_data_migrations", "release": nova.release, "calls": calls,
            "migrations": totals, "migrated": sum(c["done"] for c in totals.values()),
            "ran": True, "seconds": round(seconds, 2)}


# ---------------------------------------------------------------------------------------------
# cells


def _sql_cells(conn):
    rows = conn.query("api", "SELECT name, uuid, transport_url, database_connection, disabled "
                             "FROM cell_mappings ORDER BY id")
    return [{"name": r[0], "uuid": r[1], "transport_url": _mask_url(r[2] or ""),
             "database_connection": _mask_url(r[3] or ""), "disabled": bool(r[4])} for r in rows]


def _parse_cells(text):
    """Parse ``nova-manage cell_v2 list_cells`` output into dicts."""
    out = []
    for row in _parse_table(text):
        out.append({"name": row.get("Name") or None, "uuid": row.get("UUID"),
                    "transport_url": _mask_url(row.get("Transport URL", "")),
                    "database_connection": _mask_url(row.get("Database Connection", "")),
                    "disabled": row.get("Disabled") == "True"})
    return out


def _cells(nova, conn, via="auto"):
    if via == "nova-manage" or not HAS_PYMYSQL or "api" not in conn.urls:
        return _parse_cells(_run(nova, conn, ["cell_v2", "list_cells"])["stdout"])
    return _sql_cells(conn)


def list_cells(release=None, **kwargs):
    """
    Return the cell mappings: name, uuid, transport_url and database_connection (passwords
    masked), disabled.

    CLI Example:

    .. code-block:: bash

        salt ctl01 nova_manage.list_cells release=2025.1 via=nova-manage
    """
    opts, nova, conn = _setup(kwargs, release)
    return _cells(nova, conn, opts.get("via", "auto"))


def isolate_cells(suffix="_upgrade", transport_vhost=None, **kwargs):
    """
    Point a cloned API database's cell mappings at the cloned cell databases and, with
    ``transport_vhost``, at a message queue vhost of their own.

    A clone of ``nova_api`` still maps cell0 and cell1 to the production ``nova_cell0`` and
    ``nova``: a rehearsal that ran ``db sync`` through those mappings would migrate
    production. This rewrites each mapping of ``<api_database><suffix>`` to
    ``<name><suffix>`` (already suffixed ones are left alone); it only ever opens the suffixed
    API database, so production's mappings cannot be touched. With ``transport_vhost`` (a
    rehearsal's throwaway controller) each cell's transport URL keeps its broker and user
    but gets that vhost: a nova-api serving the clones never casts to production's
    conductors and computes (cell0's ``none:///`` is left). Returns the rewritten cells
    (database and vhost names only; no URL or password).

    CLI Example:

    .. code-block:: bash

        salt ctl01 nova_manage.isolate_cells suffix=_upgrade
        salt ctl01 nova_manage.isolate_cells suffix=_upgrade transport_vhost=leapfrog_rehearsal
    """
    if not suffix:
        raise NovaManageError("isolate_cells needs a suffix (e.g. _upgrade)")
    vhost = _vhost(transport_vhost)
    conn = _Conn({**_split(kwargs), "suffix": suffix})
    rows = conn.query("api", "SELECT id, name, database_connection, transport_url "
                             "FROM cell_mappings ORDER BY id")
    changed = []
    for row_id, name, url, transport in rows:
        parts = urllib.parse.urlsplit(url or "")
        database = parts.path.lstrip("/")
        if database and not database.endswith(suffix):
            conn.query("api", "UPDATE cell_mappings SET database_connection = %s WHERE id = %s",
                       (parts._replace(path=f"/{database}{suffix}").geturl(), row_id))
            changed.append({"cell": name, "old": database, "new": f"{database}{suffix}"})
        moved = _in_vhost(transport, vhost)
        if moved:
            conn.query("api", "UPDATE cell_mappings SET transport_url = %s WHERE id = %s",
                       (moved, row_id))
            changed.append({"cell": name, "transport_vhost": vhost})
    conn.close()
    return {"api_database": conn.api_database, "changed": changed}


def _vhost(value):
    """A message queue vhost name (None: leave the transport URLs)."""
    if value in (None, ""):
        return None
    problem = leapfrog_schema.vhost_problem(str(value))
    if problem:
        raise NovaManageError(f"transport_vhost: {problem}")
    return str(value)


def _in_vhost(url, vhost):
    """``url`` (a cell's transport URL) with its path set to ``/vhost``; None when there is
    nothing to change (no vhost asked, no broker, already there)."""
    parts = urllib.parse.urlsplit(url or "")
    if vhost is None or not parts.netloc or parts.path == f"/{vhost}":
        return None
    return parts._replace(path=f"/{vhost}").geturl()


def _cell_uuid(cells, name):
    for cell in cells:
        if cell["name"] == name:
            return cell["uuid"]
    known = ", ".join(str(c["name"]) for c in cells) or "none"
    raise NovaManageError(f"no cell named {name} (cells: {known})")


def map_cell0(release=None, **kwargs):
    """
    Map cell0 (idempotent). Returns whether it changed anything.

    CLI Example:

    .. code-block:: bash

        salt ctl01 nova_manage.map_cell0 release=2024.1
    """
    opts, nova, conn = _setup(kwargs, release)
    return _map_cell0(nova, conn, opts.get("via", "auto"))


def _map_cell0(nova, conn, via="auto"):
    before = _cells(nova, conn, via)
    if any(c["uuid"] == CELL0_UUID for c in before):
        return {"step": "map_cell0", "changed": False, "uuid": CELL0_UUID}
    result = _run(nova, conn, ["cell_v2", "map_cell0"])
    return {"step": "map_cell0", "changed": True, "uuid": CELL0_UUID, "seconds": result["seconds"]}


def create_cell(name="cell1", release=None, disabled=False, **kwargs):
    """
    Create the cell ``name`` for the main database; an existing cell of that name is not an
    error (``changed`` False). The transport URL comes from ``transport_url`` (call or pillar
    ``leapfrog:nova:transport_url``) through the config file, never the command line.

    CLI Example:

    .. code-block:: bash

        salt ctl01 nova_manage.create_cell cell1 release=2024.1
    """
    opts, nova, conn = _setup(kwargs, release)
    return _create_cell(nova, conn, name, disabled, opts.get("via", "auto"))


def _create_cell(nova, conn, name, disabled=False, via="auto"):
    cells = _cells(nova, conn, via)
    for cell in cells:
        if cell["name"] == name:
            return {"step": "create_cell", "name": name, "uuid": cell["uuid"], "changed": False}
    if not conn.transport_url and not conn.config_file:
        raise NovaManageError(
            f"creating cell {name} needs a transport_url (call or pillar leapfrog:nova:transport_url)"
        )
    args = ["cell_v2", "create_cell", "--name", name, "--verbose"] + (["--disabled"] if disabled else [])
    result = _run(nova, conn, args, ok=(0, 2))
    if result["retcode"] == 2:  # same transport + database already mapped under another name
        return {"step": "create_cell", "name": name, "changed": False,
                "comment": "a cell with this transport URL and database already exists"}
    uuid = result["stdout"].strip().splitlines()[-1].strip()
    return {"step": "create_cell", "name": name, "uuid": uuid, "changed": True,
            "seconds": result["seconds"]}


def discover_hosts(release=None, cell=None, by_service=False, host=None, timeout=120,
                   **kwargs):
    """
    Map compute hosts to cells (``cell``: a cell name, looked up by name). Returns the hosts
    newly mapped. With ``host``, again every few seconds until that compute host is mapped
    (a nova-compute just started registers within seconds), for up to ``timeout`` seconds;
    then an error naming it.

    CLI Example:

    .. code-block:: bash

        salt ctl01 nova_manage.discover_hosts release=2026.1 cell=cell1
        salt ctl01 nova_manage.discover_hosts release=2026.1 suffix=_upgrade host=upg01
    """
    opts, nova, conn = _setup(kwargs, release)
    limit = leapfrog_parse.seconds(timeout, "timeout", error=NovaManageError)
    deadline, hosts = time.monotonic() + limit, []
    while True:
        found = _discover(nova, conn, cell, by_service, opts.get("via", "auto"))
        hosts += found["hosts"]
        if host is None or conn.query("api", "SELECT 1 FROM host_mappings WHERE host = %s",
                                      (host,)):
            return dict(found, hosts=hosts, changed=bool(hosts))
        if time.monotonic() > deadline:
            raise NovaManageError(f"compute host {host} not found in any cell after {limit:.0f} "
                                  "s: is its nova-compute running and reporting?")
        time.sleep(3)


_HOST_MAPPED = re.compile(r"Creating host mapping for (?:compute host|service) '([^']+)'")


def _discover(nova, conn, cell=None, by_service=False, via="auto"):
    args = ["cell_v2", "discover_hosts", "--verbose"]
    if cell:
        args += ["--cell_uuid", _cell_uuid(_cells(nova, conn, via), cell)]
    if by_service:
        args.append("--by-service")
    result = _run(nova, conn, args)
    hosts = _HOST_MAPPED.findall(result["stdout"])
    return {"step": "discover_hosts", "hosts": hosts, "changed": bool(hosts),
            "output": result["stdout"].strip().splitlines(), "seconds": result["seconds"]}


def map_instances(cell="cell1", release=None, max_count=None, max_batches=1000, **kwargs):
    """
    Map the instances of cell ``cell`` (looked up by name) until all are mapped.

    CLI Example:

    .. code-block:: bash

        salt ctl01 nova_manage.map_instances cell1 release=2024.1 max_count=5000
    """
    opts, nova, conn = _setup(kwargs, release)
    uuid = _cell_uuid(_cells(nova, conn, opts.get("via", "auto")), cell)
    args = ["cell_v2", "map_instances", "--cell_uuid", uuid]
    max_batches = _count(max_batches, "max_batches")
    if max_count is not None:
        args += ["--max-count", str(_count(max_count, "max_count"))]
    calls = 0
    while True:
        result = _run(nova, conn, args, ok=(0, 1))
        calls += 1
        if result["retcode"] == 0:
            break
        if calls >= max_batches:
            raise NovaManageError(f"map_instances still reports work after {calls} calls")
    return {"step": "map_instances", "cell": cell, "uuid": uuid, "calls": calls}


# ---------------------------------------------------------------------------------------------
# the staged sync


def _hop(nova, conn, cell, via, online, max_count, discover):
    # Cells are mapped right after the API schema (their table lives there) and before db sync,
    # so that db sync upgrades cell0 too (it finds cell0 through its mapping).
    steps = [_sync(nova, conn, "api", None, via)]
    if cell:
        before = _cells(nova, conn, via)
        mapped = []
        if not any(c["uuid"] == CELL0_UUID for c in before):
            mapped.append(_map_cell0(nova, conn, via))
        if not any(c["name"] == cell for c in before):
            mapped.append(_create_cell(nova, conn, cell, via=via))
        after = _cells(nova, conn, via) if mapped else before
        steps.append({"step": "cell mapping", "cells_before": [str(c["name"]) for c in before],
                      "cells_after": [str(c["name"]) for c in after], "ran": bool(mapped),
                      "seconds": round(sum(m.get("seconds", 0) for m in mapped), 2)})
    steps.append(_sync(nova, conn, "main", None, via))
    if online:
        steps.append(_online(nova, conn, max_count))
    if discover:
        steps.append(_discover(nova, conn, cell, via=via))
    return steps


def _changed(step):
    if step["step"] in ("api_db sync", "db sync"):
        return step["before"] != step["after"]
    if step["step"] == "online_data_migrations":
        return step["migrated"] > 0
    if step["step"] == "discover_hosts":
        return step["changed"]
    return step.get("ran", False)


def _upgrade_path(path):
    """The upgrade path as a list of release names: ``path`` (a list, or "a -> b" / "a,b")
    or pillar ``leapfrog:releases:path``."""
    path = path or _pillar("leapfrog:releases:path", None)
    if isinstance(path, str):
        path = [p.strip() for p in path.replace("->", ",").split(",") if p.strip()]
    if not path:
        raise NovaManageError("no upgrade path: pass path or set pillar leapfrog:releases:path")
    return [str(p) for p in path]


def staged_sync(path=None, cell="cell1", online=True, max_count=None, discover=False, **kwargs):
    """
    Run nova's DB upgrades hop by hop along ``path`` (default pillar
    ``leapfrog:releases:path``), each hop with that release's nova: api_db sync, db sync
    (main and cell0), online data migrations to completion, cell mapping (cell0 and ``cell``;
    ``cell=None`` skips it), host discovery if ``discover``.

    Every schema step compares the current revision to the release's chain first: a step
    already done is skipped, a DB newer than the hop is refused. So a re-run after success
    changes nothing and a re-run after a failure continues where it stopped. Returns per hop
    the steps with revisions before/after, online migration counts and seconds.

    CLI Example:

    .. code-block:: bash

        salt ctl01 nova_manage.staged_sync '["2024.1", "2025.1", "2026.1"]'
    """
    opts = _split(kwargs)
    path = _upgrade_path(path)
    started = time.monotonic()
    # Resolve every hop before touching anything: an unknown release or missing venv stops here.
    novas = [_nova(opts, release) for release in path]
    conn = _Conn(opts)
    via = opts.get("via", "auto")
    final = _check_path(novas, conn, via)
    hops = []
    for nova in novas:
        hop_started = time.monotonic()
        passed = _passed(nova, conn, via, final)
        if passed:
            hops.append({"release": nova.release, "nova": nova.version, "steps": [],
                         "skipped": passed, "changed": False, "seconds": 0.0})
            continue
        try:
            steps = _hop(nova, conn, cell, via, online, max_count, discover)
        except leapfrog_errors.LeapfrogError as exc:
            done = [f"{h['release']}" for h in hops]
            raise NovaManageError(
                f"staged sync stopped in hop {nova.release}: {exc} "
                f"(hops done: {', '.join(done) or 'none'}; re-run to continue)"
            ) from None
        hops.append({"release": nova.release, "nova": nova.version, "steps": steps,
                     "changed": any(_changed(s) for s in steps),
                     "seconds": round(time.monotonic() - hop_started, 2)})
    return {"path": path, "changed": any(h["changed"] for h in hops), "hops": hops,
            "revisions": _revisions(novas[-1], conn, via),
            "seconds": round(time.monotonic() - started, 2)}


def _check_path(novas, conn, via):
    """Refuse a path whose releases go backwards or that starts behind the DB."""
    majors = [int(n.version.split(".")[0]) for n in novas if n.version]
    if majors != sorted(majors):
        raise NovaManageError(f"upgrade path goes backwards: {[n.release for n in novas]}")
    last = _chains(novas[-1])
    current = _revisions(novas[-1], conn, via)
    for schema, rev in current.items():
        chain = last["api" if schema == "api" else "main"]
        if rev is not None and rev not in chain:
            raise NovaManageError(
                f"{schema} database is at revision {rev}, unknown to nova {novas[-1].release} "
                "(the last hop): it was upgraded by a newer release"
            )
    return last


def _passed(nova, conn, via, final, current=None):
    """Why a hop is already behind the databases (a later hop's sync ran), else None.

    Chains only grow from release to release, so the last hop's chain orders every revision.
    """
    heads = _chains(nova)
    current = current if current is not None else _revisions(nova, conn, via)
    for schema, rev in current.items():
        key = "api" if schema == "api" else "main"
        chain = final[key]
        if rev is not None and heads[key][-1] in chain and chain.index(rev) > chain.index(heads[key][-1]):
            return f"{schema} database at {rev} is past {nova.release}'s head {heads[key][-1]}"
    return None


def staged_pending(path=None, cell="cell1", **kwargs):
    """
    Return, per hop of ``path``, the schema migrations ``staged_sync`` would apply (and the
    cells it would map), without changing anything.

    CLI Example:

    .. code-block:: bash

        salt ctl01 nova_manage.staged_pending '["2024.1", "2025.1", "2026.1"]'
    """
    opts = _split(kwargs)
    path = _upgrade_path(path)
    novas = [_nova(opts, release) for release in path]
    conn = _Conn(opts)
    via = opts.get("via", "auto")
    final = _check_path(novas, conn, via)
    current = _revisions(novas[0], conn, via)
    missing = []
    if cell:
        cells = _cells(novas[0], conn, via) if current.get("api") else []
        if not any(c["uuid"] == CELL0_UUID for c in cells):
            missing.append("cell0")
            if "cell0" in conn.urls and HAS_PYMYSQL and via != "nova-manage":
                # staged_sync maps cell0 before db sync, which then upgrades it too
                current["cell0"] = _sql_revision(conn, "cell0")
        if not any(c["name"] == cell for c in cells):
            missing.append(cell)
    hops = []
    for nova in novas:
        passed = _passed(nova, conn, via, final, current)
        if passed:
            hops.append({"release": nova.release, "pending": {}, "skipped": passed})
            continue
        plan = _pending_for(nova, conn, current=dict(current))
        hops.append({"release": nova.release, "pending": plan["pending"]})
        for schema, revs in plan["pending"].items():
            if revs:
                current[schema] = revs[-1]
    return {"path": [n.release for n in novas], "hops": hops, "cells_to_map": missing,
            "revisions": current}


# ---------------------------------------------------------------------------------------------
# nova-status

def upgrade_check(release=None, **kwargs):
    """
    Run ``nova-status upgrade check`` and return each check (name, result Success / Warning /
    Failure, details) and the overall code (0 ok, 1 warning, 2 failure). Exit 255 (the tool
    crashed) is raised with the traceback's tail. nova-status needs placement reachable:
    use ``config_file`` with the [placement] and [service_user] sections (default: pillar
    ``leapfrog:nova:config_file``, the node's own nova.conf, if set).

    CLI Example:

    .. code-block:: bash

        salt ctl01 nova_manage.upgrade_check release=2026.1 config_file=/etc/nova/nova.conf
    """
    if not kwargs.get("config_file") and _pillar("leapfrog:nova:config_file"):
        kwargs["config_file"] = _pillar("leapfrog:nova:config_file")
    _opts, nova, conn = _setup(kwargs, release)
    result = _run(nova, conn, ["upgrade", "check"], ok=ANY_RC, tool="status")
    if result["retcode"] not in (0, 1, 2):
        tail = leapfrog_cmd.tail(result["stderr"] or result["stdout"], 8)
        raise NovaManageError(
            f"nova-status upgrade check crashed (exit {result['retcode']}): "
            f"{_error_line(result, conn)}\n{tail}"
        )
    return {"release": nova.release, **leapfrog_status.outcome(result["retcode"],
                                                                result["stdout"])}
