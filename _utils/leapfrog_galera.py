"""What leapfrog knows about one Galera node on its own minion: its files (read from the
server's option file), its position (grastate.dat, ``--wsrep-recover``), its process (by the
pid file, started detached without systemd), its peers' gcomm ports and its wsrep status in
the few fields an operator reads (size, state, ready, primary, desync, recv queue, seqno)."""
import configparser
import os
import pwd
import re
import shutil
import socket
import subprocess
import time

import salt.utils.data

import leapfrog_errors
import leapfrog_files
import leapfrog_mysql

SERVERS = ("mariadbd", "mysqld")
SBIN = "/usr/sbin:/usr/bin:/sbin:/bin"
_RECOVERED = re.compile(r"WSREP: Recovered position:\s+([0-9a-f-]{36}):(-?\d+)")
_UUID = re.compile(r"\A[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")


class GaleraError(leapfrog_errors.LeapfrogError):
    """A Galera node could not be read, changed, started or stopped (one line, the fix)."""


def server_binary():
    """The path of mariadbd (or mysqld), also where /usr/sbin is not on PATH."""
    for name in SERVERS:
        found = shutil.which(name, path=SBIN + ":" + os.environ.get("PATH", ""))
        if found:
            return found
    raise GaleraError("neither mariadbd nor mysqld is installed: install mariadb-server")


def _option(parser, *names):
    for section in ("mariadbd", "mysqld", "server", "galera"):
        if not parser.has_section(section):
            continue
        for name in names:
            for spelling in (name, name.replace("_", "-")):
                if parser.has_option(section, spelling):
                    return parser.get(section, spelling).strip().strip('"')
    return None


def node_config(defaults_file):
    """The node's files and addresses from its server option file: datadir, socket, pid file,
    error log, node name, its own and its peers' gcomm ``(host, port)``."""
    if not defaults_file or not os.path.isabs(str(defaults_file)):
        raise GaleraError(f"leapfrog:galera:defaults_file must be an absolute path, got "
                          f"{defaults_file!r}: set it to the node's my.cnf")
    if not os.path.isfile(defaults_file):
        raise GaleraError(f"no server option file {defaults_file}: fix "
                          "leapfrog:galera:defaults_file")
    parser = configparser.ConfigParser(allow_no_value=True, strict=False,
                                       inline_comment_prefixes=("#",), interpolation=None)
    try:
        parser.read(defaults_file, encoding="utf-8")
    except configparser.Error as exc:
        raise GaleraError(f"cannot read {defaults_file}: {' '.join(str(exc).split())}") from None
    datadir = _option(parser, "datadir")
    address = _option(parser, "wsrep_cluster_address") or ""
    if not datadir or not address.startswith("gcomm://"):
        raise GaleraError(f"{defaults_file} names no datadir or no gcomm:// "
                          "wsrep_cluster_address: is this a Galera node's option file?")
    peers = []
    for item in address[len("gcomm://"):].split(","):
        host, _, port = item.strip().partition(":")
        if host:
            peers.append((host, int(port) if port.isdigit() else 4567))
    options = _option(parser, "wsrep_provider_options") or ""
    base = re.search(r"(?:^|;)\s*base_port\s*=\s*(\d+)", options)
    own = (_option(parser, "wsrep_node_address") or "127.0.0.1",
           int(base.group(1)) if base else 4567)
    datadir = os.path.abspath(datadir)
    return {
        "defaults_file": defaults_file,
        "datadir": datadir,
        "socket": _option(parser, "socket") or "",
        "pid_file": _option(parser, "pid-file", "pid_file") or os.path.join(
            datadir, socket.gethostname() + ".pid"),
        "log_error": _option(parser, "log-error", "log_error") or "",
        "node_name": _option(parser, "wsrep_node_name") or socket.gethostname(),
        "user": _option(parser, "user") or "mysql",
        "own": own,
        "peers": [peer for peer in peers if peer != own],
    }


def node(pillar, module):
    """``(config, params)`` of the minion's own node: its option file's facts (pillar
    ``leapfrog:galera:defaults_file``) and its SQL connection (``leapfrog:database``, the
    option file's socket when the pillar names none)."""
    config = node_config(salt.utils.data.traverse_dict_and_list(
        pillar or {}, "leapfrog:galera:defaults_file", None))
    params = leapfrog_mysql.connection(
        {}, salt.utils.data.traverse_dict_and_list(pillar or {}, "leapfrog:database", {}),
        module)
    if not params["socket"] and config["socket"]:
        params["socket"] = config["socket"]
    return config, params


def move_aside(datadir, aside):
    """Keep ``datadir`` as ``aside`` and leave an empty datadir of the same owner and mode.
    When ``aside`` exists already (an earlier attempt kept it) the datadir is that attempt's
    leftover and is emptied instead: the kept copy stays the original."""
    if os.path.exists(aside):
        shutil.rmtree(datadir, ignore_errors=True)
    else:
        os.rename(datadir, aside)
    stat = os.stat(aside)
    os.makedirs(datadir, mode=stat.st_mode & 0o7777, exist_ok=True)
    os.chown(datadir, stat.st_uid, stat.st_gid)


def chown_tree(path, user):
    """Give ``path`` and everything under it to ``user`` (the server's own)."""
    entry = pwd.getpwnam(user)
    for base, dirs, files in os.walk(path):
        for name in [base, *(os.path.join(base, n) for n in dirs + files)]:
            os.chown(name, entry.pw_uid, entry.pw_gid)


