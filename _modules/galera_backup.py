"""
Physical backups of a Galera cluster, taken on a node that takes no writes, and verified in
a scratch server.

``backup`` runs on a DB node that the DB frontend does not send clients to (it refuses a
node that serves client sessions). It holds FLUSH TABLES WITH READ LOCK on that node, which
desyncs it and pauses its applier (the other nodes go on taking writes: no flow control
from a desynced node), reads the cluster position there (uuid:seqno) and every table's
CHECKSUM TABLE at that position, copies the datadir with ``mariadb-backup --backup
--no-lock`` (nothing changes under the lock), then unlocks and waits until the node is
Synced again; ``mariadb-backup --prepare`` makes the copy consistent. The folder
``<leapfrog:backups:dir>/galera/<id>`` (written as ``<id>.partial``, renamed when complete)
holds ``data/`` and ``manifest.json``: position, checksums, every file's size and sha256,
how long the node was paused.

``verify`` checks every file's sha256, copies the backup into a scratch datadir beside it,
starts a private mariadbd on it (no networking, wsrep off: it cannot reach the cluster),
compares every table's checksum with the manifest (the cluster at the backup's position)
and removes the scratch server. The password reaches ``mariadb-backup`` only through a 0600
option file.

Configuration: pillar ``leapfrog:galera:defaults_file`` (the node's my.cnf),
``leapfrog:database`` (socket, user, password), ``leapfrog:backups:dir``.
"""
import datetime
import logging
import os
import shutil
import subprocess
import tempfile
import time

import salt.utils.data

import leapfrog_files
import leapfrog_galera
import leapfrog_mysql
import leapfrog_parse
from leapfrog_galera import GaleraError

log = logging.getLogger(__name__)

__virtualname__ = "galera_backup"
__func_alias__ = {"list_": "list"}

MANIFEST = "manifest.json"
FORMAT = 1
SYSTEM_SCHEMAS = ("mysql", "information_schema", "performance_schema", "sys")
TIMEOUT = 3600
SPACE_MARGIN = 64 * 1024 * 1024
RESYNC_TIMEOUT = 600
DEFAULT_KEEP = 3


def __virtual__():
    if leapfrog_mysql.pymysql is None:
        return (False, "galera_backup: PyMySQL is not installed (pip install PyMySQL)")
    if not shutil.which("mariadb-backup"):
        return (False, "galera_backup: mariadb-backup is not installed (apt install "
                       "mariadb-backup)")
    return __virtualname__


def _pillar(key, default=None):
    value = salt.utils.data.traverse_dict_and_list(__pillar__ or {}, key, None)
    return default if value is None else value


def _root(backup_dir):
    if backup_dir:
        return os.path.abspath(str(backup_dir))
    return leapfrog_files.backup_root(_pillar("leapfrog:backups:dir", ""), "galera")


def _node():
    return leapfrog_galera.node(__pillar__, "galera_backup")


