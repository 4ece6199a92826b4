"""What a run's journal says, read by step kind and node (never by step name): the
journal records of a kind, the facts of a run's report (backups, revisions, nodes,
computes), what a rollback of an upgrade run restores, and whether the run passed its
point of no return or later runs built on it.
"""
import leapfrog_errors
import leapfrog_journal
import leapfrog_minions
import leapfrog_parse
import leapfrog_rebuild


def records(data, *kinds, statuses=("done",)):
    """The journal records of the run's steps of ``kinds`` in ``statuses`` that hold a
    result (a mapping), in plan order: report and rollback read kinds, never names."""
    return [s for s in data["steps"] if s.get("kind") in kinds and s["status"] in statuses
            and isinstance(s.get("result"), dict)]


def flat_revisions(found):
    """leapfrog.revisions' return as {database: revision text}."""
    if not isinstance(found, dict) or "nova" not in found:
        return {}
    nova = (found.get("nova") or {}).get("revisions") or {}
    out = {f"nova_{s}" if s != "main" else "nova": rev for s, rev in nova.items()}
    for service in ("keystone", "placement", "glance"):
        value = found.get(service)
        out[service] = ", ".join(value) if isinstance(value, list) else value
    return out


def report_facts(data):
    """Backups, revisions and nodes of a control-plane run, read from its journal."""
    backups = []
    for record in records(data, "backup_db"):
        for mid, ret in record["result"].items():
            if ret.get("kind") == "galera":
                backups.append({"kind": "galera", "name": "cluster", "node": mid,
                                "id": ret.get("id"), "seqno": ret.get("seqno"),
                                "bytes": ret.get("bytes"), "tables": ret.get("tables"),
                                "paused_seconds": ret.get("paused_seconds"),
                                "verified": None})
            for db, info in (ret.get("databases") or {}).items():
                backups.append({"kind": "database", "name": db, "node": mid, "id": ret.get("id"),
                                "path": info.get("file"), "sha256": info.get("sha256"),
                                "bytes": info.get("bytes"), "verified": None})
    for record in records(data, "backup_ovsdb"):
        for mid, ret in record["result"].items():
            for db, info in (ret.get("databases") or {}).items():
                backups.append({"kind": "ovsdb", "name": db, "node": mid, "id": ret.get("id"),
                                "path": ret.get("path"), "bytes": info.get("bytes"),
                                "verified": None})
    verified = {mid: ret.get("valid") for r in records(data, "verify_backup")
                for mid, ret in r["result"].items() if isinstance(ret, dict)}
    for entry in backups:
        entry["verified"] = verified.get(entry["node"])
    for record in records(data, "backup_disk"):
        for mid, ret in record["result"].items():
            backups.append({"kind": "disk", "name": record.get("node"), "node": mid,
                            "id": ret.get("backup"), "path": ret.get("path"),
                            "disks": {d["target"]: {"sha256": d.get("sha256")}
                                      for d in ret.get("disks") or []},
                            "verified": None})
    rebuilt = {r["result"]["node"]: r["result"] for r in records(data, "rebuild")
               if r["result"].get("node")}
    for entry in backups:
        if entry["kind"] == "disk" and entry["name"] in rebuilt:
            entry["verified"] = True  # rebuild_node verifies the backup before replacing
    nodes = {}
    for record in records(data, "inventory"):
        for mid, info in record["result"].items():
            old = (rebuilt.get(mid) or {}).get("old") or {}
            nodes[mid] = {"role": "controller", "os": info.get("os"),
                          "oscodename": info.get("oscodename"),
                          "oscodename_before": old.get("oscodename"),
                          "rebuilt": mid in rebuilt}
    nodes.update(compute_facts(data))
    read = records(data, "revisions")  # the first read before any change, the last after
    revs = {"before": flat_revisions(read[0]["result"]) if read else {},
            "after": flat_revisions(read[-1]["result"]) if len(read) > 1 else {}}
    return {"backups": backups, "revisions": revs, "nodes": nodes, "rebuilt": sorted(rebuilt)}


def compute_facts(data):
    """Per compute a run stopped or switched: its release before/after, why a host was
    skipped (a line of the report, not a failure) or why its switch failed (a batch's
    failure is named in its step's error)."""
    computes = {}
    for record in records(data, "stop_compute"):
        result = record["result"]
        if "release_before" in result:
            computes.setdefault(result.get("host") or record.get("node"), {}).update(
                release_before=result["release_before"])
    switched = [(s["node"], {"error": s.get("error")}) for s in data["steps"]
                if s["status"] == "failed" and s.get("kind") == "switch_compute"
                and s.get("node")]
    for record in records(data, "switch_compute", statuses=("done", "skipped")):
        result = record["result"]
        if isinstance(result.get("hosts"), dict):  # a batch: one result per host
            switched += [(host, each) for host, each in result["hosts"].items()]
        else:
            switched.append((result.get("host") or record.get("node"), result))
    for host, result in switched:
        entry = computes.setdefault(host, {})
        if "error" in result:
            entry["note"] = f"failed: {result['error']}"
        elif result.get("skipped"):
            entry["note"] = f"skipped: {result.get('reason')}"
        else:
            entry.update(release=result.get("release"),
                         note=f"switched in {result.get('seconds')} s")
    return {host: dict(info, role="compute") for host, info in computes.items()}


