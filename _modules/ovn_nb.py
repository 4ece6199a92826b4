"""
OVN's northbound database for an upgrade: its consistency with neutron, and routers'
gateways moved off a node before it is touched.

``consistency``: every neutron network is in the NB once (a Logical_Switch named
``neutron-<network id>``), every router once (a Logical_Router named
``neutron-<router id>``), none missing, none left over.

``move_gateways``/``restore_gateways``: a router's gateway port is active on the chassis of
its highest Gateway_Chassis priority (neutron's OVN L3 scheduler sets them). Before a
controller or network node is rebuilt, its chassis gets the lowest priority of each such
port (the next one takes over, as neutron's own rescheduling would do); its former priority
is kept in the row (``external_ids:leapfrog-priority``), so ``restore_gateways`` balances
them back once the node serves again and a re-run finds what is left to do.

Why: neutron 2026.1's maintenance task was seen creating a second, empty Logical_Switch for
networks made by older releases (``get_lswitch`` of 28.x no longer maps a bare network id
to its switch; ../shared/FACTS.md). ``ovn-nbctl`` by name then fails with "multiple rows"
and the network's ports may land on either switch. ``consistency`` names each duplicate
and what to do about it.

Configuration: pillar ``leapfrog:ovn:nb_connection`` (``tcp:HOST:PORT``, ``ssl:...`` or
``unix:PATH``; an argument wins); ``ovn-nbctl`` on the minion. Neutron's networks and
routers come from its API with the pillar ``leapfrog:verify`` credentials (as
openstack_verify), unless given.
"""
import json
import logging
import re
import shutil
import subprocess

import leapfrog_errors
import leapfrog_keystone
import leapfrog_ovsdb
import salt.utils.data

log = logging.getLogger(__name__)

__virtualname__ = "ovn_nb"

TABLES = {"networks": "Logical_Switch", "routers": "Logical_Router"}
PREFIX = "neutron-"
TIMEOUT = 30


class OvnNbError(leapfrog_errors.LeapfrogError):
    """The NB could not be read, or neutron could not be asked."""


def __virtual__():
    if not shutil.which("ovn-nbctl"):
        return (False, "ovn_nb needs ovn-nbctl (Debian: ovn-common)")
    return __virtualname__


def _pillar(key, default=None):
    return salt.utils.data.traverse_dict_and_list(__pillar__, key, default)


def _connection(nb_connection):
    return leapfrog_ovsdb.remote(nb_connection or _pillar("leapfrog:ovn:nb_connection"), "nb",
                                 OvnNbError)


def _cell(value):
    """An OVSDB JSON cell: ["uuid", x] -> x; ["set", [...]] -> list; ["map", [[k, v]...]]
    -> dict; a scalar as is."""
    if isinstance(value, list) and len(value) == 2 and value[0] in ("uuid", "named-uuid"):
        return value[1]
    if isinstance(value, list) and len(value) == 2 and value[0] == "set":
        return [_cell(v) for v in value[1]]
    if isinstance(value, list) and len(value) == 2 and value[0] == "map":
        return {_cell(k): _cell(v) for k, v in value[1]}
    return value


def rows(table, nb_connection=None):
    """
    The ``neutron-`` rows of an NB table (Logical_Switch or Logical_Router): a list of
    ``{"uuid", "name", "ports"}`` (``ports``: how many).

    CLI Example:

    .. code-block:: bash

        salt ctl01 ovn_nb.rows Logical_Switch
    """
    if table not in TABLES.values():
        raise OvnNbError(f"table must be one of {', '.join(TABLES.values())}, not {table!r}")
    out = []
    for cells in _list(nb_connection, table, "_uuid,name,ports"):
        ports = cells.get("ports")
        count = len(ports) if isinstance(ports, list) else (1 if ports else 0)
        if str(cells.get("name", "")).startswith(PREFIX):
            out.append({"uuid": cells["_uuid"], "name": cells["name"], "ports": count})
    return out


def _nbctl(nb_connection, *args):
    argv = ["ovn-nbctl", f"--db={_connection(nb_connection)}", *args]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT,
                              check=False)
    except subprocess.TimeoutExpired as exc:
        raise OvnNbError(f"ovn-nbctl {args[-2] if len(args) > 1 else ''} did not answer in "
                         f"{TIMEOUT} s") from exc
    if proc.returncode != 0:
        raise OvnNbError(f"ovn-nbctl failed (exit {proc.returncode}): "
                         f"{proc.stderr.strip()[-300:]}")
    return proc.stdout


def _list(nb_connection, table, columns):
    """``table``'s rows as ``{column: cell}`` (``columns``: comma-separated names)."""
    data = json.loads(_nbctl(nb_connection, "--format=json", f"--columns={columns}", "list",
                             table))
    return [dict(zip(data["headings"], (_cell(c) for c in row)))
            for row in data.get("data", [])]


