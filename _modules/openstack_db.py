"""
Database schema syncs of keystone, placement, glance, neutron and cinder, from a release's
virtualenv.

One small generic module: ``service`` names the tool (``keystone-manage``,
``placement-manage``, ``glance-manage``, ``neutron-db-manage``, ``cinder-manage``) and the
config section its connection goes in. The venv comes from ``release`` (pillar
``leapfrog:<service>:venvs:<release>`` for a service deployed in a venv of its own, else
``leapfrog:releases:venvs:<release>``), ``venv`` or ``binary``; the database from pillar
``leapfrog:database`` (host, port, socket, user, password) and ``database`` (default: pillar
``leapfrog:<service>:database``, else the service's name; ``suffix``: its rehearsal clone
``<database><suffix>``), or ``config_file`` (used as is).
The connection is written to a 0600 config file in a private temporary directory removed
after the call: the password is never on a command line, in a return or in a log.

Revisions are read from the database's ``alembic_version`` table (PyMySQL).
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
import leapfrog_errors
import leapfrog_status

try:
    import pymysql

    HAS_PYMYSQL = True
except ImportError:  # pragma: no cover - depends on the minion
    HAS_PYMYSQL = False

log = logging.getLogger(__name__)

__virtualname__ = "openstack_db"

MASK = "****"
ANY_RC = range(-255, 256)
DB_KEYS = ("host", "port", "socket", "user", "password")
OPTION_KEYS = DB_KEYS + ("release", "venv", "binary", "venvs", "config_file", "database",
                         "suffix")
# a rehearsal's clone suffix: what leapfrog_schema.clone_suffix allows
SUFFIX = re.compile(r"^_[a-z0-9_]{1,32}$")

# service -> its tool, config section, and the argv of each stage. ``check``: the tool's own
# check (argv, exit code -> the next stage), else the heads are read from the code: the
# files naming them (``head_files``, neutron's EXPAND_HEAD/CONTRACT_HEAD) or the end of the
# migration chain (``versions``). ``rolling``: the stages of a rolling upgrade, in order;
# ``offline``: the tool's "offline migrations pending?" (argv, exit code -> pending);
# ``defaults``: [DEFAULT] options the tool needs besides the connection.
SERVICES = {
    "keystone": {
        "tool": "keystone-manage", "section": "database", "package": "keystone",
        "stages": {"sync": ["db_sync"], "expand": ["db_sync", "--expand"],
                   "migrate": ["db_sync", "--migrate"], "contract": ["db_sync", "--contract"]},
        "check": (["db_sync", "--check"], {0: None, 2: "expand", 3: "migrate", 4: "contract"}),
        "rolling": ("expand", "migrate", "contract"),
    },
    "glance": {
        "tool": "glance-manage", "section": "database", "package": "glance",
        "stages": {"sync": ["db", "sync"], "expand": ["db", "expand"],
                   "migrate": ["db", "migrate"], "contract": ["db", "contract"]},
        "check": (["db", "check"], {0: None, 3: "expand", 4: "migrate", 5: "contract"}),
        "rolling": ("expand", "migrate", "contract"),
    },
    "placement": {
        "tool": "placement-manage", "section": "placement_database", "package": "placement",
        "stages": {"sync": ["db", "sync"]},
        "versions": "db/sqlalchemy/alembic/versions",  # a linear chain
    },
    "neutron": {
        "tool": "neutron-db-manage", "section": "database", "package": "neutron",
        "defaults": {"core_plugin": "ml2"},
        "stages": {"sync": ["upgrade", "heads"], "expand": ["upgrade", "--expand"],
                   "contract": ["upgrade", "--contract"]},
        "head_files": ("db/migration/alembic_migrations/versions",
                       {"EXPAND_HEAD": "expand", "CONTRACT_HEAD": "contract"}),
        "rolling": ("expand", "contract"),
        "offline": (["has_offline_migrations"], {0: False, 1: True}),
        # neutron-status of 2024.1 (24.x) crashes when OVN is configured: from 2025.1 on
        "status": ("neutron-status", "2025.1", "neutron-status of 2024.1 crashes with "
                   "ML2/OVN (ArgumentError: Textual SQL expression 'SHOW TABLES;')"),
    },
    "cinder": {
        "tool": "cinder-manage", "section": "database", "package": "cinder",
        "stages": {"sync": ["db", "sync"], "online": ["db", "online_data_migrations"]},
        "versions": "db/migrations/versions",  # a linear chain
        # it exits 1 (policy check) unless the config file is named cinder.conf
        "status": ("cinder-status", None, None),
    },
}


class OpenstackDbError(leapfrog_errors.LeapfrogError):
    """A service DB request is wrong or its tool failed (one line)."""


def __virtual__():
    if "cmd.run_all" not in __salt__:  # pragma: no cover
        return (False, "openstack_db needs cmd.run_all")
    return __virtualname__


def _pillar(key, default=None):
    # __pillar__ (plain values); Salt 3008's pillar.get masks them unless unmask=True.
    return salt.utils.data.traverse_dict_and_list(__pillar__, key, default)


def _mask_url(text):
    """Replace passwords in URLs (``scheme://user:secret@``) with ``****``."""
    return re.sub(r"(//[^:/@\s]*):[^@\s]*@", rf"\1:{MASK}@", str(text))


class _Call:
    """Everything one call needs: the service, its tool, the database and the secrets."""

    def __init__(self, service, kwargs, tool=None):
        if service not in SERVICES:
            raise OpenstackDbError(f"unknown service {service}; known: {', '.join(SERVICES)}")
        self.service = service
        self.spec = dict(SERVICES[service], **({"tool": tool} if tool else {}))
        opts = {}
        for key, value in kwargs.items():
            if key.startswith("__"):
                continue
            if key not in OPTION_KEYS:
                raise OpenstackDbError(f"unknown option {key}")
            opts[key] = value
        self.tool, self.venv = self._tool(opts)
        db = dict(_pillar("leapfrog:database", {}) or {})
        for key in DB_KEYS:
            setattr(self, key, opts[key] if opts.get(key) not in (None, "") else db.get(key))
        self.database = (opts.get("database") or _pillar(f"leapfrog:{service}:database")
                         or service)
        suffix = opts.get("suffix")
        if suffix is not None:  # the rehearsal's clone of the database, never production
            if not isinstance(suffix, str) or not SUFFIX.match(suffix):
                raise OpenstackDbError(f"suffix {suffix!r}: use '_' then 1-32 lower-case "
                                       "letters, digits or '_' (a clone's suffix)")
            if opts.get("config_file"):
                raise OpenstackDbError("suffix and config_file together: the config's "
                                       "connection names production's database")
            self.database += suffix
        self.config_file = opts.get("config_file")
        if self.config_file:
            self.url = self._url_from_config()
        elif not (self.socket or self.host):
            raise OpenstackDbError(
                "no database: give host or socket (call or pillar leapfrog:database) or config_file")
        else:
            self.url = self._url()
        self.secrets = [s for s in {self.password, urllib.parse.quote(str(self.password or ""), safe="")} if s]

    def _tool(self, opts):
        tool = self.spec["tool"]
        if opts.get("binary"):
            path = opts["binary"]
            if not os.access(path, os.X_OK):
                raise OpenstackDbError(f"{path} is not an executable {tool}")
            return path, None
        venv = opts.get("venv")
        release = opts.get("release")
        if not venv:
            if not release:
                raise OpenstackDbError("name a release (pillar leapfrog:releases:venvs), a venv or a binary")
            venvs = dict(_pillar("leapfrog:releases:venvs", {}) or {})
            venvs.update(_pillar(f"leapfrog:{self.service}:venvs", {}) or {})  # its own
            venvs.update(opts.get("venvs") or {})
            venvs = {str(k): v for k, v in venvs.items()}
            if str(release) not in venvs:
                raise OpenstackDbError(
                    f"unknown release {release}: not in pillar leapfrog:releases:venvs "
                    f"(known: {', '.join(sorted(venvs)) or 'none'})")
            venv = venvs[str(release)]
        if not os.path.isdir(venv):
            raise OpenstackDbError(f"venv {venv} does not exist")
        path = os.path.join(venv, "bin", tool)
        if not os.access(path, os.X_OK):
            raise OpenstackDbError(f"venv {venv} has no bin/{tool}: {self.service} is not installed there")
        return path, venv

    def _url(self):
        user = urllib.parse.quote(str(self.user or "root"), safe="")
        auth = user + (":" + urllib.parse.quote(str(self.password), safe="") if self.password else "")
        query = {"charset": "utf8"}
        if self.socket:
            host, query["unix_socket"] = "localhost", self.socket
        else:
            host = f"{self.host}:{self.port}" if self.port else str(self.host)
        return f"mysql+pymysql://{auth}@{host}/{self.database}?{urllib.parse.urlencode(query, safe='/')}"

    def _url_from_config(self):
        if not os.path.isfile(self.config_file):
            raise OpenstackDbError(f"config file {self.config_file} does not exist")
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        parser.read(self.config_file)
        section = self.spec["section"]
        if not parser.has_option(section, "connection"):
            raise OpenstackDbError(f"{self.config_file} has no [{section}] connection")
        url = parser.get(section, "connection")
        self.password = urllib.parse.unquote(urllib.parse.urlsplit(url).password or "") or None
        return url

    def scrub(self, text):
        text = str(text)
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return _mask_url(text)

    @contextlib.contextmanager
    def config(self):
        if self.config_file:
            yield self.config_file
            return
        tmpdir = tempfile.mkdtemp(prefix=f"leapfrog-{self.service}-")
        try:
            path = os.path.join(tmpdir, f"{self.service}.conf")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                defaults = self.spec.get("defaults") or {}
                if defaults:
                    handle.write("[DEFAULT]\n" + "".join(
                        f"{key} = {value}\n" for key, value in defaults.items()))
                handle.write(f"[{self.spec['section']}]\n"
                             f"connection = {self.url.replace('$', '$$')}\n"
                             "max_retries = 2\nretry_interval = 1\n")
            yield path
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)

    def run(self, args, ok=(0,)):
        started = time.monotonic()
        with self.config() as path:
            argv = [self.tool, "--config-file", path, *args]
            result = dict(leapfrog_cmd.run(__salt__["cmd.run_all"], argv, ok_codes=ANY_RC,
                                           env={"PYTHONWARNINGS": "ignore"}))
        result["seconds"] = round(time.monotonic() - started, 2)
        result["stdout"] = self.scrub(result.get("stdout") or "")
        result["stderr"] = self.scrub(result.get("stderr") or "")
        if result["retcode"] not in ok:
            raise OpenstackDbError(
                f"{os.path.basename(self.tool)} {' '.join(args)} exited {result['retcode']}: "
                f"{_error_line(result)}")
        return result

    def revisions(self):
        """Rows of the database's alembic_version (sorted), None when it has none."""
        if not HAS_PYMYSQL:
            raise OpenstackDbError("reading revisions needs PyMySQL on the minion")
        parts = urllib.parse.urlsplit(self.url)
        query = dict(urllib.parse.parse_qsl(parts.query))
        kwargs = {"user": urllib.parse.unquote(parts.username or "root"),
                  "password": urllib.parse.unquote(parts.password or ""),
                  "database": parts.path.lstrip("/"), "connect_timeout": 10}
        if query.get("unix_socket"):
            kwargs["unix_socket"] = query["unix_socket"]
        else:
            kwargs["host"], kwargs["port"] = parts.hostname or "localhost", parts.port or 3306
        try:
            conn = pymysql.connect(**kwargs)
        except pymysql.MySQLError as exc:
            where = kwargs.get("unix_socket") or f"{kwargs.get('host')}:{kwargs.get('port')}"
            raise OpenstackDbError(
                f"cannot connect to database {kwargs['database']} at {where}: {self.scrub(exc)}"
            ) from None
        with contextlib.closing(conn), conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = "
                        "DATABASE() AND table_name = 'alembic_version'")
            if not cur.fetchone()[0]:
                return None
            cur.execute("SELECT version_num FROM alembic_version")
            rows = sorted(r[0] for r in cur.fetchall())
        return rows or None

    def package_dir(self):
        if not self.venv:
            return None
        found = glob.glob(os.path.join(self.venv, "lib", "python3*", "site-packages",
                                       self.spec["package"]))
        return found[0] if found else None


