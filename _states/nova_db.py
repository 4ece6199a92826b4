"""
Keep nova's databases at a release's schema (or along a skip-level path) and its cells mapped.

.. code-block:: yaml

    nova-db-at-2026.1:
      nova_db.synced:
        - path: ["2024.1", "2025.1", "2026.1"]   # staged: every hop in order

    nova-db-at-2025.1:
      nova_db.synced:
        - release: "2025.1"                      # one release's heads (or revision: ...)

    nova-cells:
      nova_db.cells_mapped:
        - name: cell1
        - release: "2026.1"

Database options (host, socket, user, password, api_database, database, transport_url,
config_file, venv, venvs) are passed through to the ``nova_manage`` module; they default to
pillar ``leapfrog:database``, ``leapfrog:nova`` and ``leapfrog:releases``. ``test=True``
lists exactly the schema migrations the real run applies and changes nothing.
"""
from salt.exceptions import CommandExecutionError

__virtualname__ = "nova_db"


def __virtual__():
    if "nova_manage.staged_sync" in __salt__:
        return __virtualname__
    return (False, "nova_db needs the nova_manage execution module")


def _opts(kwargs):
    return {k: v for k, v in kwargs.items() if not k.startswith("__")}


def _fmt_pending(pending):
    parts = [f"{db}: {' '.join(revs)}" for db, revs in pending.items() if revs]
    return "; ".join(parts)


def _revision_changes(before, after):
    return {db: {"old": before.get(db), "new": after.get(db)}
            for db in sorted(set(before) | set(after)) if before.get(db) != after.get(db)}


def synced(name, release=None, revision=None, api_revision=None, path=None, online_migrations=True,
           cell="cell1", **kwargs):
    """
    Ensure nova's API, main and cell0 databases are at ``release``'s heads (or ``revision`` /
    ``api_revision``), or, with ``path``, walked hop by hop through every release of ``path``
    (``nova_manage.staged_sync``: api_db sync, cell mapping, db sync, online data migrations).

    A target older than the databases is an error (nova cannot downgrade). Online data
    migrations run in the real run (their work cannot be counted without doing it); changes
    list the rows they migrated.

    CLI Example:

    .. code-block:: bash

        salt ctl01 state.single nova_db.synced nova path='["2024.1","2025.1","2026.1"]' test=True
    """
    ret = {"name": name, "result": False, "changes": {}, "comment": ""}
    opts = _opts(kwargs)
    if bool(path) == bool(release):
        ret["comment"] = "give either release (one hop) or path (staged), not both or neither"
        return ret
    try:
        if path:
            return _synced_path(ret, path, cell, online_migrations, opts)
        return _synced_release(ret, release, revision, api_revision, online_migrations, opts)
    except CommandExecutionError as exc:
        ret["comment"] = str(exc)
        return ret


def _synced_path(ret, path, cell, online_migrations, opts):
    plan = __salt__["nova_manage.staged_pending"](path=path, cell=cell, **opts)
    todo = {h["release"]: h["pending"] for h in plan["hops"] if any(h["pending"].values())}
    if __opts__["test"]:
        if not todo and not plan["cells_to_map"]:
            ret["result"] = True
            ret["comment"] = (f"nova databases are at {plan['path'][-1]}'s heads "
                              f"({plan['revisions']}); online migrations are checked in a real run")
            return ret
        ret["result"] = None
        lines = [f"{rel}: {_fmt_pending(p)}" for rel, p in todo.items()]
        if plan["cells_to_map"]:
            lines.insert(0, f"map cells: {', '.join(plan['cells_to_map'])}")
        ret["comment"] = "Would apply: " + " | ".join(lines)
        ret["changes"] = {"pending": todo, "cells_to_map": plan["cells_to_map"]}
        return ret
    result = __salt__["nova_manage.staged_sync"](path=path, cell=cell, online=online_migrations,
                                                 **opts)
    before, migrated, cells = {}, {}, None
    for hop in result["hops"]:
        for step in hop["steps"]:
            if step["step"] in ("api_db sync", "db sync"):
                for db, rev in step["before"].items():
                    before.setdefault(db, rev)
            elif step["step"] == "online_data_migrations" and step["migrated"]:
                migrated[hop["release"]] = {k: v["done"] for k, v in step["migrations"].items()
                                            if v["done"]}
            elif step["step"] == "cell mapping" and step["ran"]:
                cells = {"old": step["cells_before"], "new": step["cells_after"]}
    changes = _revision_changes(before, result["revisions"])
    if migrated:
        changes["online_migrations"] = migrated
    if cells:
        changes["cells"] = cells
    ret["changes"] = changes
    ret["result"] = True
    ran = [h["release"] for h in result["hops"] if h["changed"]]
    ret["comment"] = (f"nova databases synced along {' -> '.join(result['path'])} "
                      f"(changed in: {', '.join(ran) or 'none'}) in {result['seconds']} s"
                      if changes else
                      f"nova databases already at {result['path'][-1]}: {result['revisions']}")
    return ret


