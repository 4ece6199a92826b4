"""
One Galera (MariaDB wsrep) node, run from its own minion: its state in the cluster, desync
and resync, a stop that keeps quorum, the position a stopped node holds, a bootstrap of a
stopped cluster and a join.

Each function works on the minion's own node, described by pillar ``leapfrog:galera``:
``defaults_file`` (the server's my.cnf: datadir, socket, pid file, gcomm peers are read from
it) and ``size`` (the cluster's configured size, default 3); the SQL connection is
``leapfrog:database`` (socket, user, password), as for ``mysql_backup``. The node's server is
started without systemd (``mariadbd --defaults-file=...`` in its own session) and stopped by
the PID in its pid file.

Refusals keep the cluster safe: ``stop`` refuses to take a Primary cluster below a majority
of its configured size; ``bootstrap`` refuses while a peer runs (join it instead) and, unless
``force``, on a node a clean stop did not mark ``safe_to_bootstrap`` (compare
``galera.recover`` on every node first: bootstrap the highest seqno); ``join`` refuses when
no peer runs; ``desync`` refuses unless the node is Synced in a Primary cluster of 2 or more.
"""
import logging
import os
import shutil
import tempfile
import time

import salt.utils.data

import leapfrog_files
import leapfrog_galera
import leapfrog_mysql
import leapfrog_parse
from leapfrog_galera import GaleraError

log = logging.getLogger(__name__)

__virtualname__ = "galera"

DEFAULT_SIZE = 3
START_TIMEOUT = 600
STOP_TIMEOUT = 120


def __virtual__():
    if leapfrog_mysql.pymysql is None:
        return (False, "galera: PyMySQL is not installed (pip install PyMySQL)")
    return __virtualname__


def _pillar(key, default=None):
    value = salt.utils.data.traverse_dict_and_list(__pillar__ or {}, key, None)
    return default if value is None else value


def _config():
    """The node's facts, with its SQL connection under ``params`` (never returned)."""
    config, params = leapfrog_galera.node(__pillar__, "galera")
    return {**config, "params": params}


def _size():
    return leapfrog_parse.number(_pillar("leapfrog:galera:size", DEFAULT_SIZE),
                                 "leapfrog:galera:size", minimum=1, maximum=15, integer=True,
                                 error=GaleraError)


def _live(config):
    """The running node's status, or None when its server is down."""
    if leapfrog_galera.server_pid(config) is None:
        return None
    params = config["params"]
    with leapfrog_mysql.connect(params) as conn:
        return leapfrog_galera.wsrep_status(conn)


def _execute(config, statement):
    with leapfrog_mysql.connect(config["params"]) as conn, conn.cursor() as cur:
        cur.execute(statement)


def status():
    """The node's state: when running its cluster ``size`` (against the configured
    ``expected_size``), ``state`` (Synced, Donor/Desynced, Joining ...), ``ready``,
    ``primary``, ``desync``, ``recv_queue``, ``seqno`` (last committed) and the cluster
    ``uuid``; when stopped the position in its grastate.dat.

    CLI Example:

    .. code-block:: bash

        salt -C 'I@leapfrog:galera' galera.status
    """
    config = _config()
    out = {"node": config["node_name"], "expected_size": _size()}
    live = _live(config)
    if live is None:
        state = leapfrog_galera.read_grastate(config["datadir"])
        return {**out, "running": False, "seqno": state.get("seqno", -1),
                "uuid": state.get("uuid", ""),
                "safe_to_bootstrap": state.get("safe_to_bootstrap", 0) == 1}
    return {**out, "running": True, **live}


def _state_problems(name, live, size):
    """What keeps a running node from taking part in an upgrade, one line each with the fix."""
    problems = []
    if not live["primary"]:
        problems.append(
            f"{name} is in a non-Primary component (the cluster lost quorum): run "
            "galera.recover on every node and galera.bootstrap on the one with the highest "
            "seqno, then galera.join on the others")
    elif live["size"] != size:
        problems.append(
            f"{name} sees a cluster of {live['size']} nodes, leapfrog:galera:size says "
            f"{size}: bring the missing node(s) back (galera.join on each) or correct the "
            "pillar")
    if live["desync"]:
        problems.append(
            f"{name} was left desynced (wsrep_desync=ON, e.g. by a backup that did not "
            f"finish): run galera.resync on {name}")
    elif live["state"] != "Synced" or not live["ready"]:
        problems.append(
            f"{name} is {live['state']} (ready: {live['ready']}), not Synced: wait until "
            "galera.status says Synced (a joiner finishing its transfer) before the upgrade")
    return problems