def backup_bytes(datadir):
    """Bytes a physical backup of the node whose datadir is ``datadir`` needs: its files
    and 10 % (what ``galera_backup.backup`` requires free and the precheck asks for)."""
    return int(leapfrog_files.tree_size(datadir) * 1.1)


def read_grastate(datadir):
    """``{uuid, seqno, safe_to_bootstrap}`` from ``datadir/grastate.dat`` ({} when missing)."""
    found = {}
    try:
        with open(os.path.join(datadir, "grastate.dat"), encoding="utf-8") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() in ("uuid", "seqno", "safe_to_bootstrap"):
                    found[key.strip()] = value.strip()
    except OSError:
        return {}
    for key in ("seqno", "safe_to_bootstrap"):
        try:
            found[key] = int(found[key])
        except (KeyError, ValueError):
            found[key] = -1 if key == "seqno" else 0
    return found


def write_grastate(datadir, uuid, seqno, safe_to_bootstrap):
    """Write ``datadir/grastate.dat`` (version 2.1) for a bootstrap from this node."""
    if not _UUID.match(str(uuid)):
        raise GaleraError(f"cannot write grastate.dat: {uuid!r} is not a cluster uuid")
    path = os.path.join(datadir, "grastate.dat")
    with open(path + ".tmp", "w", encoding="utf-8") as handle:
        handle.write("# GALERA saved state\nversion: 2.1\n"
                     f"uuid:    {uuid}\nseqno:   {int(seqno)}\n"
                     f"safe_to_bootstrap: {1 if safe_to_bootstrap else 0}\n")
    os.replace(path + ".tmp", path)


def parse_recovered(text):
    """``(uuid, seqno)`` from a ``--wsrep-recover`` log, or None."""
    found = _RECOVERED.findall(text or "")
    return (found[-1][0], int(found[-1][1])) if found else None


def server_pid(config):
    """The PID of the node's running server (from its pid file), or None."""
    try:
        with open(config["pid_file"], encoding="utf-8") as handle:
            pid = int(handle.read().strip() or 0)
    except (OSError, ValueError):
        return None
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            argv = handle.read().split(b"\0")
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            zombie = handle.read().split(")")[-1].split()[0] == "Z"
    except OSError:
        return None
    name = os.path.basename(argv[0].decode(errors="replace")) if argv else ""
    return pid if name in SERVERS and not zombie else None


def listening(address, timeout=1.0):
    """True when something accepts TCP connections on ``(host, port)``."""
    try:
        with socket.create_connection(address, timeout=timeout):
            return True
    except OSError:
        return False


def live_peers(config):
    """The peers whose gcomm port answers (a Galera node runs there)."""
    return [f"{host}:{port}" for host, port in config["peers"] if listening((host, port))]


def start_server(config, extra=()):
    """Start the node's server detached (its own session, no terminal); return the Popen."""
    argv = [server_binary(), f"--defaults-file={config['defaults_file']}", *extra]
    with open(os.devnull, "rb") as devnull:
        return subprocess.Popen(  # pylint: disable=consider-using-with
            argv, stdin=devnull, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, close_fds=True)


def log_tail(config, chars=1500):
    """The end of the node's error log, one line (for errors)."""
    try:
        with open(config["log_error"], encoding="utf-8", errors="replace") as handle:
            handle.seek(max(0, os.path.getsize(config["log_error"]) - chars))
            return " | ".join(line.strip() for line in handle.read().splitlines()[-6:])
    except (OSError, TypeError):
        return "(no error log)"


def wsrep_status(conn):
    """The node's status in an operator's words, read over ``conn`` (a PyMySQL connection)."""
    with conn.cursor() as cur:
        cur.execute("SHOW GLOBAL STATUS LIKE 'wsrep%'")
        raw = {name[len("wsrep_"):]: value for name, value in cur.fetchall()}
        cur.execute("SELECT @@global.wsrep_desync")
        desync = bool(int(cur.fetchone()[0]))
    return {
        "size": int(raw.get("cluster_size") or 0),
        "state": raw.get("local_state_comment", ""),
        "ready": raw.get("ready") == "ON",
        "primary": raw.get("cluster_status") == "Primary",
        "desync": desync or int(raw.get("desync_count") or 0) > 0,
        "recv_queue": int(raw.get("local_recv_queue") or 0),
        "seqno": int(raw.get("last_committed") or -1),
        "uuid": raw.get("cluster_state_uuid", ""),
    }


def wait(check, timeout, what, interval=0.3):
    """Poll ``check()`` (a value, or None to go on) until it answers; GaleraError after
    ``timeout`` seconds naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise GaleraError(f"{what} after {timeout:g} s")
        time.sleep(interval)


def wait_synced(config, params, timeout, action):
    """The node's status once it runs Synced and ready with an empty receive queue and no
    desync; GaleraError naming ``action`` and the end of its log after ``timeout`` s."""
    def synced():
        if server_pid(config) is None:
            return None
        try:
            with leapfrog_mysql.connect(params) as conn:
                live = wsrep_status(conn)
        except leapfrog_mysql.DatabaseUnreachable:
            return None
        if live["state"] == "Synced" and live["ready"] and live["recv_queue"] == 0 \
                and not live["desync"]:
            return live
        return None
    try:
        return wait(synced, timeout, f"{config['node_name']} not Synced")
    except GaleraError as exc:
        raise GaleraError(f"{action}: {exc}; its log: {log_tail(config)}") from None
