"""A private MariaDB server for the lab and the tests (Debian's mariadb-server, no systemd).

Everything lives under ``run_dir``: the datadir, the unix socket, the pid file, the error log,
the server config, the generated root password (0600) and a client defaults file (0600) that
``mariadb --defaults-file=RUN_DIR/client.cnf`` can use. The TCP port is chosen free at start
and the server listens on ``address`` only (loopback by default).

    db = MariaDB("/tmp/lf-db")
    db.start()                     # install the datadir on first use, start, wait until ready
    with db.connect("nova") as conn: ...
    db.stop()                      # TERM by its own PID, wait, KILL

From a shell: ``python -m lab.mariadb up RUN_DIR`` / ``python -m lab.mariadb down RUN_DIR``
(``status RUN_DIR`` prints the same JSON as ``up``). A second ``up`` on a running directory
returns the running server; ``up`` on a stopped directory keeps its data and password.
"""
import json
import os
import secrets
import shutil
import subprocess
import sys
import time

import pymysql

from lab import procs
from lab.procs import free_port, pid_alive as _pid_alive

SERVER = shutil.which("mariadbd", path="/usr/sbin:/usr/bin:" + os.environ.get("PATH", "")) or "/usr/sbin/mariadbd"
INSTALL_DB = shutil.which("mariadb-install-db") or "/usr/bin/mariadb-install-db"
UNIX_PATH_MAX = 107


