"""
OVN's northbound and southbound databases backed up with a run, verified, and restored by
its rollback.

``ovsdb-client backup`` writes each database as one consistent snapshot (a standalone
database file); the two are taken one after the other (ovn-northd derives the southbound
from the northbound, and ovn-controllers re-assert their chassis: what the NB says is what
counts). Each backup is a folder ``<leapfrog:backups:dir>/ovsdb/<id>`` (written under
``<id>.partial``, renamed when complete) with one file per database and a manifest: its
sha256 and every table's row count, read from the file itself (``ovsdb-tool query``).
``verify`` checks both again; ``restore`` refuses a backup that does not verify, replaces
each database's content in the running server (``ovsdb-client restore``: one transaction)
and compares the server's row counts with the manifest.

Configuration: pillar ``leapfrog:ovn:nb_connection`` and ``leapfrog:ovn:sb_connection``
(``tcp:HOST:PORT``, ``ssl:...`` or ``unix:PATH``; arguments win), ``leapfrog:backups:dir``;
``ovsdb-client`` and ``ovsdb-tool`` (Debian: openvswitch-common) on the minion.
"""
import datetime
import json
import logging
import os
import shutil
import subprocess

import salt.utils.data

import leapfrog_errors
import leapfrog_files
import leapfrog_ovsdb

log = logging.getLogger(__name__)

__virtualname__ = "ovsdb_backup"

DATABASES = {"nb": "OVN_Northbound", "sb": "OVN_Southbound"}
MANIFEST = "manifest.json"
TIMEOUT = 300


class OvsdbBackupError(leapfrog_errors.LeapfrogError):
    """A backup could not be taken, found, verified or restored (one line, with the fix)."""


def __virtual__():
    missing = [t for t in ("ovsdb-client", "ovsdb-tool") if not shutil.which(t)]
    if missing:
        return (False, f"ovsdb_backup needs {', '.join(missing)} (Debian: openvswitch-common)")
    return __virtualname__


def _pillar(key, default=None):
    return salt.utils.data.traverse_dict_and_list(__pillar__, key, default)


def _remote(which, given):
    return leapfrog_ovsdb.remote(given or _pillar(f"leapfrog:ovn:{which}_connection"), which,
                                 OvsdbBackupError)


def _root(backup_dir):
    if backup_dir:
        return os.path.abspath(backup_dir)
    return leapfrog_files.backup_root(_pillar("leapfrog:backups:dir", ""), "ovsdb")


