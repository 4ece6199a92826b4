"""The lab haproxy's database frontend (``mode: tcp``, as the lab puts Galera behind it)
against a real haproxy and two TCP servers that answer with their name: connections go to
the active server only; when it dies the next connection reaches the standby without a
failed connect (the failed attempt marks it down, the retry goes to the standby); when it
is back, the standby's sessions are cut and new ones go to the active one again."""
import shutil
import socket
import socketserver
import tempfile
import threading
import time

import pytest

from lab.haproxy import HAProxy
from lab.procs import free_port
from tests.clouds import wait_until


class NameServer(socketserver.ThreadingTCPServer):
    """Says its name to every connection, then keeps it open until the client closes."""
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, name, port):
        self.name = name

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                self.request.sendall(name.encode() + b"\n")
                try:
                    while self.request.recv(64):
                        pass
                except OSError:
                    pass

        super().__init__(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.shutdown()
        self.server_close()


def _connect(address):
    conn = socket.create_connection(address, timeout=5)
    return conn, conn.recv(64).decode().strip()


@pytest.fixture
def db_frontend():
    run_dir = tempfile.mkdtemp(prefix="lf-dbfe-", dir="/tmp")
    ports = {"n1": free_port(), "n2": free_port()}
    servers = {name: NameServer(name, port) for name, port in ports.items()}
    proxy = HAProxy(run_dir, {"galera": {
        "bind": "127.0.0.1:0", "mode": "tcp", "backup": ["n2"],
        "servers": {name: f"127.0.0.1:{port}" for name, port in ports.items()}}})
    proxy.start()
    try:
        yield proxy, servers, ports
    finally:
        proxy.stop()
        for server in servers.values():
            server.close()
        shutil.rmtree(run_dir, ignore_errors=True)


def _state(proxy, server):
    for line in proxy.command("show servers state galera").splitlines():
        fields = line.split()
        if len(fields) > 5 and fields[3] == server:
            return int(fields[5])  # srv_op_state: 2 running, 0 stopped
    return None


def test_the_active_node_takes_every_connection_and_a_standby_takes_over(db_frontend):
    proxy, servers, ports = db_frontend
    address = proxy.frontend_address("galera")
    wait_until(lambda: _state(proxy, "n1") == 2 and _state(proxy, "n2") == 2, 10, "both UP")
    held = [_connect(address) for _ in range(4)]
    assert [name for _, name in held] == ["n1"] * 4  # the standby takes none
    servers["n1"].close()  # the active node dies
    for conn, _ in held:
        conn.close()
    # the next connection already reaches the standby: no failed connect in between
    conn, name = _connect(address)
    assert name == "n2"
    assert _state(proxy, "n1") == 0
    # the active node back: the standby's sessions are cut, new ones go to it again
    servers["n1"] = NameServer("n1", ports["n1"])
    wait_until(lambda: _state(proxy, "n1") == 2, 10, "n1 UP again")
    conn.settimeout(5)
    assert conn.recv(64) == b""  # cut by haproxy (on-marked-up shutdown-backup-sessions)
    conn.close()
    assert _connect(address)[1] == "n1"