def precheck():
    """What the upgrade's precheck asks of this node, without changing anything: its
    server runs, in a Primary cluster of the configured size, Synced and ready, not left
    desynced by an earlier run, and ``leapfrog:backups:dir`` has room for a physical
    backup of it (its datadir and 10 %). Returns ``{"ok", "node", "problems": [one line
    each, with the fix], "status"}``; every problem is collected.

    CLI Example:

    .. code-block:: bash

        salt -C 'I@leapfrog:galera' galera.precheck
    """
    config = _config()
    name, size = config["node_name"], _size()
    live = _live(config)
    if live is None:
        problems = [f"{name}: its server is not running: start it (galera.join; "
                    "galera.recover first after a crash) before the upgrade"]
    else:
        problems = _state_problems(name, live, size)
    backups = leapfrog_files.backup_root(_pillar("leapfrog:backups:dir", ""), "galera")
    space = leapfrog_files.space_problem(
        backups, leapfrog_galera.backup_bytes(config["datadir"]),
        f"a physical backup of {name}", "free space there or set leapfrog:backups:dir")
    if space:
        problems.append(space)
    return {"ok": not problems, "node": name, "problems": problems,
            "status": {"running": live is not None, **(live or {})}}


def _require_running(config, action):
    live = _live(config)
    if live is None:
        raise GaleraError(f"cannot {action} {config['node_name']}: its server is not running "
                          "(galera.join starts it)")
    return live


def desync():
    """Take the node out of flow control (``wsrep_desync=ON``): it may lag (a backup, a
    long read) without slowing the cluster's writes. Refused unless the node is Synced in a
    Primary cluster of 2 or more.

    CLI Example:

    .. code-block:: bash

        salt dbs03 galera.desync
    """
    config = _config()
    live = _require_running(config, "desync")
    if live["desync"]:
        return {"node": config["node_name"], "changed": False, **live}
    if not (live["primary"] and live["state"] == "Synced" and live["size"] >= 2):
        raise GaleraError(
            f"refusing to desync {config['node_name']}: it is {live['state']} in a "
            f"{'Primary' if live['primary'] else 'non-Primary'} cluster of {live['size']}; "
            "desync only a Synced node of a Primary cluster with another node to take writes")
    _execute(config, "SET GLOBAL wsrep_desync = ON")
    return {"node": config["node_name"], "changed": True, **_live(config)}


def resync(timeout=STOP_TIMEOUT):
    """Put the node back under flow control (``wsrep_desync=OFF``) and wait until it is
    Synced with an empty receive queue.

    CLI Example:

    .. code-block:: bash

        salt dbs03 galera.resync timeout=120
    """
    timeout = leapfrog_parse.seconds(timeout, "timeout", error=GaleraError)
    config = _config()
    _require_running(config, "resync")
    started = time.monotonic()
    _execute(config, "SET GLOBAL wsrep_desync = OFF")
    live = leapfrog_galera.wait_synced(config, config["params"], timeout, "resync")
    return {"node": config["node_name"], "seconds": round(time.monotonic() - started, 2),
            **live}