def _run(argv, stdin=None, stdout=None):
    """``argv``'s output (or into the open file ``stdout``); a failure names the tool and
    its last line."""
    try:
        proc = subprocess.run(argv, stdin=stdin, stdout=stdout or subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise OvsdbBackupError(f"{argv[0]} {argv[1]} did not finish in {TIMEOUT} s: is the "
                               "OVSDB server up?") from None
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise OvsdbBackupError(f"{argv[0]} {argv[1]} failed (exit {proc.returncode}): "
                               f"{err[-1] if err else 'no output'}")
    return proc.stdout.decode("utf-8", "replace") if proc.stdout is not None else ""


def _counts(reader, name):
    """{table: rows} of database ``name`` through ``reader`` (``["ovsdb-client", "query",
    remote]`` or ``["ovsdb-tool", "query", file]``), every table of its schema."""
    tables = _tables(reader, name)
    ops = [{"op": "select", "table": t, "where": [], "columns": ["_uuid"]} for t in tables]
    results = json.loads(_run([*reader, json.dumps([name, *ops])]))
    return {t: len(r.get("rows") or []) for t, r in zip(tables, results)}


def _tables(reader, name):
    if reader[0] == "ovsdb-tool":  # the file's own schema: its second JSON record
        with open(reader[2], encoding="utf-8") as handle:
            handle.readline()
            return sorted(json.loads(handle.readline())["tables"])
    return sorted(json.loads(_run(["ovsdb-client", "get-schema", reader[2], name]))["tables"])


def _manifest(root, backup_id):
    return leapfrog_files.read_manifest(
        root, backup_id, OvsdbBackupError, "OVSDB backup",
        lambda found: None if isinstance(found.get("databases"), dict)
        else "its manifest lists no database", MANIFEST)


def _resolve(root, backup_id, label=None):
    return leapfrog_files.resolve(root, backup_id, label,
                                  lambda found: _manifest(root, found).get("label"),
                                  OvsdbBackupError, "OVSDB backup", "ovsdb_backup.backup",
                                  "ovsdb_backup.verify")


def backup(label=None, backup_dir=None, nb_connection=None, sb_connection=None):
    """
    Back up OVN's northbound and southbound databases into a new folder with a manifest
    (each file's sha256 and every table's row count). ``label``: a word in the manifest
    and the folder name (the run's id).

    CLI Example:

    .. code-block:: bash

        salt dbs01 ovsdb_backup.backup label=pre-2025.1
    """
    leapfrog_files.check_label(label, OvsdbBackupError)
    remotes = {"nb": _remote("nb", nb_connection), "sb": _remote("sb", sb_connection)}
    root = _root(backup_dir)
    now = datetime.datetime.now(datetime.timezone.utc)
    backup_id = leapfrog_files.backup_id(now, label)
    manifest = {"id": backup_id, "label": label, "created": now.isoformat(timespec="seconds"),
                "databases": {}}
    with leapfrog_files.partial_folder(root, backup_id, OvsdbBackupError) as partial:
        for which, name in DATABASES.items():
            path = os.path.join(partial, f"{name}.db")
            with open(path, "wb") as handle:
                _run(["ovsdb-client", "backup", remotes[which], name], stdout=handle)
            os.chmod(path, 0o600)
            manifest["databases"][name] = {
                "file": os.path.basename(path), "bytes": os.path.getsize(path),
                "sha256": leapfrog_files.sha256(path),
                "tables": _counts(["ovsdb-tool", "query", path], name)}
        leapfrog_files.complete(partial, manifest, MANIFEST)
    return {"id": backup_id, "path": os.path.join(root, backup_id), "label": label,
            "databases": {n: {"bytes": d["bytes"], "rows": sum(d["tables"].values())}
                          for n, d in manifest["databases"].items()}}


def verify(backup_id="latest", label=None, backup_dir=None):
    """
    Check an OVSDB backup against its manifest: each file's sha256, the schema it names,
    every table's row count read from the file again. ``valid`` False lists the problems.

    CLI Example:

    .. code-block:: bash

        salt dbs01 ovsdb_backup.verify label=pre-2025.1
    """
    root = _root(backup_dir)
    backup_id = _resolve(root, backup_id, label)
    manifest, problems = _manifest(root, backup_id), []
    for name, info in sorted(manifest["databases"].items()):
        path = os.path.join(root, backup_id, os.path.basename(info["file"]))
        if not os.path.isfile(path):
            problems.append(f"{name}: {info['file']} is missing")
            continue
        if leapfrog_files.sha256(path) != info["sha256"]:
            problems.append(f"{name}: {info['file']} does not match its sha256 (changed or "
                            "corrupt)")
            continue
        try:
            found = _run(["ovsdb-tool", "db-name", path]).strip()
            counts = _counts(["ovsdb-tool", "query", path], name)
        except (OvsdbBackupError, ValueError, KeyError) as exc:
            problems.append(f"{name}: {info['file']} is not a readable OVSDB file ({exc})")
            continue
        if found != name:
            problems.append(f"{name}: {info['file']} holds {found}")
        elif counts != info["tables"]:
            problems.append(f"{name}: row counts differ from the manifest")
    return {"id": backup_id, "valid": not problems, "problems": problems}


def restore(backup_id, label=None, backup_dir=None, nb_connection=None, sb_connection=None):
    """
    Replace OVN's northbound and southbound content with a backup's (``backup_id`` or the
    latest with ``label``), once it verifies; then compare the servers' row counts with the
    manifest (``matches_manifest``: the northbound's; ovn-northd rewrites the southbound
    from it at once). Neutron's servers should be stopped meanwhile (the rollback has
    stopped the controllers).

    CLI Example:

    .. code-block:: bash

        salt dbs01 ovsdb_backup.restore 20261207T041500.123Z-pre-2025.1
    """
    remotes = {"nb": _remote("nb", nb_connection), "sb": _remote("sb", sb_connection)}
    checked = verify(backup_id, label, backup_dir)
    if not checked["valid"]:
        raise OvsdbBackupError(f"OVSDB backup {checked['id']} does not verify ("
                               f"{'; '.join(checked['problems'])}): nothing restored")
    root = _root(backup_dir)
    manifest = _manifest(root, checked["id"])
    differ = []
    for which, name in DATABASES.items():  # the northbound first: the source of truth
        info = manifest["databases"][name]
        with open(os.path.join(root, checked["id"], info["file"]), "rb") as handle:
            _run(["ovsdb-client", "restore", remotes[which], name], stdin=handle)
        # ovn-northd rewrites the southbound from the northbound at once: only the NB's
        # counts are the backup's to compare
        if which == "nb" and _counts(["ovsdb-client", "query", remotes[which]],
                                     name) != info["tables"]:
            differ.append(name)
    log.info("ovsdb_backup: restored %s", checked["id"])
    return {"id": checked["id"], "restored": list(DATABASES.values()),
            "matches_manifest": not differ, "differ": differ}
