"""States over the ``mysql_backup`` execution module: a verified backup exists, a clone of a
database exists (for the upgrade rehearsal), a clone is gone.

.. code-block:: yaml

    pre-upgrade-run42:               # the label of the backup
      mysql_backup.present:
        - databases: [nova_api, nova, nova_cell0]

    rehearsal clones:
      mysql_backup.cloned:
        - names: [nova_api, nova, nova_cell0]
        - suffix: _upgrade
        - force: True                # re-clone a clone that differs (e.g. a failed rehearsal)

    drop rehearsal clones:
      mysql_backup.clone_absent:
        - names: [nova_api, nova, nova_cell0]

Connection arguments (``host``, ``port``, ``socket``, ``user``, ``password``) default to
pillar ``leapfrog:database``; ``backup_dir`` to pillar ``leapfrog:backups:dir`` + ``/mysql``.
"""
import datetime

import leapfrog_parse
from salt.exceptions import CommandExecutionError

__virtualname__ = "mysql_backup"


def __virtual__():
    if "mysql_backup.backup" in __salt__:
        return __virtualname__
    return (False, "mysql_backup state: the mysql_backup execution module is not available "
                   "(PyMySQL and mariadb-dump/mysqldump are needed)")


def _ret(name):
    return {"name": name, "changes": {}, "result": True, "comment": ""}


def _names(value):
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value]


def _age_seconds(created):
    try:
        then = datetime.datetime.fromisoformat(created)
    except (TypeError, ValueError):
        return None
    return (datetime.datetime.now(datetime.timezone.utc) - then).total_seconds()


def present(name, databases=None, backup_dir=None, max_age=None, compression=None,
            **connection):
    """
    Ensure a verified backup labelled ``name`` holds ``databases``.

    An existing backup with that label, those databases (and, with ``max_age`` seconds, young
    enough) that passes ``mysql_backup.verify`` satisfies the state; otherwise a new backup is
    taken and verified.

    name
        the backup's label (letters, digits, ``_ . -``), e.g. ``pre-upgrade-<run>``
    databases
        list of databases; default pillar ``leapfrog:database:databases``
    max_age
        seconds; an older backup with the label does not count
    """
    ret = _ret(name)
    wanted = _names(databases) or _names(
        (__pillar__.get("leapfrog", {}).get("database", {}) or {}).get("databases"))
    try:
        if max_age is not None:
            max_age = leapfrog_parse.number(max_age, "max_age", minimum=0, maximum=10**9)
        found = None
        broken = []
        for item in reversed(__salt__["mysql_backup.list"](backup_dir=backup_dir)):
            if item.get("label") != name or "error" in item:
                continue
            if wanted and not set(wanted) <= set(item.get("databases", [])):
                continue
            age = _age_seconds(item.get("created"))
            if max_age is not None and (age is None or age > max_age):
                continue
            try:
                __salt__["mysql_backup.verify"](item["id"], backup_dir=backup_dir)
            except CommandExecutionError as exc:
                broken.append(str(exc))
                continue
            found = item
            break
        if found:
            ret["comment"] = (f"Backup {found['id']} of {', '.join(found['databases'])} is "
                              "present and verified")
            return ret
        what = ", ".join(wanted) if wanted else "the pillar's databases"
        note = f" ({broken[0]})" if broken else ""
        if __opts__["test"]:
            ret["result"] = None
            ret["comment"] = f"Would back up {what} with label {name}{note}"
            ret["changes"] = {"old": None, "new": {"label": name, "databases": wanted}}
            return ret
        made = __salt__["mysql_backup.backup"](
            databases=wanted or None, backup_dir=backup_dir, label=name,
            compression=compression, **connection)
        checked = __salt__["mysql_backup.verify"](made["id"], backup_dir=backup_dir)
    except CommandExecutionError as exc:
        ret["result"] = False
        ret["comment"] = str(exc)
        return ret
    ret["changes"] = {
        "old": None,
        "new": {
            "id": made["id"],
            "path": made["path"],
            "databases": {db: {"sha256": info["sha256"], "rows": info["rows"]}
                          for db, info in made["databases"].items()},
        },
    }
    ret["comment"] = (f"Backed up {', '.join(sorted(made['databases']))} as {made['id']} and "
                      f"verified {len(checked['databases'])} file(s){note}")
    return ret