def _synced_release(ret, release, revision, api_revision, online_migrations, opts):
    plan = __salt__["nova_manage.pending"](release=release, revision=revision,
                                           api_revision=api_revision, **opts)
    todo = {db: revs for db, revs in plan["pending"].items() if revs}
    if __opts__["test"]:
        if not todo:
            ret["result"] = True
            ret["comment"] = f"nova databases are at {plan['targets']} ({release})"
            return ret
        ret["result"] = None
        ret["comment"] = f"Would apply ({release}): {_fmt_pending(todo)}"
        ret["changes"] = {"pending": todo}
        return ret
    before = dict(plan["current"])
    after = dict(before)
    if todo.get("api"):
        step = __salt__["nova_manage.api_db_sync"](release=release, revision=api_revision, **opts)
        after.update(step["after"])
    if todo.get("main") or todo.get("cell0"):
        step = __salt__["nova_manage.db_sync"](release=release, revision=revision, **opts)
        after.update(step["after"])
    changes = _revision_changes(before, after)
    if online_migrations:
        step = __salt__["nova_manage.online_data_migrations"](release=release, **opts)
        if step["migrated"]:
            changes["online_migrations"] = {k: v["done"] for k, v in step["migrations"].items()
                                            if v["done"]}
    ret["changes"] = changes
    ret["result"] = True
    ret["comment"] = (f"nova databases synced to {release}: {after}" if changes
                      else f"nova databases already at {release}: {after}")
    return ret


def cells_mapped(name="cell1", release=None, discover_hosts=False, **kwargs):
    """
    Ensure cell0 and the cell ``name`` are mapped (and, with ``discover_hosts``, compute hosts
    mapped to their cell). An existing cell is left as it is.

    CLI Example:

    .. code-block:: bash

        salt ctl01 state.single nova_db.cells_mapped cell1 release=2026.1 test=True
    """
    ret = {"name": name, "result": False, "changes": {}, "comment": ""}
    opts = _opts(kwargs)
    try:
        cells = __salt__["nova_manage.list_cells"](release=release, **opts)
        names = [c["name"] for c in cells]
        missing = [c for c in ("cell0", name)
                   if not any(x["name"] == c or (c == "cell0" and x["uuid"].startswith("00000000-"))
                              for x in cells)]
        if __opts__["test"]:
            if not missing and not discover_hosts:
                ret["result"] = True
                ret["comment"] = f"cells mapped: {', '.join(map(str, names))}"
                return ret
            ret["result"] = None if missing else True
            what = [f"map {', '.join(missing)}"] if missing else []
            if discover_hosts:
                what.append("discover unmapped compute hosts")
            ret["comment"] = "Would " + " and ".join(what)
            if missing:
                ret["changes"] = {"cells": {"old": names, "new": names + missing}}
            return ret
        if "cell0" in missing:
            __salt__["nova_manage.map_cell0"](release=release, **opts)
        if name in missing:
            __salt__["nova_manage.create_cell"](name=name, release=release, **opts)
        if missing:
            after = [c["name"] for c in __salt__["nova_manage.list_cells"](release=release, **opts)]
            ret["changes"]["cells"] = {"old": names, "new": after}
        if discover_hosts:
            found = __salt__["nova_manage.discover_hosts"](release=release, cell=name, **opts)
            if found["hosts"]:
                ret["changes"]["hosts"] = found["hosts"]
    except CommandExecutionError as exc:
        ret["comment"] = str(exc)
        return ret
    ret["result"] = True
    ret["comment"] = "cells mapped" + (" (changed)" if ret["changes"] else ", nothing to do")
    return ret