_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Failure)\b:?")
_ERROR_LINE = re.compile(r"error|exception|can't|cannot|failed|refused|denied|not found|invalid", re.I)


def _error_line(result):
    def clean(text):
        return [l.strip() for l in (text or "").splitlines()
                if l.strip() and not l.strip().startswith("(Background on this error")]

    stderr, stdout = clean(result.get("stderr")), clean(result.get("stdout"))
    for lines, pattern in ((stderr, _EXCEPTION_LINE), (stderr, _ERROR_LINE), (stdout, _ERROR_LINE)):
        pick = next((l for l in reversed(lines) if pattern.search(l)), None)
        if pick:
            return pick
    return (stderr or stdout or ["no output"])[-1]


def _code_heads(call):
    """The heads the release's code migrates to, read from its files: ``{head: stage}``
    (the stage that reaches it), or None without the code."""
    package = call.package_dir()
    if not package:
        return None
    if "head_files" in call.spec:
        folder, files = call.spec["head_files"]
        heads = {}
        for name, stage in files.items():
            try:
                with open(os.path.join(package, folder, name), encoding="utf-8") as handle:
                    heads[handle.read().strip()] = stage
            except OSError:
                return None
        return heads
    links = {}
    for path in glob.glob(os.path.join(package, call.spec["versions"], "*.py")):
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        rev = re.search(r"^revision\s*=\s*['\"](\w+)['\"]", text, re.M)
        down = re.search(r"^down_revision\s*=\s*(?:None|['\"](\w+)['\"])", text, re.M)
        if rev and down:
            links[rev.group(1)] = down.group(1)
    return {head: "sync" for head in set(links) - set(links.values())} or None