def stop(timeout=STOP_TIMEOUT, force=False):
    """Stop the node's server (TERM by the PID in its pid file; a clean stop records its
    seqno). Refused when it would leave a Primary cluster with fewer than a majority of its
    configured size, unless ``force`` (a whole-cluster restore stops every node).

    CLI Example:

    .. code-block:: bash

        salt dbs02 galera.stop
    """
    timeout = leapfrog_parse.seconds(timeout, "timeout", minimum=1, error=GaleraError)
    force = leapfrog_parse.boolean(force, "force", error=GaleraError)
    config = _config()
    pid = leapfrog_galera.server_pid(config)
    if pid is None:
        return {"node": config["node_name"], "changed": False, "running": False}
    size = _size()
    live = _live(config)
    if live["primary"] and (live["size"] - 1) * 2 <= size and not force:
        raise GaleraError(
            f"refusing to stop {config['node_name']}: the cluster would keep "
            f"{live['size'] - 1} of its {size} nodes, no majority (the cloud's writes would "
            "stop); start the missing nodes first (galera.join), or force=True when the "
            "whole cluster is meant to stop")
    started = time.monotonic()
    os.kill(pid, 15)
    try:
        leapfrog_galera.wait(lambda: True if leapfrog_galera.server_pid(config) is None
                             else None, timeout, f"{config['node_name']} still running")
    except GaleraError as exc:
        raise GaleraError(f"{exc} (PID {pid}); it was sent TERM: look at its log "
                          f"({leapfrog_galera.log_tail(config)})") from None
    state = leapfrog_galera.read_grastate(config["datadir"])
    return {"node": config["node_name"], "changed": True, "running": False,
            "seconds": round(time.monotonic() - started, 2), "seqno": state.get("seqno", -1),
            "safe_to_bootstrap": state.get("safe_to_bootstrap", 0) == 1}