class MariaDBError(RuntimeError):
    """The lab MariaDB could not be installed, started or stopped."""


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _write_private(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(path, 0o600)


class MariaDB:
    """One private mariadbd: ``start()``, ``stop()``, ``connect()``.

    Attributes: ``run_dir``, ``address``, ``port`` (chosen at start unless given),
    ``socket`` (unix socket path), ``root_password`` (generated once, kept in
    ``RUN_DIR/root_password``), ``pid``, ``datadir``, ``client_cnf``.
    """

    def __init__(self, run_dir, address="127.0.0.1", port=None):
        self.run_dir = os.path.abspath(run_dir)
        self.address = address
        self.port = port
        self._fixed_port = port is not None
        self.datadir = os.path.join(self.run_dir, "data")
        self.socket = os.path.join(self.run_dir, "mysqld.sock")
        self.pid_file = os.path.join(self.run_dir, "mysqld.pid")
        self.log_file = os.path.join(self.run_dir, "mysqld.err")
        self.config = os.path.join(self.run_dir, "my.cnf")
        self.client_cnf = os.path.join(self.run_dir, "client.cnf")
        self.state_file = os.path.join(self.run_dir, "state.json")
        self._password_file = os.path.join(self.run_dir, "root_password")
        self.pid = None
        self._proc = None
        if len(self.socket) > UNIX_PATH_MAX:
            raise MariaDBError(
                f"socket path {self.socket!r} is longer than {UNIX_PATH_MAX} bytes: "
                "use a shorter run_dir"
            )
        self._load_state()

    # -- state kept on disk so `down` in another process finds the server -------------------
    def _load_state(self):
        if os.path.exists(self._password_file):
            with open(self._password_file, encoding="utf-8") as handle:
                self.root_password = handle.read().strip()
        else:
            self.root_password = None
        if os.path.exists(self.state_file):
            with open(self.state_file, encoding="utf-8") as handle:
                state = json.load(handle)
            pid = state.get("pid")
            if pid and self._is_ours(pid):
                self.pid = pid
                self.port = state.get("port", self.port)
                self.address = state.get("address", self.address)

    def _save_state(self):
        with open(self.state_file, "w", encoding="utf-8") as handle:
            json.dump(self.info(), handle, indent=1)

    def _is_ours(self, pid):
        return _pid_alive(pid) and self.config in _cmdline(pid)

    def info(self):
        """Connection facts (never the password itself: ``password_file`` names where it is)."""
        return {
            "pid": self.pid,
            "address": self.address,
            "port": self.port,
            "socket": self.socket,
            "user": "root",
            "password_file": self._password_file,
            "client_cnf": self.client_cnf,
            "run_dir": self.run_dir,
        }

    def running(self):
        """True when this directory's mariadbd process is alive."""
        return bool(self.pid) and self._is_ours(self.pid)

    # -- start / stop --------------------------------------------------------------------------
    def _write_config(self):
        user_line = "user = root\n" if os.geteuid() == 0 else ""
        _write_private(
            self.config,
            "[mariadbd]\n"
            f"{user_line}"
            f"datadir = {self.datadir}\n"
            f"socket = {self.socket}\n"
            f"pid-file = {self.pid_file}\n"
            f"log-error = {self.log_file}\n"
            f"bind-address = {self.address}\n"
            f"port = {self.port}\n"
            "skip-name-resolve\n"
            "skip-log-bin\n"
            "character-set-server = utf8mb4\n"
            "collation-server = utf8mb4_general_ci\n"
            "performance_schema = OFF\n"
            "innodb_buffer_pool_size = 64M\n"
            "innodb_log_file_size = 16M\n"
            "max_connections = 200\n"
            "[client]\n"
            f"socket = {self.socket}\n",
        )

    def _write_client_cnf(self):
        _write_private(
            self.client_cnf,
            "[client]\n"
            "user = root\n"
            f"password = {self.root_password}\n"
            f"socket = {self.socket}\n",
        )

    def _install(self):
        os.makedirs(self.datadir, exist_ok=True)
        argv = [
            INSTALL_DB,
            f"--defaults-file={self.config}",
            f"--datadir={self.datadir}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
        ]
        if os.geteuid() == 0:
            argv.append("--user=root")
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise MariaDBError(
                f"mariadb-install-db failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}"
            )

    def start(self, timeout=60):
        """Install the datadir on first use, start mariadbd, set the root password, wait.

        Returns ``self``. A running server in this ``run_dir`` is reused as it is.
        """
        if self.running():
            return self
        os.makedirs(self.run_dir, exist_ok=True)
        os.chmod(self.run_dir, 0o700)
        first = not os.path.isdir(os.path.join(self.datadir, "mysql"))
        attempts = 1 if self._fixed_port else 3
        last_error = None
        for _ in range(attempts):
            if not self._fixed_port:
                self.port = free_port(self.address)
            self._write_config()
            if first:
                if os.path.isdir(self.datadir):
                    shutil.rmtree(self.datadir)
                self._install()
            try:
                self._launch(timeout)
            except MariaDBError as exc:
                last_error = exc
                self._kill()
                if "already in use" not in self._log_tail() or self._fixed_port:
                    raise
                continue
            if first or self.root_password is None:
                self._set_root_password()
            self._write_client_cnf()
            self._save_state()
            return self
        raise last_error

    def _log_tail(self, chars=2000):
        try:
            with open(self.log_file, encoding="utf-8", errors="replace") as handle:
                return handle.read()[-chars:]
        except OSError:
            return ""

    def _launch(self, timeout, extra=()):
        for stale in (self.socket, self.pid_file):
            if os.path.exists(stale):
                os.unlink(stale)
        with open(os.devnull, "rb") as devnull, open(self.log_file, "ab") as log:
            self._proc = subprocess.Popen(  # pylint: disable=consider-using-with
                [SERVER, f"--defaults-file={self.config}", *extra],
                stdin=devnull,
                stdout=log,
                stderr=log,
                start_new_session=True,
                close_fds=True,
            )
        self.pid = self._proc.pid
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise MariaDBError(
                    f"mariadbd exited {self._proc.returncode} at start: {self._log_tail()}"
                )
            if os.path.exists(self.socket) and self._answers():
                return
            time.sleep(0.1)
        raise MariaDBError(f"mariadbd did not answer within {timeout}s: {self._log_tail()}")

    def _answers(self):
        for password in (self.root_password, ""):
            if password is None:
                continue
            try:
                conn = pymysql.connect(unix_socket=self.socket, user="root", password=password,
                                       connect_timeout=2)
            except pymysql.err.OperationalError as exc:
                if exc.args and exc.args[0] == 1045:  # access denied: the server answers
                    return True
                continue
            conn.close()
            return True
        return False

    def _set_root_password(self):
        password = secrets.token_urlsafe(18)
        try:
            conn = pymysql.connect(unix_socket=self.socket, user="root", password="",
                                   autocommit=True)
        except pymysql.err.OperationalError as exc:
            raise MariaDBError(f"cannot connect as root to set its password: {exc}") from exc
        with conn:
            with conn.cursor() as cur:
                cur.execute("SELECT host FROM mysql.user WHERE user = 'root' AND host <> 'localhost'")
                for (host,) in cur.fetchall():
                    cur.execute("DROP USER 'root'@%s", (host,))
                cur.execute("ALTER USER 'root'@'localhost' IDENTIFIED BY %s", (password,))
                cur.execute("CREATE OR REPLACE USER 'root'@'%%' IDENTIFIED BY %s", (password,))
                cur.execute("GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION")
                cur.execute("DROP USER IF EXISTS ''@'localhost'")
                cur.execute("FLUSH PRIVILEGES")
        self.root_password = password
        _write_private(self._password_file, password + "\n")

    def _kill(self, timeout=30):
        pid = self.pid
        if not pid:
            return
        if self._proc is not None and self._proc.pid == pid:
            procs.stop_child(self._proc, timeout)
        elif self._is_ours(pid):
            procs.stop_pid(pid, timeout)
        self.pid = None
        self._proc = None

    def stop(self, timeout=30):
        """Stop this directory's mariadbd by its own PID: TERM, wait ``timeout``, KILL."""
        self._kill(timeout)
        if os.path.exists(self.state_file):
            self._save_state()

    # -- clients -------------------------------------------------------------------------------
    def connect(self, database=None, **kwargs):
        """Return a PyMySQL connection as root over the unix socket (autocommit on)."""
        params = {
            "unix_socket": self.socket,
            "user": "root",
            "password": self.root_password,
            "database": database,
            "autocommit": True,
            "charset": "utf8mb4",
        }
        params.update(kwargs)
        return pymysql.connect(**params)

    def pillar(self, via="tcp"):
        """The ``database`` pillar shape (host, port, socket, user, password) for this server."""
        return {
            "host": self.address,
            "port": self.port,
            "socket": self.socket if via == "socket" else "",
            "user": "root",
            "password": self.root_password,
        }

    def __repr__(self):
        return f"MariaDB({self.run_dir!r}, {self.address}:{self.port}, pid={self.pid})"


def main(argv=None):
    """``python -m lab.mariadb up|down|status RUN_DIR [--address A] [--port P]``."""
    import argparse  # pylint: disable=import-outside-toplevel

    parser = argparse.ArgumentParser(prog="python -m lab.mariadb", description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=("up", "down", "status"))
    parser.add_argument("run_dir")
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=None)
    args = parser.parse_args(argv)
    try:
        db = MariaDB(args.run_dir, address=args.address, port=args.port)
        if args.action == "up":
            db.start()
        elif args.action == "down":
            db.stop()
    except MariaDBError as exc:
        print(f"lab.mariadb: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({**db.info(), "running": db.running()}, indent=1))
    return 0 if args.action != "status" or db.running() else 3


if __name__ == "__main__":
    sys.exit(main())