def cloned(name, suffix="_upgrade", force=False, **connection):
    """
    Ensure database ``name`` has a clone ``<name><suffix>`` identical to it (row counts and
    row checksums of every table, as ``mysql_backup.checksums``).

    A clone that exists but differs (e.g. a rehearsal already migrated it) is replaced only
    with ``force: True`` and only when leapfrog made it (``mysql_backup.clone`` marks its
    clones; a production or system database is never replaced); otherwise the state fails
    and says so.
    """
    ret = _ret(name)
    target = f"{name}{suffix}"
    try:
        force = leapfrog_parse.boolean(force, "force")
        exists = __salt__["mysql_backup.exists"]([target], **connection)[target]
        differences = []
        if exists:
            source = __salt__["mysql_backup.checksums"]([name], **connection)[name]
            clone = __salt__["mysql_backup.checksums"]([target], **connection)[target]
            differences = sorted(t for t in set(source) | set(clone)
                                 if source.get(t) != clone.get(t))
            if not differences:
                ret["comment"] = f"{target} is an identical clone of {name}"
                return ret
            if not force:
                ret["result"] = False
                ret["comment"] = (
                    f"{target} exists and differs from {name} in {len(differences)} table(s) "
                    f"({', '.join(differences[:5])}): set force: True to re-clone it")
                return ret
        verb = "replace" if exists else "create"
        if __opts__["test"]:
            ret["result"] = None
            ret["comment"] = f"Would {verb} {target} as a clone of {name}"
            ret["changes"] = {"old": {"exists": exists, "differs": differences},
                              "new": {"clone": target}}
            return ret
        made = __salt__["mysql_backup.clone"]([name], suffix=suffix, force=exists,
                                              **connection)[name]
    except CommandExecutionError as exc:
        ret["result"] = False
        ret["comment"] = str(exc)
        return ret
    ret["changes"] = {
        "old": {"exists": exists, "differs": differences},
        "new": {"clone": target, "tables": made["tables"], "rows": made["rows"]},
    }
    if not made["identical"]:
        ret["result"] = False
        ret["comment"] = (f"Cloned {name} to {target} but they differ: "
                          f"{'; '.join(made['differences'][:5])} (was {name} written meanwhile?)")
        return ret
    ret["comment"] = f"{verb.capitalize()}d {target} as a clone of {name} ({made['rows']} rows)"
    return ret


def clone_absent(name, suffix="_upgrade", **connection):
    """
    Ensure the clone ``<name><suffix>`` of database ``name`` does not exist (drops only a
    clone leapfrog marked, never ``name``, a production or a system database).
    """
    ret = _ret(name)
    target = f"{name}{suffix}"
    try:
        if not __salt__["mysql_backup.exists"]([target], **connection)[target]:
            ret["comment"] = f"{target} is already absent"
            return ret
        if __opts__["test"]:
            ret["result"] = None
            ret["comment"] = f"Would drop {target}"
            ret["changes"] = {"old": target, "new": None}
            return ret
        __salt__["mysql_backup.drop_clone"]([name], suffix=suffix, **connection)
        if __salt__["mysql_backup.exists"]([target], **connection)[target]:
            ret["result"] = False
            ret["comment"] = f"{target} still exists after DROP DATABASE"
            return ret
    except CommandExecutionError as exc:
        ret["result"] = False
        ret["comment"] = str(exc)
        return ret
    ret["changes"] = {"old": target, "new": None}
    ret["comment"] = f"Dropped {target}"
    return ret