def _chassis(chassis):
    name = chassis or _pillar("leapfrog:ovn:chassis") or __opts__["id"]
    if not isinstance(name, str) or not name or any(c.isspace() or c in "\"'=,{}[]" for c in name):
        raise OvnNbError(f"chassis {name!r} is not a chassis name: give the node's OVN chassis "
                         "(pillar leapfrog:ovn:chassis, default the minion id)")
    return name


def gateways(nb_connection=None):
    """
    Each router gateway port's chassis by priority: ``{port: [{"chassis", "priority",
    "uuid", "kept"}...]}``, highest first (the first is where it is active; ``kept``: the
    priority ``move_gateways`` saved, else None).

    CLI Example:

    .. code-block:: bash

        salt ctl01 ovn_nb.gateways
    """
    out = {}
    for cells in _list(nb_connection, "Gateway_Chassis",
                       "_uuid,name,chassis_name,priority,external_ids"):
        ids = cells.get("external_ids") or {}
        # neutron names a row <port name>_<chassis name>
        port = str(cells["name"])[:-len(cells["chassis_name"]) - 1]
        kept = ids.get("leapfrog-priority")
        out.setdefault(port, []).append({
            "chassis": cells["chassis_name"], "priority": int(cells["priority"]),
            "uuid": cells["_uuid"], "kept": int(kept) if str(kept).isdigit() else None})
    return {port: sorted(rows_, key=lambda r: -r["priority"]) for port, rows_ in
            sorted(out.items())}


def move_gateways(chassis=None, nb_connection=None, test=False):
    """
    Move every router gateway active on ``chassis`` (default pillar
    ``leapfrog:ovn:chassis``, else the minion id) to the chassis next in priority: its
    priority becomes the port's lowest minus one, the former one is kept in the row. Ports
    with no other chassis stay (named in ``stuck``). Returns ``{"chassis", "moved":
    [{"port", "from", "to"}], "stuck": [...]}``; ``test``: what would move.

    CLI Example:

    .. code-block:: bash

        salt ctl01 ovn_nb.move_gateways
    """
    chassis = _chassis(chassis)
    moved, stuck = [], []
    for port, rows_ in gateways(nb_connection).items():
        if rows_[0]["chassis"] != chassis:
            continue
        if len(rows_) == 1:
            stuck.append(port)
            continue
        lowest = min(r["priority"] for r in rows_)
        moved.append({"port": port, "from": chassis, "to": rows_[1]["chassis"]})
        if not test:
            row = rows_[0]
            _nbctl(nb_connection, "set", "Gateway_Chassis", row["uuid"],
                   f"priority={max(lowest - 1, 0)}",
                   f"external_ids:leapfrog-priority={row['kept'] or row['priority']}")
            if lowest == 0:  # no room below: lift the others by one
                for other in rows_[1:]:
                    _nbctl(nb_connection, "set", "Gateway_Chassis", other["uuid"],
                           f"priority={other['priority'] + 1}")
    return {"chassis": chassis, "moved": moved, "stuck": stuck}


def restore_gateways(chassis=None, nb_connection=None, test=False):
    """
    Give ``chassis`` back the gateway priorities ``move_gateways`` kept (its routers'
    gateways return to it where it had the highest). Returns ``{"chassis", "restored":
    [{"port", "to", "priority"}]}``; nothing kept: nothing changes.

    CLI Example:

    .. code-block:: bash

        salt ctl01 ovn_nb.restore_gateways
    """
    chassis = _chassis(chassis)
    restored = []
    for port, rows_ in gateways(nb_connection).items():
        for row in rows_:
            if row["chassis"] == chassis and row["kept"] is not None:
                restored.append({"port": port, "to": chassis, "priority": row["kept"]})
                if not test:
                    _nbctl(nb_connection, "set", "Gateway_Chassis", row["uuid"],
                           f"priority={row['kept']}", "--", "remove", "Gateway_Chassis",
                           row["uuid"], "external_ids", "leapfrog-priority")
    return {"chassis": chassis, "restored": restored}


NETTYPE = "neutron:provnet-network-type"


def set_network_types(nb_connection=None, test=False):
    """
    Give every network's Logical_Switch the ``neutron:provnet-network-type`` it lacks (from
    neutron's ``provider:network_type``), as neutron's one-run maintenance task
    ``set_network_type`` (2025.1 on) does at its start. Why: a 2024.1 server does not write
    it, a 2025.1+ server reads it when it creates a port (``KeyError`` -> HTTP 500), and
    networks an old server makes during a rolling window come after that task ran. Returns
    ``{"set": [{"network", "type"}], "unknown": [...]}`` (``unknown``: a switch neutron
    does not list); ``test``: what would be set.

    CLI Example:

    .. code-block:: bash

        salt ctl01 ovn_nb.set_network_types
    """
    types = _neutron_network_types()
    done, unknown = [], []
    for cells in _list(nb_connection, "Logical_Switch", "_uuid,name,external_ids"):
        name = str(cells.get("name", ""))
        if not name.startswith(PREFIX) or NETTYPE in (cells.get("external_ids") or {}):
            continue
        network = name[len(PREFIX):]
        if not re.match(r"^[a-z0-9_-]{1,32}$", str(types.get(network) or "")):
            unknown.append(network)
            continue
        done.append({"network": network, "type": types[network]})
        if not test:
            _nbctl(nb_connection, "set", "Logical_Switch", cells["_uuid"],
                   f'external_ids:"{NETTYPE}"="{types[network]}"')
    return {"set": done, "unknown": sorted(unknown)}


