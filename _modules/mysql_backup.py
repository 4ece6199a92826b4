"""Back up, verify, restore and clone MariaDB/MySQL databases; the DB pre-checks of an upgrade.

A backup is one folder ``<backup_dir>/<id>`` holding one compressed ``mariadb-dump
--single-transaction`` file per database (``<db>.sql.zst``, or ``.sql.gz`` without zstd) and
``manifest.json``: the databases, their charset, size, per-table row counts and row
checksums, the server version, ``lock_seconds`` and each file's size and sha256. A backup is
written under ``<id>.partial`` and renamed when complete, so a listed backup is a whole one.

One snapshot: the dumps of all databases and the manifest's counts/checksums come from the
same instant. A FLUSH TABLES WITH READ LOCK is held only while one dump per database opens
its transaction (``lock_seconds``, typically milliseconds: writers wait that long), then the
dumps and the checksums read in their snapshots while writers go on. A row checksum is
COUNT(*) and the sum of a CRC32 of every row (each column's CRC32 and its NULLs), read
through MVCC, unlike CHECKSUM TABLE; restores compare with the same method (backups of
format 1 with CHECKSUM TABLE).

Safety: one check (``_guard``) runs before every destructive path (``clone`` force,
``drop_clone``, ``restore`` over an existing database): never a MariaDB system schema, never
a production database (pillar ``leapfrog:database:databases``; for a renamed restore also
the backup's databases) except the same-name restore a rollback does, and for clones and
renamed restores never an existing database leapfrog did not create. What leapfrog creates
is marked in ``information_schema.SCHEMATA.SCHEMA_COMMENT`` (``leapfrog clone of nova``,
``leapfrog restore of nova``; MariaDB >= 10.5). A restore over an existing database loads a
staging database, compares it with the manifest and only then swaps the tables in with one
atomic RENAME TABLE; the replaced tables are kept until the result is verified (or on
request). Every numeric, boolean and enum argument is parsed and range-checked.

Connection: function arguments ``host``, ``port``, ``socket``, ``user``, ``password``, else
pillar ``leapfrog:database`` (the same keys as ``database`` in pillar_examples/cluster.sls);
a non-empty ``socket`` wins over host/port. The password reaches the CLIs only through a
0600 ``--defaults-extra-file`` removed afterwards: never a command line, a return or a log.

Backup folder: ``backup_dir`` argument, else pillar ``leapfrog:backups:dir`` + ``/mysql``,
else ``/var/backups/leapfrog/mysql``. ``prune`` keeps ``keep`` (else
``leapfrog:backups:keep``, else 3) backups.

"""
import concurrent.futures
import contextlib
import contextvars
import datetime
import gzip
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time

import leapfrog_parse
import leapfrog_cmd
import leapfrog_errors
import leapfrog_files
import leapfrog_mysql

try:
    import pymysql

    HAS_PYMYSQL = True
except ImportError:  # pragma: no cover - __virtual__ reports it
    HAS_PYMYSQL = False

import salt.utils.data
import salt.utils.path

log = logging.getLogger(__name__)

__virtualname__ = "mysql_backup"
__func_alias__ = {"list_": "list"}

DEFAULT_KEEP = 3
DEFAULT_SUFFIX = "_upgrade"
SPACE_MARGIN = 16 * 1024 * 1024
CHUNK = 1024 * 1024
CONNECTION_KEYS = leapfrog_mysql.CONNECTION_KEYS
_IDENT = re.compile(r"\A[A-Za-z0-9_$][A-Za-z0-9_$-]{0,63}\Z")
_SUFFIX = re.compile(r"\A_[A-Za-z0-9_]{1,40}\Z")
_WORD = re.compile(r"\A[A-Za-z0-9_]{1,64}\Z")
# What MariaDB itself owns: never dropped, replaced or restored over.
SYSTEM_SCHEMAS = ("mysql", "information_schema", "performance_schema", "sys")
# SCHEMA_COMMENT of every database leapfrog creates (clones, restore targets, staging and
# moved-aside copies): the only existing databases a clone, drop_clone or targeted restore
# may replace.
MARK = "leapfrog "
COMPRESSIONS = ("zstd", "gzip")
MAX_SECONDS = 86400
STATS_METHOD = "count+sum(crc32(row))"
LOCK_WAIT = 60
_UTF8 = ("utf8", "utf8mb3", "utf8mb4")
MANIFEST = "manifest.json"
FORMAT = 2


DatabaseUnreachable = leapfrog_mysql.DatabaseUnreachable


AccessDenied = leapfrog_mysql.AccessDenied


class DatabaseInUse(leapfrog_errors.LeapfrogError):
    """Other sessions still use a database that is about to be replaced."""


UnknownDatabase = leapfrog_mysql.UnknownDatabase


class DatabaseExists(leapfrog_errors.LeapfrogError):
    """A restore or clone target exists and ``force`` was not given."""


class NotEnoughSpace(leapfrog_errors.LeapfrogError):
    """Free space is below what the operation needs (checked before it starts)."""


class BackupCorrupt(leapfrog_errors.LeapfrogError):
    """A backup's files do not match its manifest, or do not decompress."""


class BackupNotFound(leapfrog_errors.LeapfrogError):
    """No backup with that id (or no backup at all) under the backup folder."""


class UnsafeTarget(leapfrog_errors.LeapfrogError):
    """A destructive operation named a system schema, a production database or a database
    leapfrog did not create."""


class RestoreMismatch(leapfrog_errors.LeapfrogError):
    """The staged copy of a restore does not match the backup's manifest (nothing replaced)."""


def _binary(*names):
    for name in names:
        found = salt.utils.path.which(name)
        if found:
            return found
    return None


def __virtual__():
    if not HAS_PYMYSQL:
        return (False, "mysql_backup: PyMySQL is not installed (pip install PyMySQL)")
    if not _binary("mariadb-dump", "mysqldump"):
        return (False, "mysql_backup: neither mariadb-dump nor mysqldump is installed "
                       "(install mariadb-client)")
    if not _binary("mariadb", "mysql"):
        return (False, "mysql_backup: neither the mariadb nor the mysql client is installed "
                       "(install mariadb-client)")
    return __virtualname__


def _pillar(key, default=None):
    """Read pillar from ``__pillar__`` itself: Salt 3008's ``pillar.get`` hands modules masked
    values ("**********") unless ``unmask=True``, which Salt 3007 does not know."""
    value = salt.utils.data.traverse_dict_and_list(__pillar__ or {}, key, None)
    return default if value is None else value


# --- connection (leapfrog_mysql) -------------------------------------------------------------
def _connection(kwargs):
    """Merge connection arguments over pillar ``leapfrog:database``; reject unknown ones."""
    return leapfrog_mysql.connection(kwargs, _pillar("leapfrog:database", {}), "mysql_backup")


_where = leapfrog_mysql.where
_scrub = leapfrog_mysql.scrub
_connect = leapfrog_mysql.connect
_defaults_file = leapfrog_mysql.defaults_file


def _run(argv, params, **kwargs):
    """leapfrog_cmd.run with the password scrubbed from any error text."""
    try:
        return leapfrog_cmd.run(__salt__["cmd.run_all"], argv, **kwargs)
    except leapfrog_errors.CommandFailed as exc:
        raise leapfrog_errors.CommandFailed(_scrub(exc, params)) from None


