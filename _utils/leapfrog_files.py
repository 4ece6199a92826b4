"""What the backup modules (``mysql_backup``, ``ovsdb_backup``) share about a backup's
folder: its id (a UTC timestamp, then the label), the labels and ids accepted, and each
file's sha256 read in chunks (a manifest names each file's)."""
import hashlib
import re

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


def check_label(label, error):
    """Raise ``error`` unless ``label`` (None: no label) is a word a folder name can hold."""
    if label is not None and not LABEL.match(str(label)):
        raise error(f"invalid label {label!r}: use letters, digits, _ . - (64 at most)")


def backup_id(now, label=None):
    """A new backup's id: ``now`` (UTC) to the millisecond, then ``-<label>`` if any."""
    found = now.strftime("%Y%m%dT%H%M%S") + f".{now.microsecond // 1000:03d}Z"
    return found + (f"-{label}" if label else "")