UPGRADE_ORCHS = ("orch.upgrade_control_plane", "orch.upgrade_data_plane")


def later_runs(root, name, upgrade_run, data):
    """Upgrade runs of the cluster that finished after ``upgrade_run`` began: they built on
    it, so restoring its backups would throw their work away."""
    began = data.get("created", "")
    return [run for run, other in leapfrog_journal.list_runs(root, name)
            if run != upgrade_run and other.get("status") == "done"
            and (other.get("meta") or {}).get("orch") in UPGRADE_ORCHS
            and other.get("created", "") > began]


def next_no_return(data, step):
    """The first step after ``step`` in a run's stored plan marked irreversible (what the
    approval gate at ``step`` lets through), or None."""
    names = [s.get("name") for s in _stored_steps(data)]
    later = set(names[names.index(step) + 1:]) if step in names else set()
    return next((s for s in _stored_steps(data)
                 if s.get("irreversible") and s.get("name") in later), None)


def _stored_steps(data):
    return ((data.get("meta") or {}).get("plan") or {}).get("steps") or []


def past_no_return(data):
    """The first done step of a run's stored plan marked irreversible (with its journal
    record's ``ended``), or None."""
    records = {s["name"]: s for s in data.get("steps") or []}
    for step in _stored_steps(data):
        record = records.get(step.get("name")) or {}
        if step.get("irreversible") and record.get("status") == "done":
            return dict(step, ended=record.get("ended"))
    return None


def rollback_sources(opts, root, name, config, upgrade_run, force=False):
    """What a rollback of ``upgrade_run`` restores: its verified DB backup, each touched
    controller's pre-rebuild disk backup, the keys kept, the computes a fast-forward
    stopped (see the runner's ``rollback_sources``)."""
    if not upgrade_run:
        raise leapfrog_errors.LeapfrogError("name the upgrade run to roll back: "
                                            "upgrade_run=<id> (salt-run leapfrog.status)")
    data = leapfrog_journal.Journal(root, name, str(upgrade_run)).read()
    if not data:
        raise leapfrog_errors.LeapfrogError(f"cluster {name} has no run {upgrade_run}")
    later = later_runs(root, name, str(upgrade_run), data)
    forced = leapfrog_parse.boolean(force, "force")
    if later and not forced:
        raise leapfrog_errors.LeapfrogError(
            f"run {upgrade_run} was followed by finished upgrade run(s) "
            f"{', '.join(sorted(later))}: rolling it back would undo them too and restore "
            f"older data over theirs; roll back the latest run instead, or pass "
            f"force=True to go back to before {upgrade_run} anyway")
    passed = past_no_return(data)
    if passed and not forced:
        raise leapfrog_errors.LeapfrogError(
            f"run {upgrade_run} passed its point of no return at step {passed['name']} "
            f"({passed['changes']}; done {passed.get('ended')}): the cloud has moved on from "
            "its backups, and restoring them loses every write made since. Go forward "
            "instead (resume it with run=<its id> if it stopped), or pass force=True to "
            "restore the backups anyway")
    db = records(data, "backup_db")
    checked = records(data, "verify_backup")
    if not db or not checked:
        raise leapfrog_errors.LeapfrogError(
            f"run {upgrade_run} has no verified DB backup (no done step of kind "
            f"{'verify_backup' if db else 'backup_db'}): nothing was changed before it, so "
            "there is nothing to roll back")
    db_ids = {mid: ret.get("id") for mid, ret in db[0]["result"].items()
              if ret.get("kind") != "galera"}
    galera = {mid: ret.get("id") for mid, ret in db[0]["result"].items()
              if ret.get("kind") == "galera"}
    disks = {r["node"]: next(iter(r["result"].values())).get("backup")
             for r in records(data, "backup_disk")
             if r.get("node") in config["vms"]["nodes"]}
    # a rebuild that got as far as replacing the node's key kept the old one
    keys = [node for node, backup in sorted(disks.items())
            if leapfrog_rebuild.previous_keys(opts, node, backup)]
    # fast_forward: the computes it stopped, and the release each ran before
    computes = {r["node"]: r["result"]["release_before"]
                for r in records(data, "stop_compute") if "release_before" in r["result"]}
    ovsdb = {mid: ret.get("id") for r in records(data, "backup_ovsdb")
             for mid, ret in r["result"].items() if isinstance(ret, dict)}
    out = {"upgrade_run": str(upgrade_run), "db_backups": db_ids, "ovsdb_backups": ovsdb,
           "disks": disks, "keys": keys, "computes": computes, "later_runs": later}
    if galera:  # a physical backup: the whole cluster is restored, every node of it
        out.update(galera_backups=galera, galera_nodes=_galera_nodes(opts, config))
    return out


def _galera_nodes(opts, config):
    """The minions of ``roles:galera`` (every one is stopped, and all but the backup's
    node rejoin, in a whole-cluster restore)."""
    target = config["roles"].get("galera")
    nodes = sorted(leapfrog_minions.expected(opts, target)) if target else []
    if not nodes:
        raise leapfrog_errors.LeapfrogError(
            f"the run's DB backup is a Galera cluster's, but roles:galera "
            f"({target or 'unset'}) matches no minion: set it to the cluster's nodes")
    return nodes