# --- small helpers ---------------------------------------------------------------------------
def _names(value, what="databases"):
    if value is None:
        return []
    if isinstance(value, str):
        value = [v.strip(" ") for v in value.split(",")]
    elif not isinstance(value, (list, tuple)):
        value = [value]
    names = [str(v) for v in value if str(v).strip()]
    bad = [n for n in names if not _IDENT.match(n)]
    if bad:
        raise leapfrog_errors.LeapfrogError(
            f"invalid {what} name(s) {', '.join(repr(b) for b in bad)}: use letters, digits, "
            "_ $ - (64 at most, not starting with -)"
        )
    return names


def _databases(databases):
    names = _names(databases)
    if not names:
        names = _names(_pillar("leapfrog:database:databases", []))
    if not names:
        raise leapfrog_errors.LeapfrogError(
            "no databases named: pass databases=nova,nova_api or set "
            "leapfrog:database:databases in pillar"
        )
    return list(dict.fromkeys(names))


def _q(name):
    return "`" + name.replace("`", "``") + "`"


def _backup_root(backup_dir):
    if backup_dir:
        return os.path.abspath(backup_dir)
    return leapfrog_files.backup_root(_pillar("leapfrog:backups:dir", ""), "mysql")


def _human(size):
    size = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"  # pragma: no cover


def _require_space(path, needed, what, fix):
    free = leapfrog_files.free_bytes(path)
    if free < needed:
        raise NotEnoughSpace(
            f"not enough free space in {path} for {what}: {_human(needed)} needed, "
            f"{_human(free)} free; {fix}"
        )
    return free


def _compression(requested):
    if requested in (None, ""):
        return "zstd" if _binary("zstd") else "gzip"
    leapfrog_parse.choice(requested, "compression", COMPRESSIONS)
    if requested == "zstd" and not _binary("zstd"):
        raise leapfrog_errors.LeapfrogError("compression zstd asked but zstd is not installed: "
                                            "install zstd or use compression=gzip")
    return requested


def _compress(raw, compression, params):
    if compression == "zstd":
        out = raw + ".zst"
        _run([_binary("zstd"), "-q", "--rm", "-3", "-T0", raw, "-o", out], params)
        return out
    out = raw + ".gz"
    with open(raw, "rb") as src, gzip.open(out, "wb", compresslevel=6) as dst:
        shutil.copyfileobj(src, dst, CHUNK)
    os.unlink(raw)
    return out


def _decompress(path, raw, compression, params):
    if compression == "zstd":
        _run([_binary("zstd"), "-d", "-q", "-f", path, "-o", raw], params)
    else:
        with gzip.open(path, "rb") as src, open(raw, "wb") as dst:
            shutil.copyfileobj(src, dst, CHUNK)
    os.chmod(raw, 0o600)


def _test_decompress(path, compression):
    """None when the file decompresses cleanly, else the reason."""
    if compression == "zstd":
        result = __salt__["cmd.run_all"]([_binary("zstd"), "-t", "-q", path],
                                         python_shell=False, ignore_retcode=True,
                                         output_loglevel="debug")
        if result["retcode"] != 0:
            return leapfrog_cmd.tail(result.get("stderr"), 1) or f"zstd -t exited {result['retcode']}"
        return None
    try:
        with gzip.open(path, "rb") as src:
            while src.read(CHUNK):
                pass
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        return str(exc) or type(exc).__name__
    return None


# --- what the server holds -------------------------------------------------------------------
def _existing(conn):
    with conn.cursor() as cur:
        cur.execute("SHOW DATABASES")
        return [row[0] for row in cur.fetchall()]


def _require_databases(conn, names, params):
    existing = _existing(conn)
    missing = [n for n in names if n not in existing]
    if missing:
        user_dbs = [d for d in existing
                    if d not in ("information_schema", "mysql", "performance_schema", "sys")]
        raise UnknownDatabase(
            f"unknown database(s) {', '.join(missing)} on {_where(params)} "
            f"(existing: {', '.join(user_dbs) or 'none'}): fix the names or "
            "leapfrog:database:databases"
        )


