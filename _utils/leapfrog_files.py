"""What the backup modules (``mysql_backup``, ``ovsdb_backup``, ``galera_backup``) share
about a backup's folder: its id (a UTC timestamp, then the label), the labels and ids
accepted, each file's sha256 read in chunks (a manifest names each file's), and the space a
folder's filesystem has for one."""
import contextlib
import hashlib
import json
import os
import shutil
import re

import leapfrog_errors
import leapfrog_parse

CHUNK = 1 << 22
LABEL = re.compile(r"\A[A-Za-z0-9_.-]{1,64}\Z")
# a backup folder's name directly under its root: no /, no leading .
BACKUP_ID = re.compile(r"\A[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")


def sha256(path):
    """The hex sha256 of the file at ``path``, read 4 MiB at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


DEFAULT_BACKUP_ROOT = "/var/backups/leapfrog"  # without pillar leapfrog:backups:dir


def backup_root(configured, kind):
    """Where backups of ``kind`` ("mysql", "ovsdb", "galera": a subfolder each) go: under
    ``configured`` (pillar ``leapfrog:backups:dir``), else the default root."""
    return os.path.join(configured or DEFAULT_BACKUP_ROOT, kind)


def tree_size(path):
    """Bytes of the files under ``path`` (files that vanish meanwhile are skipped)."""
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                pass
    return total


def free_bytes(path):
    """Bytes free on the filesystem that holds ``path`` (or would: its nearest existing
    parent)."""
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    return shutil.disk_usage(probe).free


def space_problem(path, needed, what, fix):
    """None when ``path``'s filesystem has ``needed`` bytes free, else the line that says
    what lacks how much and ``fix``."""
    free = free_bytes(path)
    if free >= needed:
        return None
    return (f"not enough space for {what} in {path}: {needed >> 20} MiB needed, "
            f"{free >> 20} MiB free; {fix}")


def check_label(label, error):
    """Raise ``error`` unless ``label`` (None: no label) is a word a folder name can hold."""
    if label is not None and not LABEL.match(str(label)):
        raise error(f"invalid label {label!r}: use letters, digits, _ . - (64 at most)")


def backup_id(now, label=None):
    """A new backup's id: ``now`` (UTC) to the millisecond, then ``-<label>`` if any."""
    found = now.strftime("%Y%m%dT%H%M%S") + f".{now.microsecond // 1000:03d}Z"
    return found + (f"-{label}" if label else "")


def backup_ids(root, manifest="manifest.json"):
    """The complete backups under ``root``, oldest first: folders holding a manifest, not
    ``.partial`` ones still being written."""
    if not os.path.isdir(root):
        return []
    return sorted(n for n in os.listdir(root) if not n.endswith(".partial")
                  and os.path.isfile(os.path.join(root, n, manifest)))


MAX_KEEP = 10000


def prune(root, keep, manifest="manifest.json", log=None, error=leapfrog_errors.LeapfrogError):
    """Remove the oldest complete backups under ``root``, keeping the newest ``keep`` (a
    whole number from 1 to MAX_KEEP, else ``error`` naming it); folders without
    ``manifest`` are never touched. Returns ``{"kept": [...], "removed": [...]}`` (ids,
    oldest first)."""
    keep = leapfrog_parse.number(keep, "keep", minimum=1, maximum=MAX_KEEP, integer=True,
                                 error=error)
    ids = backup_ids(root, manifest)
    removed = ids[:-keep] if len(ids) > keep else []
    for name in removed:
        if log is not None:
            log.info("pruning backup %s of %s", name, root)
        shutil.rmtree(os.path.join(root, name))
    return {"kept": ids[len(removed):], "removed": removed}


def resolve(root, backup_id, label, label_of, error, what, take, see):
    """The id of an existing backup under ``root``: ``backup_id``, or the newest one (with
    ``label`` when given, read through ``label_of(id)``) for None/''/'latest'. An id that is
    not a plain folder name of ``root`` is refused as unknown. ``what`` names the kind
    ("OVSDB backup"), ``take`` the function that takes one, ``see`` the one that lists."""
    ids = backup_ids(root)
    if backup_id in (None, "", "latest"):
        if label is not None:
            ids = [i for i in ids if label_of(i) == str(label)]
        if not ids:
            raise error(f"no {what}{f' labelled {label}' if label else ''} in {root}: take "
                        f"one with {take}")
        return ids[-1]
    backup_id = str(backup_id)
    if not BACKUP_ID.match(backup_id) or backup_id not in ids:
        raise error(f"no {what} {backup_id!r} in {root} (have: "
                    f"{', '.join(ids[-5:]) or 'none'}); see {see}")
    return backup_id


def read_manifest(root, backup_id, error, what, problem, manifest="manifest.json"):
    """The manifest of backup ``backup_id`` under ``root``; ``error`` naming ``what`` ("OVSDB
    backup") when it is unreadable or ``problem(manifest)`` finds it of another kind."""
    try:
        with open(os.path.join(root, backup_id, manifest), encoding="utf-8") as handle:
            found = json.load(handle)
    except (OSError, ValueError) as exc:
        raise error(f"{what} {backup_id}: manifest unreadable ({exc}); take a new backup") \
            from None
    wrong = problem(found) if isinstance(found, dict) else "not a JSON object"
    if wrong:
        raise error(f"{what} {backup_id}: {wrong}")
    return found


@contextlib.contextmanager
def partial_folder(root, backup_id, error):
    """A new backup's folder ``<root>/<id>.partial`` (0700), removed again when the block
    fails; ``complete`` gives it its final name. A listed backup is so always a whole one."""
    partial = os.path.join(root, backup_id + ".partial")
    try:
        os.makedirs(root, mode=0o700, exist_ok=True)
        os.makedirs(partial, mode=0o700)
    except OSError as exc:
        raise error(f"cannot create the backup folder {partial}: {exc.strerror}; fix "
                    "leapfrog:backups:dir or its permissions") from None
    try:
        yield partial
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def complete(partial, manifest, name="manifest.json"):
    """Write ``manifest`` into the ``partial`` folder (atomically) and rename the folder to
    the backup's id; return the final path."""
    tmp = os.path.join(partial, name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(manifest, handle, indent=1, sort_keys=True)
    os.rename(tmp, os.path.join(partial, name))
    final = partial[:-len(".partial")]
    os.rename(partial, final)
    return final