def version(service, **kwargs):
    """
    Return the service database's alembic revisions (the rows of ``alembic_version``, sorted;
    keystone keeps one per branch), or None before its first sync.

    CLI Example:

    .. code-block:: bash

        salt ctl01 openstack_db.version keystone release=2026.1
    """
    return _Call(service, kwargs).revisions()


def check(service, **kwargs):
    """
    Say whether the service database is up to date with the release's code and, if not, the
    next step (``expand``, ``migrate``, ``contract`` or ``sync``), using the tool's own check
    (keystone ``db_sync --check``, glance ``db check``) or the heads its code names
    (placement's and cinder's migration chain, neutron's EXPAND_HEAD/CONTRACT_HEAD).

    CLI Example:

    .. code-block:: bash

        salt ctl01 openstack_db.check glance release=2026.1
        salt ctl01 openstack_db.check neutron release=2026.1
    """
    call = _Call(service, kwargs)
    current = call.revisions()
    if "check" not in call.spec:
        heads = _code_heads(call)
        if heads is None:
            raise OpenstackDbError(f"cannot read {service}'s migrations (give a venv)")
        missing = [stage for head, stage in heads.items() if head not in (current or [])]
        nxt = min(missing, key=list(call.spec["stages"]).index) if missing else None
        return {"service": service, "current": current, "heads": sorted(heads),
                "up_to_date": nxt is None, "next": nxt}
    args, codes = call.spec["check"]
    result = call.run(args, ok=tuple(codes))
    nxt = codes[result["retcode"]]
    return {"service": service, "current": current, "up_to_date": nxt is None, "next": nxt,
            "rc": result["retcode"]}