def _schema(conn, database):
    with conn.cursor() as cur:
        cur.execute(
            "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM "
            "information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (database,))
        charset, collation = cur.fetchone()
        cur.execute(
            "SELECT COALESCE(SUM(DATA_LENGTH + INDEX_LENGTH), 0) FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = %s", (database,))
        size = int(cur.fetchone()[0])
    return {"charset": charset, "collation": collation, "size_bytes": size}


def _tables(conn, database):
    with conn.cursor() as cur:
        cur.execute(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND "
            "TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME", (database,))
        return [row[0] for row in cur.fetchall()]


def _row_checksum_sql(conn, database, table):
    """A SELECT giving COUNT(*) and the sum of a CRC32 of every row: read through the
    transaction's snapshot (MVCC), unlike CHECKSUM TABLE, and independent of row order.
    A row's CRC32 covers each column's CRC32 and which columns are NULL."""
    with conn.cursor() as cur:
        cur.execute("SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s "
                    "AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION", (database, table))
        columns = [_q(row[0]) for row in cur.fetchall()]
    crcs = ", ".join(f"CRC32({c})" for c in columns)
    nulls = ", ".join(f"ISNULL({c})" for c in columns)
    return (f"SELECT COUNT(*), COALESCE(SUM(CRC32(CONCAT_WS(',', {crcs}, CONCAT({nulls})))), 0)"
            f" FROM {_q(database)}.{_q(table)}")


def _table_stats(conn, database, method=STATS_METHOD):
    """{table: {"rows": n, "checksum": c}} for every base table of ``database``, with
    ``method``: this module's row checksum, or ``CHECKSUM TABLE`` for backups of format 1."""
    tables = _tables(conn, database)
    stats = {}
    with conn.cursor() as cur:
        for table in tables:
            if method == STATS_METHOD:
                cur.execute(_row_checksum_sql(conn, database, table))
                rows, checksum = cur.fetchone()
                stats[table] = {"rows": int(rows), "checksum": int(checksum)}
                continue
            cur.execute(f"SELECT COUNT(*) FROM {_q(database)}.{_q(table)}")
            stats[table] = {"rows": int(cur.fetchone()[0])}
            cur.execute(f"CHECKSUM TABLE {_q(database)}.{_q(table)}")
            checksum = cur.fetchone()[1]
            stats[table]["checksum"] = None if checksum is None else int(checksum)
    return stats


@contextlib.contextmanager
def _snapshot(conn):
    """One consistent read view for the block (REPEATABLE READ, read only)."""
    with conn.cursor() as cur:
        cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
    try:
        yield conn
    finally:
        with conn.cursor() as cur:
            cur.execute("COMMIT")


def _snapshot_stats(conn, databases):
    """Row counts and checksums of several databases in one consistent read view."""
    with _snapshot(conn):
        return {db: _table_stats(conn, db) for db in databases}


def _differences(expected, found):
    """Readable lines for tables whose rows/checksum differ (``expected`` vs ``found``)."""
    lines = []
    for table in sorted(set(expected) | set(found)):
        if table not in found:
            lines.append(f"{table}: missing")
        elif table not in expected:
            lines.append(f"{table}: not expected")
        elif expected[table] != found[table]:
            exp, got = expected[table], found[table]
            lines.append(
                f"{table}: rows {exp.get('rows')} -> {got.get('rows')}, checksum "
                f"{exp.get('checksum')} -> {got.get('checksum')}"
            )
    return lines


def _datadir_space(conn, needed, what):
    """Check the server's datadir when it is on this host (a local socket or loopback)."""
    with conn.cursor() as cur:
        cur.execute("SELECT @@datadir")
        datadir = cur.fetchone()[0]
    if datadir and os.path.isdir(datadir):
        _require_space(datadir, needed, what,
                       "free space on the database server's disk first")


# --- dump / load -----------------------------------------------------------------------------
def _dump(params, database, raw):
    with _defaults_file(params) as cnf:
        _run([
            _binary("mariadb-dump", "mysqldump"), f"--defaults-extra-file={cnf}",
            "--single-transaction", "--quick", "--routines", "--triggers", "--hex-blob",
            "--default-character-set=utf8mb4", f"--result-file={raw}", database,
        ], params)
    os.chmod(raw, 0o600)


def _load(params, database, raw):
    """Load a plain SQL dump into ``database`` with the client's SOURCE command.

    SOURCE exits 0 after a failed statement unless ``--abort-source-on-error`` (MariaDB's
    client) is given, so an ``ERROR`` line on stderr is treated as a failure too.
    """
    client = _binary("mariadb", "mysql")
    with _defaults_file(params) as cnf:
        argv = [client, f"--defaults-extra-file={cnf}", "--default-character-set=utf8mb4",
                "--batch"]
        if os.path.basename(client) == "mariadb":
            argv.append("--abort-source-on-error")
        argv += [f"--database={database}", f"--execute=SOURCE {raw}"]
        result = _run(argv, params)
    errors = [line for line in (result.get("stderr") or "").splitlines()
              if line.startswith("ERROR")]
    if errors:
        raise leapfrog_errors.CommandFailed(
            f"{os.path.basename(client)} failed loading {database}: {_scrub(errors[0], params)}")


def _dump_all(conn, params, names, folder):
    """Dump ``names`` (one ``<db>.sql`` each in ``folder``) in ONE consistent snapshot, and
    read their row counts and checksums in that same snapshot.

    ``conn`` takes FLUSH TABLES WITH READ LOCK, opens its own consistent snapshot, starts
    one ``mariadb-dump --single-transaction`` per database, waits until each dump's
    connection has selected its database (mariadb-dump opens its transaction before that)
    or finished, then UNLOCK TABLES: writers wait only for that window. Returns
    ``(stats, lock_seconds)``."""
    with conn.cursor() as cur:
        cur.execute(f"SET SESSION lock_wait_timeout = {LOCK_WAIT}")
        try:
            cur.execute("FLUSH TABLES WITH READ LOCK")
        except pymysql.MySQLError as exc:
            raise leapfrog_errors.LeapfrogError(
                f"FLUSH TABLES WITH READ LOCK failed on {_where(params)} "
                f"({_scrub(exc.args[-1], params)}): a consistent backup needs the RELOAD "
                f"privilege and no statement running longer than {LOCK_WAIT} s; grant RELOAD "
                "to leapfrog:database:user or retry when the long statement ends") from None
    locked = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(names)) as pool:
        try:
            with conn.cursor() as cur:
                cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
                cur.execute("SELECT COALESCE(MAX(ID), 0) FROM information_schema.PROCESSLIST")
                first_id = int(cur.fetchone()[0])
            futures = {db: pool.submit(contextvars.copy_context().run, _dump, params, db,
                                       os.path.join(folder, f"{db}.sql")) for db in names}
            _wait_dumps_started(conn, futures, first_id, params)
        finally:
            with conn.cursor() as cur:
                cur.execute("UNLOCK TABLES")
            lock_seconds = round(time.monotonic() - locked, 3)
        try:
            stats = {db: _table_stats(conn, db) for db in names}
        finally:
            with conn.cursor() as cur:
                cur.execute("COMMIT")
        for future in futures.values():
            future.result()
    log.info("mysql_backup: writers were blocked %.3f s while %d dump(s) opened their "
             "snapshot", lock_seconds, len(names))
    return stats, lock_seconds


def _wait_dumps_started(conn, futures, first_id, params):
    waiting = set(futures)
    marks = ", ".join(["%s"] * len(waiting))
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        waiting = {db for db in waiting if not futures[db].done()}
        if waiting:
            with conn.cursor() as cur:
                cur.execute("SELECT DB FROM information_schema.PROCESSLIST WHERE ID > %s AND "
                            f"USER = %s AND DB IN ({marks})",
                            [first_id, params["user"], *futures])
                waiting -= {row[0] for row in cur.fetchall()}
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise leapfrog_errors.LeapfrogError(
                f"mariadb-dump of {', '.join(sorted(waiting))} did not open its snapshot within "
                f"{LOCK_WAIT} s (writers were blocked meanwhile): check the server's load and "
                "max_connections, then retry")
        time.sleep(0.005)


def _create(conn, database, charset, collation, force=False, mark=""):
    """CREATE DATABASE with the charset/collation and, for what leapfrog creates, the
    ``mark`` (``leapfrog ...``) as its SCHEMA_COMMENT (see ``_guard``)."""
    for word in (charset, collation):
        if not _WORD.match(str(word)):
            raise leapfrog_errors.LeapfrogError(
                f"invalid charset/collation {word!r} for {database}: check the manifest")
    with conn.cursor() as cur:
        if force:
            cur.execute(f"DROP DATABASE IF EXISTS {_q(database)}")
        cur.execute(
            f"CREATE DATABASE {_q(database)} CHARACTER SET {charset} COLLATE {collation}"
            + (" COMMENT %s" if mark else ""), (mark,) if mark else None)


def _drop(conn, database):
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {_q(database)}")


# --- manifests -------------------------------------------------------------------------------
def _manifest_path(root, backup_id):
    return os.path.join(root, backup_id, MANIFEST)


def _read_manifest(root, backup_id):
    path = _manifest_path(root, backup_id)
    try:
        with open(path, encoding="utf-8") as handle:
            manifest = json.load(handle)
    except FileNotFoundError:
        raise BackupNotFound(f"backup {backup_id} has no manifest in {root}: it is not a "
                             "complete mysql_backup backup") from None
    except ValueError as exc:
        raise BackupCorrupt(f"backup {backup_id}: manifest.json is unreadable ({exc}); "
                            "take a new backup") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("databases"), dict):
        raise BackupCorrupt(f"backup {backup_id}: manifest.json has no databases; take a new "
                            "backup")
    return manifest


def _backup_ids(root):
    return leapfrog_files.backup_ids(root, MANIFEST)


def _resolve(root, backup_id, label=None):
    """The backup id to use: ``backup_id``, or the newest (with ``label``) for ``latest``."""
    ids = _backup_ids(root)
    if backup_id in (None, "", "latest"):
        if label is not None:
            ids = [i for i in ids if _label_of(root, i) == str(label)]
            if not ids:
                raise BackupNotFound(f"no backup labelled {label} in {root}: take one with "
                                     f"mysql_backup.backup label={label}")
        if not ids:
            raise BackupNotFound(f"no backup in {root}: take one with mysql_backup.backup")
        return ids[-1]
    backup_id = str(backup_id)
    if not leapfrog_files.BACKUP_ID.match(backup_id):
        raise BackupNotFound(
            f"invalid backup id {backup_id!r}: an id is the name of a backup folder directly "
            f"under {root} (no /, no leading .); see mysql_backup.list")
    if backup_id not in ids:
        raise BackupNotFound(
            f"no backup {backup_id} in {root} (have: {', '.join(ids[-5:]) or 'none'})"
        )
    return backup_id