def _recover(config):
    state = leapfrog_galera.read_grastate(config["datadir"])
    if state.get("uuid") and state.get("seqno", -1) >= 0:
        return {"uuid": state["uuid"], "seqno": state["seqno"], "source": "grastate.dat",
                "safe_to_bootstrap": state.get("safe_to_bootstrap", 0) == 1}
    if not os.path.isdir(os.path.join(config["datadir"], "mysql")):
        return {"uuid": "", "seqno": -1, "source": "empty datadir", "safe_to_bootstrap": False}
    with tempfile.TemporaryDirectory(prefix="leapfrog-recover-") as folder:
        log_file = os.path.join(folder, "recover.log")
        proc = leapfrog_galera.start_server(config, ["--wsrep-recover",
                                                     f"--log-error={log_file}"])
        try:
            proc.wait(STOP_TIMEOUT)
        except Exception:  # pylint: disable=broad-except
            proc.kill()
            raise GaleraError(f"--wsrep-recover on {config['node_name']} did not end in "
                              f"{STOP_TIMEOUT} s") from None
        with open(log_file, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    found = leapfrog_galera.parse_recovered(text)
    if not found:
        raise GaleraError(f"--wsrep-recover on {config['node_name']} found no position: "
                          f"{' | '.join(text.strip().splitlines()[-4:])}")
    return {"uuid": found[0], "seqno": found[1], "source": "--wsrep-recover",
            "safe_to_bootstrap": state.get("safe_to_bootstrap", 0) == 1}


def recover():
    """The position (cluster uuid and seqno) a stopped node holds: from grastate.dat after a
    clean stop, else by ``mariadbd --wsrep-recover`` (after a crash). Compare it on every
    node: bootstrap the one with the highest seqno.

    CLI Example:

    .. code-block:: bash

        salt -C 'I@leapfrog:galera' galera.recover
    """
    config = _config()
    if leapfrog_galera.server_pid(config) is not None:
        raise GaleraError(f"{config['node_name']} is running: recover reads a stopped node "
                          "(galera.status shows a running node's seqno)")
    return {"node": config["node_name"], **_recover(config)}


def _start(config, extra, timeout, action):
    started = time.monotonic()
    proc = leapfrog_galera.start_server(config, extra)

    def up_or_dead():
        if proc.poll() is not None:
            raise GaleraError(f"{action}: the server of {config['node_name']} exited "
                              f"{proc.returncode}: {leapfrog_galera.log_tail(config)}")
        return True if leapfrog_galera.server_pid(config) == proc.pid else None
    leapfrog_galera.wait(up_or_dead, 60, f"{action}: no pid file from {config['node_name']}")
    live = leapfrog_galera.wait_synced(config, config["params"], timeout, action)
    return {"node": config["node_name"], "changed": True,
            "seconds": round(time.monotonic() - started, 2), **live}


def bootstrap(force=False, timeout=START_TIMEOUT):
    """Start a stopped cluster from this node (``--wsrep-new-cluster``). Refused while a
    peer runs (join it instead) and, unless ``force``, when this node is not marked
    ``safe_to_bootstrap``: after a crash compare ``galera.recover`` on every node and
    bootstrap the highest seqno with ``force=True`` (it marks the node itself).

    CLI Example:

    .. code-block:: bash

        salt dbs01 galera.bootstrap
    """
    force = leapfrog_parse.boolean(force, "force", error=GaleraError)
    timeout = leapfrog_parse.seconds(timeout, "timeout", minimum=1, error=GaleraError)
    config = _config()
    if leapfrog_galera.server_pid(config) is not None:
        return {"node": config["node_name"], "changed": False, **_live(config)}
    peers = leapfrog_galera.live_peers(config)
    if peers:
        raise GaleraError(f"refusing to bootstrap {config['node_name']}: a node of its "
                          f"cluster runs at {', '.join(peers)}; join it instead (galera.join)")
    position = _recover(config)
    if position["seqno"] < 0 and not position["uuid"]:
        raise GaleraError(f"refusing to bootstrap {config['node_name']}: its datadir holds "
                          "no cluster position (empty or never joined); bootstrap the node "
                          "with the data")
    if not position["safe_to_bootstrap"]:
        if not force:
            raise GaleraError(
                f"refusing to bootstrap {config['node_name']}: it is not marked "
                f"safe_to_bootstrap (seqno {position['seqno']}), another node may hold newer "
                "data; run galera.recover on every node and bootstrap the highest seqno with "
                "force=True")
        leapfrog_galera.write_grastate(config["datadir"], position["uuid"], position["seqno"],
                                       True)
    out = _start(config, ["--wsrep-new-cluster"], timeout, "bootstrap")
    return {**out, "bootstrapped_seqno": position["seqno"]}


def _finish_fresh_join(config, aside, timeout):
    """A fresh join that outlived its caller (a timeout, a killed run) left its node running
    on the SST'd data and the old copy aside: wait until it is Synced, then drop the copy."""
    live = leapfrog_galera.wait_synced(config, config["params"], timeout, "join")
    shutil.rmtree(aside, ignore_errors=True)
    return {"node": config["node_name"], "changed": False, "fresh": True,
            "comment": "an earlier fresh join had started this node: finished it", **live}


def join(timeout=START_TIMEOUT, fresh=False):
    """Start this stopped node into its running cluster: IST from its recovered position
    when it has one (after a crash too), SST into an empty datadir. ``fresh``: the node's
    data must not come back (after a whole-cluster restore): its datadir is moved aside,
    the node takes a full SST, and the old copy is removed once it is Synced; a re-run
    while that node still comes up (a timeout, a killed run: its old copy still aside)
    waits for it instead. Refused when no peer runs (bootstrap first).

    CLI Example:

    .. code-block:: bash

        salt dbs02 galera.join
        salt dbs02 galera.join fresh=True
    """
    timeout = leapfrog_parse.seconds(timeout, "timeout", minimum=1, error=GaleraError)
    fresh = leapfrog_parse.boolean(fresh, "fresh", error=GaleraError)
    config = _config()
    aside = config["datadir"].rstrip("/") + ".before-sst"
    if leapfrog_galera.server_pid(config) is not None:
        if fresh and os.path.isdir(aside):
            return _finish_fresh_join(config, aside, timeout)
        if fresh:
            raise GaleraError(f"{config['node_name']} is running: a fresh join replaces its "
                              "data; stop it first (galera.stop)")
        return {"node": config["node_name"], "changed": False, **_live(config)}
    if not leapfrog_galera.live_peers(config):
        raise GaleraError(
            f"refusing to join {config['node_name']}: no node of its cluster runs "
            f"({', '.join(f'{h}:{p}' for h, p in config['peers']) or 'no peers configured'}); "
            "bootstrap the node with the highest seqno first (galera.recover on each, then "
            "galera.bootstrap)")
    extra = []
    if fresh:
        leapfrog_galera.move_aside(config["datadir"], aside)
        position = {"seqno": -1}
    else:
        position = _recover(config)
        if position["uuid"] and position["seqno"] >= 0 \
                and position["source"] != "grastate.dat":
            extra.append(f"--wsrep-start-position={position['uuid']}:{position['seqno']}")
    out = _start(config, extra, timeout, "join")
    if fresh:
        shutil.rmtree(aside, ignore_errors=True)
    return {**out, "from_seqno": position["seqno"], "fresh": fresh}
