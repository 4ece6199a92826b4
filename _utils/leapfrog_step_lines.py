"""One line per step for the report, by the step's kind (what an operator wants to read:
"drained ctl01 from 6 backends, 0 sessions, 0.6 s"), from the result the journal recorded.

``line(kind, node, result)`` returns the line, or None when the kind has no line here or the
result does not have the expected shape (the report then shows its generic short form).
Results of ``leapfrog.call`` steps are ``{minion id: return}``.
"""


def _answers(result):
    """(minion, return) pairs of a leapfrog.call result whose returns are mappings."""
    return [(mid, ret) for mid, ret in sorted(result.items()) if isinstance(ret, dict)]


def _drain(node, result):
    parts = []
    for _, ret in _answers(result):
        backends = ret.get("backends") or {}
        sessions = sum(int(b.get("sessions") or 0) for b in backends.values())
        parts.append(f"drained {ret.get('server', node)} from {len(backends)} backends, "
                     f"{sessions} sessions, {float(ret.get('seconds') or 0):.1f} s")
    return "; ".join(parts) or None


def _backup_db(node, result):
    parts = []
    for mid, ret in _answers(result):
        if ret.get("kind") == "galera":
            parts.append(f"the Galera cluster backed up on {mid} as {ret.get('id')} at seqno "
                         f"{ret.get('seqno')} ({ret.get('tables')} tables), the node paused "
                         f"{float(ret.get('paused_seconds') or 0):.1f} s")
            continue
        lock = ret.get("lock_seconds")
        parts.append(f"{len(ret.get('databases') or {})} databases backed up on {mid} as "
                     f"{ret.get('id')}" + (f", writers paused {float(lock) * 1000:.0f} ms"
                                           if lock is not None else ""))
    return "; ".join(parts) or None


def _backup_ovsdb(node, result):
    parts = []
    for mid, ret in _answers(result):
        sizes = ", ".join(f"{db} {info.get('rows')} rows" for db, info in
                          sorted((ret.get("databases") or {}).items()))
        parts.append(f"{sizes} backed up on {mid} as {ret.get('id')}")
    return "; ".join(parts) or None


def _verify_backup(node, result):
    parts = [f"{mid}: {'valid' if ret.get('valid') is not False else 'INVALID'}"
             for mid, ret in _answers(result)]
    return ", ".join(parts) or None


def _backup_disk(node, result):
    parts = [f"{node}'s disk backed up on {mid} as {ret.get('backup')}"
             for mid, ret in _answers(result)]
    return "; ".join(parts) or None


def _rebuild(node, result):
    old = (result.get("old") or {}).get("oscodename")
    new = (result.get("new") or {}).get("oscodename")
    return f"{result.get('node', node)} rebuilt: {old} -> {new} in {result.get('seconds')} s"


def _revisions(node, result):
    nova = (result.get("nova") or {}).get("revisions") or {}
    parts = [f"nova {' '.join(f'{db} {rev}' for db, rev in sorted(nova.items()))}"] \
        if nova else []
    for service in ("keystone", "glance", "placement"):
        value = result.get(service)
        if value:
            parts.append(f"{service} {', '.join(value) if isinstance(value, list) else value}")
    return "; ".join(parts) or None


def _switch(node, result):
    if isinstance(result.get("hosts"), dict):
        return "; ".join(_switch(host, each) or host
                         for host, each in sorted(result["hosts"].items()))
    host = result.get("host") or node
    if result.get("skipped"):
        return f"{host} skipped: {result.get('reason')}"
    return f"{host} switched to {result.get('release')} in {result.get('seconds')} s"


def _stop_compute(node, result):
    return (f"{result.get('host') or node} stopped at {result.get('release_before')} "
            f"({result.get('servers')} servers running on)")


def _revision(value):
    if isinstance(value, dict):
        return ", ".join(f"{name} {rev}" for name, rev in sorted(value.items()))
    if isinstance(value, (list, tuple)):
        return ",".join(str(rev) for rev in value) or "none"
    return str(value)


def _nova_sync(ret):
    """nova's staged sync: each database's first and last revision over the path's hops."""
    first, last = {}, {}
    for hop in ret.get("hops") or []:
        for step in hop.get("steps") or []:
            for name, rev in (step.get("before") or {}).items():
                first.setdefault(name, rev)
            last.update(step.get("after") or {})
    changed = [f"{name} {first[name]} -> {last[name]}" for name in sorted(last)
               if first.get(name) != last[name]]
    path = ret.get("path") or []
    return (f"nova {' -> '.join(path)}: " + (", ".join(changed) or "nothing to migrate")
            + f" ({ret.get('seconds')} s)")


def _db_sync(node, result):
    parts = []
    for _, ret in _answers(result):
        if "hops" in ret:
            parts.append(_nova_sync(ret))
        elif "stages" in ret:
            stages = ret["stages"]
            seconds = sum(float(s.get("seconds") or 0) for s in stages)
            parts.append(f"{ret.get('service', node)} {'+'.join(s['stage'] for s in stages)}: "
                         f"{_revision(ret.get('before'))} -> {_revision(ret.get('after'))} "
                         f"({seconds:.1f} s)")
        elif ret.get("step") == "online_data_migrations":
            parts.append(f"{node} online data migrations at {ret.get('release')}: "
                         f"{ret.get('migrated')} rows migrated in {ret.get('calls')} call(s), "
                         f"{ret.get('seconds')} s")
    return "; ".join(parts) or None


def _gateways(node, result):
    """Routers' gateway ports moved off a chassis (``ovn_nb.move_gateways``) or back
    (``restore_gateways``)."""
    parts = []
    for _, ret in _answers(result):
        if "moved" in ret:
            moved = ret.get("moved") or []
            parts.append(", ".join(f"{m.get('port')} {m.get('from')} -> {m.get('to')}"
                                   for m in moved if isinstance(m, dict))
                         or f"no gateway active on {ret.get('chassis')}")
            if ret.get("stuck"):
                parts.append(f"left on {ret.get('chassis')} (no other chassis): "
                             f"{', '.join(map(str, ret['stuck']))}")
        elif "restored" in ret:
            back = ret.get("restored") or []
            parts.append(", ".join(f"{r.get('port')} back to {r.get('to')}"
                                   for r in back if isinstance(r, dict))
                         or f"nothing to restore on {ret.get('chassis')}")
    return "; ".join(parts) or None


LINES = {"db_sync": _db_sync, "gateways": _gateways, "db_finish": _db_sync, "drain": _drain,
         "backup_db": _backup_db, "backup_ovsdb": _backup_ovsdb,
         "verify_backup": _verify_backup,
         "backup_disk": _backup_disk, "rebuild": _rebuild, "revisions": _revisions,
         "switch_compute": _switch, "stop_compute": _stop_compute}


def line(kind, node, result):
    """The step's one line, or None (no line for its kind, or a result of another shape)."""
    if kind not in LINES or not isinstance(result, dict) or result.get("truncated"):
        return None
    try:
        return LINES[kind](node, result)
    except (AttributeError, KeyError, TypeError, ValueError):
        return None