def _network_base(session):
    found = session.endpoint(("network",))
    if found is None:
        raise OvnNbError("no network service in the catalog: is neutron deployed?")
    base = found[1].rstrip("/")
    return base if base.endswith("/v2.0") else base + "/v2.0"


def _neutron(query):
    """``query(session, base)`` against neutron's API with pillar ``leapfrog:verify``."""
    conf = leapfrog_keystone.settings(__pillar__, {}, OvnNbError, __virtualname__)
    with leapfrog_keystone.Session(conf, agent="leapfrog-ovn-nb") as session:
        try:
            session.authenticate()
            return query(session, _network_base(session))
        except leapfrog_keystone.RequestFailed as exc:
            raise OvnNbError(f"asking neutron failed: {exc.args[0]}") from exc


def _neutron_network_types():
    """``{network id: provider:network_type}`` (admin sees the provider attributes)."""
    return _neutron(lambda session, base: {
        n["id"]: n.get("provider:network_type")
        for n in session.get(f"{base}/networks").get("networks", [])})


def _neutron_ids():
    """``{"networks": [...], "routers": [...]}`` ids from neutron's API."""
    return _neutron(lambda session, base: {
        kind: [item["id"] for item in session.get(f"{base}/{kind}").get(kind, [])]
        for kind in TABLES})


def _compare(kind, ids, found):
    by_name = {}
    for row in found:
        by_name.setdefault(row["name"][len(PREFIX):], []).append(row)
    wanted = set(ids)
    return {
        "duplicates": {i: rs for i, rs in sorted(by_name.items()) if i in wanted and len(rs) > 1},
        "missing": sorted(wanted - set(by_name)),
        "stale": sorted(set(by_name) - wanted),
        "count": len(wanted),
    }


def _advice(result):
    lines = []
    for kind, table in TABLES.items():
        part = result[kind]
        for item, found in part["duplicates"].items():
            empty = [r["uuid"] for r in found if not r["ports"]]
            lines.append(
                f"{kind[:-1]} {item} has {len(found)} {table} rows: neutron 2026.1's "
                f"maintenance task made the extra one (a known neutron 28.x bug with "
                f"{kind} made by older releases); delete the empty one(s) with "
                f"'ovn-nbctl destroy {table} {' '.join(empty) or '<uuid>'}' and re-check"
                if empty else
                f"{kind[:-1]} {item} has {len(found)} {table} rows, each with ports: "
                f"compare them and run neutron-ovn-db-sync-util in log mode before fixing")
        if part["missing"]:
            lines.append(f"{len(part['missing'])} neutron {kind} not in OVN's NB "
                         f"({', '.join(part['missing'][:5])}): run neutron-ovn-db-sync-util "
                         "--ovn-neutron_sync_mode log, then repair")
        if part["stale"]:
            lines.append(f"{len(part['stale'])} {table} row(s) for {kind} neutron no longer has"
                         f" ({', '.join(part['stale'][:5])}): left over, harmless until reused")
    return lines


def consistency(nb_connection=None, networks=None, routers=None):
    """
    Compare OVN's NB with neutron: ``{"consistent", "networks": {"count", "duplicates",
    "missing", "stale"}, "routers": {...}, "advice": [...]}``. Consistent: no duplicate and
    no missing network or router (stale rows are reported, not failed). ``networks`` and
    ``routers`` (lists of neutron ids) default to what neutron's API lists. An inconsistent
    NB sets the job's retcode to 1.

    CLI Example:

    .. code-block:: bash

        salt ctl01 ovn_nb.consistency
    """
    ids = {"networks": networks, "routers": routers}
    if networks is None or routers is None:
        asked = _neutron_ids()
        ids = {kind: asked[kind] if ids[kind] is None else ids[kind] for kind in TABLES}
    result = {kind: _compare(kind, ids[kind], rows(table, nb_connection))
              for kind, table in TABLES.items()}
    result["consistent"] = not any(result[k]["duplicates"] or result[k]["missing"]
                                   for k in TABLES)
    result["advice"] = _advice(result)
    if not result["consistent"]:
        try:
            __context__["retcode"] = 1
        except NameError:
            pass
    return result
