"""File helpers the backup modules share: a file's sha256 read in chunks (a backup's
manifest names each file's)."""
import hashlib

CHUNK = 1 << 22


def sha256(path):
    """The hex sha256 of the file at ``path``, read 4 MiB at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()