def _run(argv, params, cwd=None):
    """Run a MariaDB tool; a failure names it and its last lines (password scrubbed)."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT,
                              check=False, cwd=cwd)
    except subprocess.TimeoutExpired:
        raise GaleraError(f"{os.path.basename(argv[0])} did not finish in {TIMEOUT} s") \
            from None
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise GaleraError(leapfrog_mysql.scrub(
            f"{os.path.basename(argv[0])} failed (exit {proc.returncode}): "
            f"{' | '.join(lines) or 'no output'}", params))
    return proc


def _with_server(creds, config):
    """An option file beside ``creds`` (0600, removed with it) reading the node's server
    options and the credentials: mariadb-backup takes one --defaults-file only."""
    path = os.path.join(os.path.dirname(creds), "backup.cnf")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(f"!include {config['defaults_file']}\n!include {creds}\n")
    return path


def _tables(cur):
    cur.execute("SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES WHERE "
                "TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA NOT IN %s "
                "ORDER BY TABLE_SCHEMA, TABLE_NAME", (SYSTEM_SCHEMAS,))
    return [f"{schema}.{name}" for schema, name in cur.fetchall()]


def _checksums(cur, tables):
    """{"db.table": CHECKSUM TABLE} of ``tables``, in batches of 50."""
    out = {}
    for start in range(0, len(tables), 50):
        batch = tables[start:start + 50]
        quoted = ", ".join(".".join(f"`{part}`" for part in name.split(".", 1))
                           for name in batch)
        cur.execute(f"CHECKSUM TABLE {quoted}")
        for name, value in cur.fetchall():
            out[name] = value
    return out


def _client_sessions(cur):
    cur.execute("SELECT USER, HOST FROM information_schema.PROCESSLIST WHERE "
                "ID <> CONNECTION_ID() AND USER NOT IN ('system user', 'event_scheduler', "
                "'unauthenticated user') AND COMMAND <> 'Daemon'")
    return [f"{user}@{host.rsplit(':', 1)[0] or 'socket'}" for user, host in cur.fetchall()]


def _require_space(path, needed, what):
    os.makedirs(path, mode=0o700, exist_ok=True)
    problem = leapfrog_files.space_problem(path, needed + SPACE_MARGIN, what,
                                           "free space or set leapfrog:backups:dir")
    if problem:
        raise GaleraError(problem)


def _files(folder):
    """{relative path: {size, sha256}} of every file under ``folder``."""
    out = {}
    for base, _, names in os.walk(folder):
        for name in sorted(names):
            path = os.path.join(base, name)
            out[os.path.relpath(path, folder)] = {"size": os.path.getsize(path),
                                                  "sha256": leapfrog_files.sha256(path)}
    return out


def backup(label=None, backup_dir=None, force=False):
    """Take a physical backup of the cluster from this node (see the module's text): its
    position (uuid:seqno), every table's checksum there, the prepared datadir and each
    file's sha256. Refused on a node that is not Synced in a Primary cluster of 2 or more,
    or that serves client sessions (take it out of the DB frontend first) unless ``force``.

    CLI Example:

    .. code-block:: bash

        salt dbs03 galera_backup.backup label=run-20261207
    """
    leapfrog_files.check_label(label, GaleraError)
    force = leapfrog_parse.boolean(force, "force", error=GaleraError)
    config, params = _node()
    root = _root(backup_dir)
    started = time.monotonic()
    with leapfrog_mysql.connect(params) as conn, conn.cursor() as cur:
        live = leapfrog_galera.wsrep_status(conn)
        if not (live["primary"] and live["state"] == "Synced" and live["size"] >= 2):
            raise GaleraError(
                f"refusing to back up from {config['node_name']}: it is {live['state']} in a "
                f"{'Primary' if live['primary'] else 'non-Primary'} cluster of {live['size']};"
                " back up from a Synced node of a Primary cluster of 2 or more")
        sessions = _client_sessions(cur)
        if sessions and not force:
            raise GaleraError(
                f"refusing to back up from {config['node_name']}: it serves "
                f"{len(sessions)} client session(s) ({', '.join(sorted(set(sessions))[:5])}); "
                "take it out of the DB frontend first (haproxy_admin.drain) or back up from "
                "a node that takes no writes")
        _require_space(root, leapfrog_galera.backup_bytes(config["datadir"]), "the backup")
        backup_id = leapfrog_files.backup_id(datetime.datetime.now(datetime.timezone.utc),
                                             label)
    with leapfrog_files.partial_folder(root, backup_id, GaleraError) as partial:
        with leapfrog_mysql.connect(params) as conn, conn.cursor() as cur, \
                leapfrog_mysql.defaults_file(params) as creds:
            locked = time.monotonic()
            cur.execute("FLUSH TABLES WITH READ LOCK")
            try:
                position = leapfrog_galera.wsrep_status(conn)
                checksums = _checksums(cur, _tables(cur))
                _run(["mariadb-backup", f"--defaults-file={_with_server(creds, config)}",
                      "--backup", "--no-lock",
                      f"--socket={params['socket']}", f"--target-dir={partial}/data"],
                     params)
            finally:
                cur.execute("UNLOCK TABLES")
                paused = round(time.monotonic() - locked, 2)
        unlocked = time.monotonic()
        leapfrog_galera.wait_synced(config, params, RESYNC_TIMEOUT, "resync after the backup")
        resynced = round(time.monotonic() - unlocked, 2)
        _run(["mariadb-backup", "--prepare", f"--target-dir={partial}/data"], params)
        manifest = {
            "format": FORMAT, "kind": "galera", "id": backup_id, "label": label,
            "node": config["node_name"], "uuid": position["uuid"], "seqno": position["seqno"],
            "checksums": checksums, "files": _files(os.path.join(partial, "data")),
            "paused_seconds": paused, "resync_seconds": resynced,
            "seconds": round(time.monotonic() - started, 2),
        }
        manifest["bytes"] = sum(f["size"] for f in manifest["files"].values())
        leapfrog_files.complete(partial, manifest, MANIFEST)
    return _summary(manifest)


def _summary(manifest):
    return {key: manifest.get(key) for key in ("kind", "id", "label", "node", "uuid", "seqno",
                                               "bytes", "paused_seconds", "resync_seconds",
                                               "seconds")} | {
        "tables": len(manifest.get("checksums") or {})}


def _manifest(root, backup_id):
    return leapfrog_files.read_manifest(
        root, backup_id, GaleraError, "Galera backup",
        lambda found: None if found.get("kind") == "galera" and isinstance(
            found.get("files"), dict) else "not a Galera backup's manifest", MANIFEST)


def _resolve(root, backup_id, label):
    return leapfrog_files.resolve(root, backup_id, label,
                                  lambda found: _manifest(root, found).get("label"),
                                  GaleraError, "Galera backup", "galera_backup.backup",
                                  "galera_backup.list")


def list_(backup_dir=None, label=None):
    """The complete Galera backups under the backup dir, oldest first (with ``label``: only
    those).

    CLI Example:

    .. code-block:: bash

        salt dbs03 galera_backup.list
    """
    root = _root(backup_dir)
    found = [_summary(_manifest(root, i)) for i in leapfrog_files.backup_ids(root, MANIFEST)]
    return [b for b in found if label is None or b["label"] == str(label)]


def prune(keep=None, backup_dir=None):
    """Remove the oldest complete Galera backups, keeping the newest ``keep`` (default
    pillar ``leapfrog:backups:keep``, else 3; a whole number from 1 to 10000). Folders
    without a Galera manifest are never touched.

    CLI Example:

    .. code-block:: bash

        salt dbs03 galera_backup.prune keep=2
    """
    if keep is None:
        keep = _pillar("leapfrog:backups:keep", DEFAULT_KEEP)
    return leapfrog_files.prune(_root(backup_dir), keep, MANIFEST, log, error=GaleraError)


class _ScratchServer:
    """A private mariadbd on a copy of a backup: no networking, wsrep off, own socket."""

    def __init__(self, folder, user):
        self.folder = folder
        self.datadir = os.path.join(folder, "data")
        # a unix socket path holds 107 bytes at most: the socket lives in a short tmp dir
        self.socket_dir = tempfile.mkdtemp(prefix="leapfrog-scratch-")
        self.socket = os.path.join(self.socket_dir, "s.sock")
        self.user = user
        self.proc = None

    def start(self, timeout=120):
        log_file = os.path.join(self.folder, "mysqld.err")
        argv = [leapfrog_galera.server_binary(), "--no-defaults", f"--user={self.user}",
                f"--datadir={self.datadir}", f"--socket={self.socket}",
                f"--pid-file={os.path.join(self.folder, 'mysqld.pid')}",
                f"--log-error={log_file}", "--skip-networking", "--wsrep-on=OFF",
                "--skip-log-bin", "--innodb-buffer-pool-size=64M"]
        self.proc = subprocess.Popen(  # pylint: disable=consider-using-with
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True)

        def up():
            if self.proc.poll() is not None:
                raise GaleraError(f"the scratch server exited {self.proc.returncode}: "
                                  f"{leapfrog_galera.log_tail({'log_error': log_file})}")
            return True if os.path.exists(self.socket) else None
        leapfrog_galera.wait(up, timeout, "the scratch server did not open its socket")

    def stop(self):
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(120)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(30)
        finally:
            shutil.rmtree(self.socket_dir, ignore_errors=True)


def _file_problems(data, manifest):
    """What differs between the backup's files and its manifest (missing, sha256, extra)."""
    found = _files(data) if os.path.isdir(data) else {}
    problems = []
    for name, expected in sorted(manifest["files"].items()):
        if name not in found:
            problems.append(f"{name} missing")
        elif found[name]["sha256"] != expected["sha256"]:
            problems.append(f"{name} sha256 differs")
    return problems + [f"{name} not in the manifest"
                       for name in sorted(set(found) - set(manifest["files"]))]


def _compare(sums, expected):
    """Tables whose checksum differs from ``expected`` (the manifest's), missing or extra."""
    return ([f"{t}: checksum {sums[t]} (the cluster had {expected[t]})"
             for t in sorted(expected) if t in sums and sums[t] != expected[t]]
            + [f"{t} missing" for t in sorted(set(expected) - set(sums))]
            + [f"{t} not in the manifest" for t in sorted(set(sums) - set(expected))])


def verify(backup_id="latest", label=None, backup_dir=None):
    """Check a Galera backup: every file's sha256, then restore it into a scratch server on
    this node and compare every table's checksum with the manifest (the cluster at the
    backup's position). Returns ``valid`` and the ``problems`` found.

    CLI Example:

    .. code-block:: bash

        salt dbs03 galera_backup.verify label=run-20261207
    """
    config, params = _node()
    root = _root(backup_dir)
    backup_id = _resolve(root, backup_id, label)
    manifest = _manifest(root, backup_id)
    started = time.monotonic()
    data = os.path.join(root, backup_id, "data")
    problems = _file_problems(data, manifest)
    if problems:
        return {"id": backup_id, "valid": False, "problems": problems[:20]}
    _require_space(root, manifest["bytes"], "the scratch server")
    user = config["user"]
    folder = tempfile.mkdtemp(prefix=f".verify-{backup_id}-", dir=root)
    scratch = _ScratchServer(folder, user)
    try:
        _run(["mariadb-backup", "--no-defaults", "--copy-back", f"--target-dir={data}",
              f"--datadir={scratch.datadir}"], params)
        leapfrog_galera.chown_tree(folder, user)
        scratch.start()
        with leapfrog_mysql.connect({**params, "socket": scratch.socket}) as conn, \
                conn.cursor() as cur:
            tables = _tables(cur)
            sums = _checksums(cur, tables)
        problems += _compare(sums, manifest["checksums"])
    finally:
        scratch.stop()
        shutil.rmtree(folder, ignore_errors=True)
    return {"id": backup_id, "valid": not problems, "problems": problems[:20],
            "tables": len(manifest["checksums"]), "seqno": manifest["seqno"],
            "seconds": round(time.monotonic() - started, 2)}


def restore(backup_id=None, label=None, backup_dir=None, keep=False, timeout=600):
    """Bring the whole cluster back to a backup, from this node: every node must be stopped
    first (``galera.stop force=True`` on each). The backup's files are checked, this node's
    datadir kept aside, the backup copied in with its position in grastate.dat (safe to
    bootstrap), the cluster bootstrapped from it and every table's checksum compared with
    the manifest; the kept datadir is removed once they match (``keep=True`` leaves it).
    The other nodes then join with ``galera.join fresh=True`` (their old data must not
    come back). Name the backup: ``backup_id`` or ``label`` (the run's).

    CLI Example:

    .. code-block:: bash

        salt dbs01 galera_backup.restore label=run-20261207
    """
    keep = leapfrog_parse.boolean(keep, "keep", error=GaleraError)
    timeout = leapfrog_parse.seconds(timeout, "timeout", minimum=1, error=GaleraError)
    if backup_id in (None, "", "latest") and label is None:
        raise GaleraError("name the backup to restore: backup_id=ID or label=RUN "
                          "(galera_backup.list shows them)")
    config, params = _node()
    root = _root(backup_dir)
    backup_id = _resolve(root, backup_id, label)
    manifest = _manifest(root, backup_id)
    if leapfrog_galera.server_pid(config) is not None:
        raise GaleraError(f"refusing to restore on {config['node_name']}: its server runs; "
                          "stop every node of the cluster first (galera.stop force=True)")
    peers = leapfrog_galera.live_peers(config)
    if peers:
        raise GaleraError(f"refusing to restore on {config['node_name']}: nodes of its "
                          f"cluster still run at {', '.join(peers)}; stop every node first "
                          "(galera.stop force=True)")
    data = os.path.join(root, backup_id, "data")
    problems = _file_problems(data, manifest)
    if problems:
        raise GaleraError(f"Galera backup {backup_id} does not verify ({'; '.join(problems[:3])}"
                          "): nothing was changed; restore another backup")
    _require_space(os.path.dirname(config["datadir"].rstrip("/")), manifest["bytes"],
                   "the restored datadir (the current one is kept aside)")
    started = time.monotonic()
    aside = config["datadir"].rstrip("/") + f".before-{backup_id}"
    leapfrog_galera.move_aside(config["datadir"], aside)
    _run(["mariadb-backup", "--no-defaults", "--copy-back", f"--target-dir={data}",
          f"--datadir={config['datadir']}"], params)
    leapfrog_galera.chown_tree(config["datadir"], config["user"])
    leapfrog_galera.write_grastate(config["datadir"], manifest["uuid"], manifest["seqno"], True)
    booted = __salt__["galera.bootstrap"](timeout=timeout)
    with leapfrog_mysql.connect(params) as conn, conn.cursor() as cur:
        differ = _compare(_checksums(cur, _tables(cur)), manifest["checksums"])
    if differ:
        raise GaleraError(f"the cluster restored from {backup_id} differs from the backup "
                          f"({'; '.join(differ[:3])}); the replaced datadir is kept in "
                          f"{aside}")
    if not keep:
        shutil.rmtree(aside, ignore_errors=True)
    return {"id": backup_id, "node": config["node_name"], "seqno": manifest["seqno"],
            "restored": True, "matches_backup": True, "tables": len(manifest["checksums"]),
            "primary": booted["primary"], "kept": aside if keep else None,
            "seconds": round(time.monotonic() - started, 2)}