def offline_migrations(service, **kwargs):
    """
    Say whether the release's code has migrations that need every server of the service
    stopped (neutron: ``neutron-db-manage has_offline_migrations``, run with the target's
    code against the current database): ``pending`` True makes a rolling upgrade
    impossible. A service whose tool has no such check answers ``pending`` None.

    CLI Example:

    .. code-block:: bash

        salt ctl01 openstack_db.offline_migrations neutron release=2026.1
    """
    call = _Call(service, kwargs)
    if "offline" not in call.spec:
        return {"service": service, "pending": None,
                "comment": f"{call.spec['tool']} has no offline-migration check"}
    args, codes = call.spec["offline"]
    result = call.run(args, ok=tuple(codes))
    return {"service": service, "pending": codes[result["retcode"]],
            "seconds": result["seconds"]}


def upgrade_check(service, **kwargs):
    """
    Run the service's ``<service>-status upgrade check`` (neutron, cinder) with ``release``'s
    code against the node's own config (``config_file``, default pillar
    ``leapfrog:<service>:config_file``: the checks read more than the database) and return
    each check and the outcome (``code`` 0 Success, 1 Warning, 2 Failure). A release whose
    tool cannot check this deployment answers ``result`` ``Skipped`` with the reason; a
    crash (any other exit) raises with the tool's last line.

    CLI Example:

    .. code-block:: bash

        salt ctl01 openstack_db.upgrade_check neutron release=2025.1
    """
    spec = SERVICES.get(service) or {}
    if "status" not in spec:
        raise OpenstackDbError(f"{service} has no upgrade check here; known: "
                               f"{', '.join(n for n, s in SERVICES.items() if 'status' in s)}")
    tool, since, why = spec["status"]
    release = kwargs.get("release")
    if since and release and str(release) < since:
        return {"service": service, "release": str(release), "result": "Skipped",
                "code": None, "checks": [], "failed": [], "warnings": [],
                "comment": f"{why}: checked from {since}'s code on"}
    if not kwargs.get("config_file") and _pillar(f"leapfrog:{service}:config_file"):
        kwargs["config_file"] = _pillar(f"leapfrog:{service}:config_file")
    call = _Call(service, kwargs, tool=tool)
    result = call.run(["upgrade", "check"], ok=ANY_RC)
    if result["retcode"] not in leapfrog_status.RESULTS:
        raise OpenstackDbError(f"{tool} upgrade check crashed (exit {result['retcode']}): "
                               f"{_error_line(result)}")
    return {"service": service, "release": str(release) if release else None,
            **leapfrog_status.outcome(result["retcode"], result["stdout"]),
            "seconds": result["seconds"]}