def _label_of(root, backup_id):
    try:
        return _read_manifest(root, backup_id).get("label")
    except leapfrog_errors.LeapfrogError:
        return None


def _summary(manifest, root):
    return {
        "id": manifest["id"],
        "path": os.path.join(root, manifest["id"]),
        "label": manifest.get("label"),
        "created": manifest.get("created"),
        "server_version": manifest.get("server_version"),
        "databases": sorted(manifest["databases"]),
        "bytes": sum(d.get("bytes", 0) for d in manifest["databases"].values()),
    }


# --- public: backup --------------------------------------------------------------------------
def backup(databases=None, backup_dir=None, label=None, compression=None, **connection):
    """
    Back up databases as ONE consistent snapshot (one ``mariadb-dump --single-transaction``
    per database, all started under a short FLUSH TABLES WITH READ LOCK, one compressed
    file per database) into a new folder under the backup folder, with a manifest whose
    row counts and checksums are read in that same snapshot: the manifest describes the
    dump exactly even while services write. Writers wait only while the dumps open their
    snapshots: ``lock_seconds`` in the result and the manifest. Needs the RELOAD privilege.

    Refuses before starting when a database does not exist or when the free space under
    the backup folder is below the databases' size.

    databases
        list or comma-separated names; default pillar ``leapfrog:database:databases``
    backup_dir
        folder holding the backups; default pillar ``leapfrog:backups:dir`` + ``/mysql``
    label
        a word stored in the manifest and the folder name (e.g. ``pre-2025.1``)
    compression
        ``zstd`` (default when installed) or ``gzip``
    host, port, socket, user, password
        connection; default pillar ``leapfrog:database``

    Returns the id, path, ``lock_seconds`` and per database the file, its sha256, bytes,
    tables and rows.

    CLI Example:

    .. code-block:: bash

        salt dbs01 mysql_backup.backup databases=nova,nova_api label=pre-upgrade
    """
    started = time.monotonic()
    params = _connection(connection)
    names = _databases(databases)
    compression = _compression(compression)
    leapfrog_files.check_label(label, leapfrog_errors.LeapfrogError)
    root = _backup_root(backup_dir)
    with _connect(params) as conn:
        _require_databases(conn, names, params)
        with conn.cursor() as cur:
            cur.execute("SELECT VERSION()")
            server_version = cur.fetchone()[0]
        schemas = {db: _schema(conn, db) for db in names}
        needed = sum(s["size_bytes"] for s in schemas.values()) + SPACE_MARGIN
        _require_space(root, needed, f"a backup of {', '.join(names)}",
                       "free space there or point leapfrog:backups:dir to a larger disk")
        now = datetime.datetime.now(datetime.timezone.utc)
        backup_id = leapfrog_files.backup_id(now, label)

    with leapfrog_files.partial_folder(root, backup_id, leapfrog_errors.LeapfrogError) \
            as partial:
        with _connect(params) as conn:
            stats, lock_seconds = _dump_all(conn, params, names, partial)
        manifest = {
            "format": FORMAT,
            "id": backup_id,
            "label": label,
            "created": now.isoformat(timespec="seconds"),
            "server_version": server_version,
            "source": _where(params),
            "tool": os.path.basename(_binary("mariadb-dump", "mysqldump")),
            "compression": compression,
            "stats_method": STATS_METHOD,
            "stats_note": "every dump and the rows/checksums read in one snapshot",
            "lock_seconds": lock_seconds,
            "databases": {},
        }
        for db in names:
            raw = os.path.join(partial, f"{db}.sql")
            raw_bytes = os.path.getsize(raw)
            path = _compress(raw, compression, params)
            os.chmod(path, 0o600)
            manifest["databases"][db] = {
                **schemas[db],
                "file": os.path.basename(path),
                "bytes": os.path.getsize(path),
                "raw_bytes": raw_bytes,
                "sha256": leapfrog_files.sha256(path),
                "tables": stats[db],
            }
        final = leapfrog_files.complete(partial, manifest, MANIFEST)
    result = _summary(manifest, root)
    result["databases"] = {
        db: {
            "file": os.path.join(final, info["file"]),
            "sha256": info["sha256"],
            "bytes": info["bytes"],
            "tables": len(info["tables"]),
            "rows": sum(t["rows"] for t in info["tables"].values()),
        }
        for db, info in manifest["databases"].items()
    }
    result["lock_seconds"] = lock_seconds
    result["seconds"] = round(time.monotonic() - started, 2)
    return result


# --- public: verify / list / prune -----------------------------------------------------------
def verify(backup_id="latest", backup_dir=None, label=None):
    """
    Verify a backup: every file's sha256 against the manifest and a full decompression test.

    Raises one line naming each broken file when the backup is corrupt; returns
    ``{"id", "valid": True, "databases": {db: {"sha256", "bytes"}}}`` otherwise.

    CLI Example:

    .. code-block:: bash

        salt dbs01 mysql_backup.verify latest
        salt dbs01 mysql_backup.verify label=pre-upgrade-run42
        salt dbs01 mysql_backup.verify 20261122T003000.123Z-pre-upgrade
    """
    root = _backup_root(backup_dir)
    backup_id = _resolve(root, backup_id, label)
    manifest = _read_manifest(root, backup_id)
    folder = os.path.join(root, backup_id)
    compression = manifest.get("compression", "gzip")
    problems = []
    checked = {}
    for db, info in sorted(manifest["databases"].items()):
        path = os.path.join(folder, info.get("file", ""))
        if not info.get("file") or not os.path.isfile(path):
            problems.append(f"{info.get('file') or db}: missing")
            continue
        size = os.path.getsize(path)
        digest = leapfrog_files.sha256(path)
        if digest != info.get("sha256"):
            problems.append(
                f"{info['file']}: sha256 {digest[:12]}... != manifest "
                f"{str(info.get('sha256'))[:12]}... ({size} bytes, manifest {info.get('bytes')})"
            )
            continue
        reason = _test_decompress(path, compression)
        if reason:
            problems.append(f"{info['file']}: does not decompress ({reason})")
            continue
        checked[db] = {"sha256": digest, "bytes": size}
    if problems:
        raise BackupCorrupt(
            f"backup {backup_id} is corrupt: {'; '.join(problems)}; do not restore it, take a "
            "new backup (mysql_backup.backup)"
        )
    return {"id": backup_id, "valid": True, "path": folder, "databases": checked}


def list_(backup_dir=None, label=None):
    """
    List the complete backups, oldest first: id, label, created, databases, bytes
    (only those labelled ``label`` when given).

    CLI Example:

    .. code-block:: bash

        salt dbs01 mysql_backup.list
        salt dbs01 mysql_backup.list label=pre-upgrade-run42
    """
    root = _backup_root(backup_dir)
    out = []
    for backup_id in _backup_ids(root):
        try:
            item = _summary(_read_manifest(root, backup_id), root)
        except leapfrog_errors.LeapfrogError as exc:
            item = {"id": backup_id, "path": os.path.join(root, backup_id), "label": None,
                    "error": str(exc)}
        if label is None or item.get("label") == str(label):
            out.append(item)
    return out