def sync(service, stage="sync", **kwargs):
    """
    Run the service's schema sync. ``stage``: ``sync`` (offline, all of it), the stages of
    a rolling upgrade (keystone and glance ``expand`` / ``migrate`` / ``contract``, neutron
    ``expand`` / ``contract``) or ``rolling`` for them in order, cinder's ``online`` (online
    data migrations to completion). Returns the revisions before and after and whether
    they changed.

    CLI Example:

    .. code-block:: bash

        salt ctl01 openstack_db.sync keystone stage=expand release=2026.1
        salt ctl01 openstack_db.sync placement release=2026.1
        salt ctl01 openstack_db.sync neutron stage=contract release=2026.1
        salt ctl01 openstack_db.sync neutron stage=expand release=2026.1 suffix=_rehearsal
    """
    call = _Call(service, kwargs)
    stages = list(call.spec.get("rolling") or [stage]) if stage == "rolling" else [stage]
    for name in stages:
        if name not in call.spec["stages"]:
            raise OpenstackDbError(
                f"{service} has no stage {name}; it has: {', '.join(call.spec['stages'])}"
                + (", rolling" if call.spec.get("rolling") else ""))
    before = call.revisions()
    ran = []
    for name in stages:
        result = call.run(call.spec["stages"][name])
        ran.append({"stage": name, "seconds": result["seconds"]})
    after = call.revisions()
    return {"service": service, "stages": ran, "before": before, "after": after,
            "changed": before != after}