def show(backup_id="latest", backup_dir=None, label=None):
    """
    Return a backup's manifest (databases, tables with rows and checksums, files, sha256).

    CLI Example:

    .. code-block:: bash

        salt dbs01 mysql_backup.show latest
    """
    root = _backup_root(backup_dir)
    return _read_manifest(root, _resolve(root, backup_id, label))


def prune(keep=None, backup_dir=None):
    """
    Remove the oldest complete backups, keeping the newest ``keep`` (default pillar
    ``leapfrog:backups:keep``, else 3). Folders without a manifest are never touched.

    CLI Example:

    .. code-block:: bash

        salt dbs01 mysql_backup.prune keep=2
    """
    if keep is None:
        keep = _pillar("leapfrog:backups:keep", DEFAULT_KEEP)
    return leapfrog_files.prune(_backup_root(backup_dir), keep, MANIFEST, log)


# --- public: restore / clone -----------------------------------------------------------------
def _refuse_existing(conn, targets, force, params):
    existing = set(_existing(conn))
    clash = [t for t in targets.values() if t in existing]
    if clash and not force:
        raise DatabaseExists(
            f"database(s) {', '.join(clash)} already exist on {_where(params)}: pass "
            "force=True to replace them, or choose another target/suffix"
        )
    return clash


def _wait_no_clients(conn, targets, timeout, kill=False):
    """Wait until no other session uses a target database (a service still writing would
    make the restored data differ from the backup). After ``timeout`` the sessions left are
    killed when ``kill`` (returned as "user@host on db"), else the restore is refused
    naming them."""
    names = sorted(set(targets.values()))
    marks = ", ".join(["%s"] * len(names))
    deadline = time.monotonic() + float(timeout)
    while True:
        with conn.cursor() as cur:
            cur.execute("SELECT ID, USER, HOST, DB FROM information_schema.PROCESSLIST WHERE "
                        f"ID != CONNECTION_ID() AND DB IN ({marks})", names)
            found = cur.fetchall()
        if not found:
            return []
        if time.monotonic() > deadline:
            who = sorted({f"{u}@{h or 'localhost'} on {d}" for _, u, h, d in found})
            if kill:
                with conn.cursor() as cur:
                    for ident, *_ in found:
                        cur.execute(f"KILL CONNECTION {int(ident)}")
                log.warning("mysql_backup: killed %d leftover session(s): %s", len(found),
                            ", ".join(who))
                return who
            who = ", ".join(who)
            raise DatabaseInUse(
                f"{len(found)} other session(s) still use the databases to restore after "
                f"{timeout:g} s ({who}): stop the services that write to them first")
        time.sleep(1)


def _suffix(suffix, what="suffix"):
    """A clone/restore suffix: ``_`` then letters, digits, ``_`` (``_upgrade``)."""
    if not isinstance(suffix, str) or not _SUFFIX.match(suffix):
        raise leapfrog_errors.LeapfrogError(
            f"invalid {what}={suffix!r}: it must start with _ and hold only letters, digits "
            "and _ (41 at most), e.g. _upgrade")
    return suffix


def _targets(names, target, suffix):
    if target and len(names) != 1:
        raise leapfrog_errors.LeapfrogError(
            "target names one database: pass exactly one database with target=, or use "
            "suffix= for several")
    if target and suffix:
        raise leapfrog_errors.LeapfrogError("pass target= or suffix=, not both")
    if target:
        return {names[0]: _names([target], "target")[0]}
    if suffix in (None, ""):
        return {name: name for name in names}
    suffix = _suffix(suffix)
    return {name: _names([name + suffix], "target")[0] for name in names}


def _schemata(conn):
    """{database: SCHEMA_COMMENT} of every database on the server."""
    with conn.cursor() as cur:
        cur.execute("SELECT SCHEMA_NAME, SCHEMA_COMMENT FROM information_schema.SCHEMATA")
        return {name: comment or "" for name, comment in cur.fetchall()}


def _guard(conn, action, names, production=(), in_place=()):
    """The one check every destructive path (clone force, drop_clone, restore) runs before it
    changes anything. Refuses, naming the database and the fix:

    - a MariaDB system schema (``SYSTEM_SCHEMAS``), always;
    - a production database: pillar ``leapfrog:database:databases`` and ``production``
      (a renamed restore passes the backup's databases), unless it is in ``in_place``
      (a same-name restore: nova from the backup over nova, what a rollback does);
    - an existing database whose SCHEMA_COMMENT lacks leapfrog's mark (``MARK``): leapfrog
      replaces or drops only what it created, unless it is in ``in_place``.

    Names compare case-insensitively (a server with lower_case_table_names folds them)."""
    comments = {name.lower(): comment for name, comment in _schemata(conn).items()}
    prod = {p.lower() for p in _names(_pillar("leapfrog:database:databases", []))}
    prod |= {p.lower() for p in production}
    for name in names:
        low = name.lower()
        if low in SYSTEM_SCHEMAS:
            raise UnsafeTarget(
                f"refusing to {action} {name}: it is a MariaDB system schema; name another "
                "database (target=/suffix=)")
        if name in in_place:
            continue
        if low in prod:
            raise UnsafeTarget(
                f"refusing to {action} {name}: it is a production database of the cluster "
                "(leapfrog:database:databases or the backup's databases); choose a target or "
                "suffix that names no production database (e.g. suffix=_upgrade)")
        if low in comments and not comments[low].startswith(MARK):
            raise UnsafeTarget(
                f"refusing to {action} {name}: it exists and leapfrog did not create it (no "
                f"'{MARK.strip()}' mark in its SCHEMA_COMMENT); choose another target/suffix, "
                "or drop it yourself if it really is a leftover")


def _unmovable(conn, database):
    """What RENAME TABLE cannot move to another database: views and sequences, triggers
    ('Trigger in wrong schema'), routines and events (they stay behind)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT LOWER(TABLE_TYPE), TABLE_NAME FROM information_schema.TABLES WHERE "
            "TABLE_SCHEMA = %s AND TABLE_TYPE != 'BASE TABLE' UNION ALL "
            "SELECT 'trigger', TRIGGER_NAME FROM information_schema.TRIGGERS WHERE "
            "TRIGGER_SCHEMA = %s UNION ALL "
            "SELECT LOWER(ROUTINE_TYPE), ROUTINE_NAME FROM information_schema.ROUTINES WHERE "
            "ROUTINE_SCHEMA = %s UNION ALL "
            "SELECT 'event', EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s",
            (database,) * 4)
        return [f"{kind} {name}" for kind, name in cur.fetchall()]


def _refuse_unmovable(conn, database, dest):
    found = _unmovable(conn, database)
    if found:
        raise leapfrog_errors.LeapfrogError(
            f"cannot restore over the existing {dest} by swapping tables: {database} holds "
            f"{', '.join(found[:5])}, which RENAME TABLE cannot move to another database; "
            f"restore into another name (target=) and compare, or drop {dest} after a "
            "verified backup and restore again")


def _side_name(dest, tag):
    name = f"{dest}__lf{tag}"
    if len(name) > 64:
        raise leapfrog_errors.LeapfrogError(
            f"cannot restore over {dest}: its staging/kept name {name} is longer than 64 "
            "characters; restore into a shorter name (target=)")
    return name


def _swap(conn, stage, dest, kept, info, mark):
    """Move ``dest``'s tables into the new database ``kept`` and ``stage``'s into ``dest``
    in ONE RENAME TABLE (atomic: all pairs or none), then drop the emptied ``stage``."""
    schema = _schema(conn, dest)
    _create(conn, kept, schema["charset"], schema["collation"], mark=mark)
    pairs = [f"{_q(dest)}.{_q(t)} TO {_q(kept)}.{_q(t)}" for t in _tables(conn, dest)]
    pairs += [f"{_q(stage)}.{_q(t)} TO {_q(dest)}.{_q(t)}" for t in _tables(conn, stage)]
    with conn.cursor() as cur:
        if pairs:
            cur.execute("RENAME TABLE " + ", ".join(pairs))
        cur.execute(f"ALTER DATABASE {_q(dest)} CHARACTER SET {info['charset']} COLLATE "
                    f"{info['collation']}")
    _drop(conn, stage)


def _stage(conn, params, plan, folder, compression, method):
    """Load every database of ``plan`` into its staging name and compare it with the
    manifest; on any difference drop what was staged and raise naming the differences."""
    staged = []
    try:
        for item in plan:
            info = item["info"]
            started = time.monotonic()
            workdir = tempfile.mkdtemp(prefix=".restore-", dir=folder)
            try:
                raw = os.path.join(workdir, f"{item['name']}.sql")
                _decompress(os.path.join(folder, info["file"]), raw, compression, params)
                _create(conn, item["stage"], info.get("charset", "utf8mb4"),
                        info.get("collation", "utf8mb4_general_ci"),
                        force=item["stage"] != item["dest"], mark=item["stage_mark"])
                staged.append(item["stage"])
                log.info("mysql_backup: restoring %s into %s", item["name"], item["stage"])
                _load(params, item["stage"], raw)
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
            diff = _differences(info["tables"], _table_stats(conn, item["stage"], method))
            if diff:
                raise RestoreMismatch(
                    f"restore of {item['name']} stopped before replacing anything: the "
                    f"restored copy differs from the backup's manifest ({'; '.join(diff[:5])}); "
                    f"{item['dest']} is untouched; check the backup (mysql_backup.show) or "
                    "take a new one")
            if item["stage"] != item["dest"]:
                _refuse_unmovable(conn, item["stage"], item["dest"])
            item["seconds"] = time.monotonic() - started
    except BaseException:
        for name in staged:
            _drop(conn, name)
        raise


def restore(backup_id="latest", databases=None, target=None, suffix=None, force=False,
            backup_dir=None, label=None, clients_timeout=120, kill_clients=False,
            keep_replaced=False, **connection):
    """
    Restore databases from a verified backup, into the same name or another one, without
    losing what it replaces until the restored copy is proven.

    The backup is verified first (sha256 and decompression); a corrupt backup is refused.
    Every target passes one safety check before anything changes: never a MariaDB system
    schema; a same-name restore may replace that production database (what a rollback
    does); a ``target``/``suffix`` restore never replaces a production database (pillar
    ``leapfrog:database:databases`` or the backup's) nor an existing database leapfrog did
    not create (databases it creates carry ``leapfrog ...`` in their SCHEMA_COMMENT).

    An existing target is refused unless ``force=True``. Then the backup is loaded into a
    staging database ``<target>__lfstage`` next to it, whose row counts and checksums must
    equal the manifest's (else it is dropped, the target is left untouched and the error
    names the differences). Only then one atomic RENAME TABLE moves the target's tables
    into ``<target>__lf<YYYYmmddHHMMSS>`` and the staged ones into the target, which is
    compared with the manifest again; the moved-aside copy is dropped after that, or kept
    with ``keep_replaced=True`` (returned as ``kept``). A target holding views, triggers,
    routines or events cannot be swapped (RENAME TABLE cannot move them): refused before
    anything changes. The datadir needs room for the staging copy (checked first).

    While other sessions use a target database (a service still writing), it waits up to
    ``clients_timeout`` seconds (0 to 86400), then refuses naming them, or with
    ``kill_clients=True`` kills those leftover sessions (returned in ``killed_sessions``).

    backup_id
        an id from ``mysql_backup.list`` or ``latest``
    label
        with ``latest``: the newest backup with this label (e.g. this run's)
    databases
        databases of the backup to restore (default: all of it)
    target
        restore the (single) database under this name
    suffix
        restore every database as ``<name><suffix>`` (``_`` then letters, digits, ``_``)

    CLI Example:

    .. code-block:: bash

        salt dbs01 mysql_backup.restore latest databases=nova force=True
        salt dbs01 mysql_backup.restore label=pre-upgrade-run42 force=True keep_replaced=True
        salt dbs01 mysql_backup.restore 20261122T003000.123Z databases=nova target=nova_check
    """
    params = _connection(connection)
    force = leapfrog_parse.boolean(force, "force")
    kill_clients = leapfrog_parse.boolean(kill_clients, "kill_clients")
    keep_replaced = leapfrog_parse.boolean(keep_replaced, "keep_replaced")
    clients_timeout = leapfrog_parse.number(clients_timeout, "clients_timeout", minimum=0, maximum=MAX_SECONDS)
    root = _backup_root(backup_dir)
    backup_id = _resolve(root, backup_id, label)
    manifest = _read_manifest(root, backup_id)
    names = _names(databases) or sorted(manifest["databases"])
    missing = [n for n in names if n not in manifest["databases"]]
    if missing:
        raise UnknownDatabase(
            f"database(s) {', '.join(missing)} not in backup {backup_id} (it holds: "
            f"{', '.join(sorted(manifest['databases']))})"
        )
    targets = _targets(names, target, suffix)
    in_place = [dest for name, dest in targets.items() if dest == name]
    verify(backup_id, backup_dir=root)
    folder = os.path.join(root, backup_id)
    compression = manifest.get("compression", "gzip")
    method = manifest.get("stats_method", "CHECKSUM TABLE")
    stamp = time.strftime("%Y%m%d%H%M%S")
    with _connect(params) as conn:
        existing = set(_existing(conn))
        plan = []
        for name in names:
            dest = targets[name]
            replace = dest in existing
            plan.append({
                "name": name, "dest": dest, "info": manifest["databases"][name],
                "stage": _side_name(dest, "stage") if replace else dest,
                "kept": _side_name(dest, stamp) if replace else None,
                "stage_mark": (f"{MARK}staging restore of {name} from {backup_id}" if replace
                               else "" if dest == name else f"{MARK}restore of {name}"),
            })
        _guard(conn, "restore over", list(targets.values()),
               production=() if in_place else manifest["databases"], in_place=in_place)
        _guard(conn, "stage a restore in", [i["stage"] for i in plan if i["kept"]])
        _refuse_existing(conn, targets, force, params)
        for item in plan:
            if item["kept"]:
                _refuse_unmovable(conn, item["dest"], item["dest"])
        killed = _wait_no_clients(conn, targets, clients_timeout, kill_clients)
        largest = max(manifest["databases"][n].get("raw_bytes", 0) for n in names)
        _require_space(folder, largest + SPACE_MARGIN, "decompressing the dump",
                       "free space in the backup folder")
        _datadir_space(conn, sum(manifest["databases"][n].get("size_bytes", 0) for n in names)
                       + SPACE_MARGIN, f"the staged copy of {', '.join(names)} (the databases "
                       "it replaces stay until it is verified)")
        _stage(conn, params, plan, folder, compression, method)
        results = {}
        for item in plan:
            started = time.monotonic()
            if item["kept"]:
                _swap(conn, item["stage"], item["dest"], item["kept"], item["info"],
                      f"{MARK}copy of {item['dest']} replaced by restore {backup_id}")
            found = _table_stats(conn, item["dest"], method)
            diff = _differences(item["info"]["tables"], found)
            if diff:
                kept = f"; its previous tables are in {item['kept']}" if item["kept"] else ""
                raise RestoreMismatch(
                    f"{item['dest']} differs from backup {backup_id} after the swap "
                    f"({'; '.join(diff[:5])}){kept}: inspect it before anything else")
            if item["kept"] and not keep_replaced:
                _drop(conn, item["kept"])
            elif item["kept"]:
                log.info("mysql_backup: the replaced %s is kept in %s", item["dest"],
                         item["kept"])
            results[item["name"]] = {
                "target": item["dest"],
                "tables": len(found),
                "rows": sum(t["rows"] for t in found.values()),
                "matches_manifest": True,
                "differences": [],
                "kept": item["kept"] if keep_replaced else None,
                "seconds": round(item["seconds"] + time.monotonic() - started, 2),
            }
    return {"id": backup_id, "databases": results, "killed_sessions": killed,
            "matches_manifest": True}


def clone(databases=None, suffix=DEFAULT_SUFFIX, force=False, **connection):
    """
    Clone databases to ``<name><suffix>`` (default ``_upgrade``) on the same server, for an
    upgrade rehearsal: the databases dumped in one consistent snapshot (as ``backup``),
    each loaded into its new name with the same charset/collation and marked
    ``leapfrog clone of <name>`` in its SCHEMA_COMMENT.

    The suffix starts with ``_`` (letters, digits, ``_``). A clone name that is a system
    schema or a production database (pillar ``leapfrog:database:databases``, e.g.
    ``nova`` + ``_api``) is refused; an existing clone only with ``force=True`` and only
    when leapfrog made it (its mark). Returns per database the clone's name, tables, rows
    and whether its checksums equal the source's in the dump's snapshot.

    CLI Example:

    .. code-block:: bash

        salt dbs01 mysql_backup.clone databases=nova,nova_api,nova_cell0
        salt dbs01 mysql_backup.clone nova suffix=_rehearsal force=True
    """
    params = _connection(connection)
    names = _databases(databases)
    force = leapfrog_parse.boolean(force, "force")
    targets = _targets(names, None, _suffix(suffix))
    results = {}
    with _connect(params) as conn:
        _require_databases(conn, names, params)
        _guard(conn, "overwrite with a clone", list(targets.values()), production=names)
        _refuse_existing(conn, targets, force, params)
        schemas = {db: _schema(conn, db) for db in names}
        total = sum(s["size_bytes"] for s in schemas.values())
        tmp_root = tempfile.gettempdir()
        _require_space(tmp_root, total + SPACE_MARGIN,
                       "the clone's temporary dump", "free space in the temporary folder")
        _datadir_space(conn, total + SPACE_MARGIN, f"clones of {', '.join(names)}")
        workdir = tempfile.mkdtemp(prefix="leapfrog-clone-", dir=tmp_root)
        try:
            started = time.monotonic()
            source_stats, _ = _dump_all(conn, params, names, workdir)
            for name in names:
                _create(conn, targets[name], schemas[name]["charset"],
                        schemas[name]["collation"], force, mark=f"{leapfrog_mysql.CLONE_MARK}{name}")
                log.info("mysql_backup: cloning %s into %s", name, targets[name])
                _load(params, targets[name], os.path.join(workdir, f"{name}.sql"))
                found = _table_stats(conn, targets[name])
                diff = _differences(source_stats[name], found)
                results[name] = {
                    "target": targets[name],
                    "tables": len(found),
                    "rows": sum(t["rows"] for t in found.values()),
                    "identical": not diff,
                    "differences": diff,
                    "seconds": round(time.monotonic() - started, 2),
                }
                started = time.monotonic()
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    return results


def drop_clone(databases=None, suffix=DEFAULT_SUFFIX, **connection):
    """
    Drop the clones ``<name><suffix>`` made by ``clone``. The suffix starts with ``_``;
    a name that is a system schema, a production database (pillar
    ``leapfrog:database:databases``: ``drop_clone nova suffix=_cell0`` is refused) or an
    existing database without leapfrog's clone mark is refused before anything is dropped.

    CLI Example:

    .. code-block:: bash

        salt dbs01 mysql_backup.drop_clone databases=nova,nova_api
    """
    params = _connection(connection)
    names = _databases(databases)
    targets = _targets(names, None, _suffix(suffix))
    with _connect(params) as conn:
        _guard(conn, "drop", list(targets.values()), production=names)
        existing = set(_existing(conn))
        dropped = [t for t in targets.values() if t in existing]
        for name in dropped:
            _drop(conn, name)
    return {"dropped": dropped, "absent": [t for t in targets.values() if t not in dropped]}


def checksums(databases=None, **connection):
    """
    Return per database and table the row count and row checksum (the sum of a CRC32 of
    every row, read through MVCC), all in one consistent snapshot: what a backup's manifest
    records and what restores compare.

    CLI Example:

    .. code-block:: bash

        salt dbs01 mysql_backup.checksums nova,nova_api
    """
    params = _connection(connection)
    names = _databases(databases)
    with _connect(params) as conn:
        _require_databases(conn, names, params)
        return _snapshot_stats(conn, names)


_AUTO_INCREMENT = re.compile(r" AUTO_INCREMENT=\d+")
# Tables whose rows are the schema's version (alembic, sqlalchemy-migrate).
VERSION_TABLES = ("alembic_version", "migrate_version")


def schema(databases=None, **connection):
    """
    Return per database a fingerprint of its structure: per table ``{"ddl": sha256 of its
    SHOW CREATE TABLE}`` (AUTO_INCREMENT counters left out), plus ``"rows"`` for its
    version tables (alembic_version). Unlike ``checksums`` it does not change while a live cloud
    writes rows, only when something migrates the database: the proof that a rehearsal
    left production alone.

    CLI Example:

    .. code-block:: bash

        salt dbs01 mysql_backup.schema nova,nova_api
    """
    params = _connection(connection)
    names = _databases(databases)
    out = {}
    with _connect(params) as conn:
        _require_databases(conn, names, params)
        with conn.cursor() as cur:
            for name in names:
                cur.execute(f"SHOW FULL TABLES FROM `{name}` WHERE Table_type = 'BASE TABLE'")
                tables = sorted(row[0] for row in cur.fetchall())
                fingerprint = {}
                for table in tables:
                    cur.execute(f"SHOW CREATE TABLE `{name}`.`{table}`")
                    ddl = _AUTO_INCREMENT.sub("", cur.fetchone()[1])
                    # a mapping per table: a table named like a secret (keystone's
                    # access_token, credential) keeps its fingerprint through the scrub
                    fingerprint[table] = {"ddl": hashlib.sha256(ddl.encode()).hexdigest()[:16]}
                    if table in VERSION_TABLES:
                        cur.execute(f"SELECT * FROM `{name}`.`{table}`")
                        fingerprint[table]["rows"] = sorted(str(r) for r in cur.fetchall())
                out[name] = fingerprint
    return out


def exists(databases=None, **connection):
    """
    Return ``{name: True|False}``: which of the databases exist on the server.

    CLI Example:

    .. code-block:: bash

        salt dbs01 mysql_backup.exists nova_upgrade,nova_api_upgrade
    """
    params = _connection(connection)
    names = _names(databases)
    with _connect(params) as conn:
        existing = set(_existing(conn))
    return {name: name in existing for name in names}


# --- public: pre-checks ----------------------------------------------------------------------
# Tables nova's initial migrations (api d67eeaabee36, main 8f2f1571d55b) create with
# mysql_charset='latin1': the legacy placement tables, in every nova_api / nova / cell DB.
NOVA_OWN_LATIN1 = {
    "projects", "users", "resource_classes", "resource_providers", "inventories", "traits",
    "allocations", "consumers", "resource_provider_aggregates", "resource_provider_traits",
    "placement_aggregates",
}


def _nova_own_latin1(database, table):
    return "nova" in database and table in NOVA_OWN_LATIN1


def _purge_tool(schema, purge):
    """The purge tool ``purge`` names for ``schema``: its own name, or the longest name it
    ends with after a ``_`` (a prefixed ``lab_nova_api`` is ``nova_api``'s)."""
    names = [n for n in purge if schema == n or schema.endswith(f"_{n}")]
    return purge[max(names, key=len)] if names else None


def precheck(databases=None, archive_threshold=1000, purge=None, **connection):
    """
    Find what breaks upgrades in the databases, without changing anything:

    - tables and columns whose charset is not utf8/utf8mb4 (e.g. latin1)
    - nova ``compute_nodes`` rows with ``host`` NULL (they become duplicate hypervisors)
    - soft-deleted rows (``deleted != 0``) per table; at ``archive_threshold`` or more in a
      database, a note advises purging them first with the tool ``purge`` names for that
      database (``{database: command}``; the master passes each service recipe's): they
      lengthen the migrations and the backup, they break nothing

    Returns ``{"ok", "problems": [one line each, with the fix], "notes", "charset",
    "null_compute_hosts", "soft_deleted"}``; every problem is collected (it does not stop at
    the first). The latin1 tables nova's own initial migrations create (its legacy placement
    tables) are a note, not a problem.

    CLI Example:

    .. code-block:: bash

        salt dbs01 mysql_backup.precheck databases=nova,nova_api,nova_cell0
    """
    params = _connection(connection)
    names = _databases(databases)
    threshold = leapfrog_parse.number(archive_threshold, "archive_threshold", minimum=0, maximum=10**12, integer=True)
    if purge is not None and not (isinstance(purge, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in purge.items())):
        raise leapfrog_errors.LeapfrogError(f"purge must map database names to their purge command "
                               f"(got {type(purge).__name__})")
    purge = purge or {}
    problems, notes = [], []
    charset = []
    null_hosts = {}
    soft_deleted = {}
    with _connect(params) as conn:
        _require_databases(conn, names, params)
        with conn.cursor() as cur:
            marks = ", ".join(["%s"] * len(names))
            cur.execute(
                "SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_COLLATION FROM information_schema.TABLES "
                f"WHERE TABLE_SCHEMA IN ({marks}) AND TABLE_TYPE = 'BASE TABLE' "
                "ORDER BY TABLE_SCHEMA, TABLE_NAME", names)
            table_rows = cur.fetchall()
            cur.execute(
                "SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, CHARACTER_SET_NAME FROM "
                f"information_schema.COLUMNS WHERE TABLE_SCHEMA IN ({marks}) AND "
                "CHARACTER_SET_NAME IS NOT NULL ORDER BY TABLE_SCHEMA, TABLE_NAME, "
                "ORDINAL_POSITION", names)
            column_rows = cur.fetchall()
            cur.execute(
                "SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME FROM information_schema.COLUMNS "
                f"WHERE TABLE_SCHEMA IN ({marks}) AND COLUMN_NAME IN ('deleted', 'host')", names)
            special = {}
            for schema, table, column in cur.fetchall():
                special.setdefault((schema, table), set()).add(column)
        bad_columns = {}
        for schema, table, column, cset in column_rows:
            if cset.lower() not in _UTF8:
                bad_columns.setdefault((schema, table), []).append(f"{column} ({cset})")
        for schema, table, collation in table_rows:
            cset = (collation or "").split("_", 1)[0].lower()
            columns = bad_columns.get((schema, table), [])
            if (collation and cset not in _UTF8) or columns:
                charset.append({"database": schema, "table": table, "collation": collation,
                                "columns": columns})
        known = [c for c in charset if _nova_own_latin1(c["database"], c["table"])]
        charset = [c for c in charset if c not in known]
        if known:
            notes.append(f"{len(known)} table(s) in latin1 created so by nova's own initial "
                         "migrations (legacy placement tables, unused since placement moved "
                         "out): left as they are")
        if charset:
            listed = ", ".join(f"{c['database']}.{c['table']} ({c['collation']})"
                               for c in charset[:10])
            more = f" and {len(charset) - 10} more" if len(charset) > 10 else ""
            problems.append(
                f"{len(charset)} table(s) not in utf8/utf8mb4: {listed}{more}; convert them "
                "(ALTER TABLE ... CONVERT TO CHARACTER SET utf8mb4) before the upgrade"
            )
        with conn.cursor() as cur:
            for (schema, table), columns in sorted(special.items()):
                if table == "compute_nodes" and "host" in columns:
                    where = "host IS NULL" + (" AND deleted = 0" if "deleted" in columns else "")
                    cur.execute(f"SELECT COUNT(*) FROM {_q(schema)}.{_q(table)} WHERE {where}")
                    count = int(cur.fetchone()[0])
                    null_hosts[schema] = count
                    if count:
                        problems.append(
                            f"{schema}.compute_nodes has {count} row(s) with host NULL: they "
                            "show up as duplicate hypervisors; set host from the service "
                            "record or delete the stale rows before the upgrade"
                        )
                if "deleted" in columns:
                    cur.execute(
                        f"SELECT COUNT(*) FROM {_q(schema)}.{_q(table)} WHERE deleted != 0")
                    count = int(cur.fetchone()[0])
                    if count:
                        soft_deleted.setdefault(schema, {})[table] = count
        for schema, tables in sorted(soft_deleted.items()):
            total = sum(tables.values())
            if total >= threshold:
                top = ", ".join(f"{t} {n}" for t, n in
                                sorted(tables.items(), key=lambda kv: (-kv[1], kv[0]))[:5])
                tool = _purge_tool(schema, purge) or "its service's own purge tool"
                notes.append(
                    f"{schema} holds {total} soft-deleted row(s) ({top}): purging them first "
                    f"({tool}) shortens the migrations and the backup"
                )
    return {
        "ok": not problems,
        "problems": problems,
        "notes": notes,
        "charset": charset,
        "null_compute_hosts": null_hosts,
        "soft_deleted": soft_deleted,
    }
