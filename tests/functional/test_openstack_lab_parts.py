"""The lab's small OpenStack-side starters alone: RabbitMQ and the neutron stand-in."""
import os
import socket

import requests

from lab.neutron_stub import NeutronStub
from lab.rabbitmq import RabbitMQ


def _listening(address, port):
    try:
        with socket.create_connection((address, port), timeout=1):
            return True
    except OSError:
        return False


def _gone(pid):
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ", 1)[1][0] == "Z"
    except OSError:
        return True


def test_rabbitmq_private_node_starts_answers_amqp_and_stops_by_pid(tmp_path_factory):
    run_dir = str(tmp_path_factory.mktemp("mq"))
    mq = RabbitMQ(run_dir)
    try:
        mq.start()
        assert mq.running() and _listening("127.0.0.1", mq.port)
        assert mq.transport_url() == f"rabbit://guest:guest@127.0.0.1:{mq.port}/"
        with open(os.path.join(run_dir, "rabbitmq.conf")) as handle:
            assert "loopback_users = none" in handle.read()
        pids = (mq.pid, mq.epmd_pid)
        port, epmd_port = mq.port, mq.epmd_port
        assert mq.rss_kb() > 10_000
    finally:
        mq.stop()
    assert all(_gone(pid) for pid in pids)
    assert not _listening("127.0.0.1", port) and not _listening("127.0.0.1", epmd_port)


def test_neutron_stub_answers_empty_lists(tmp_path_factory):
    stub = NeutronStub(str(tmp_path_factory.mktemp("neutron")), "127.0.1.21")
    try:
        stub.start()
        base = stub.url
        assert requests.get(base + "/v2.0/ports?device_id=x", timeout=5).json() == {"ports": []}
        assert requests.get(base + "/v2.0/networks.json", timeout=5).json() == {"networks": []}
        assert requests.get(base + "/v2.0/security-groups", timeout=5).json() == {
            "security_groups": []}
        assert requests.get(base + "/v2.0/ports/abc", timeout=5).status_code == 404
        assert requests.post(base + "/v2.0/ports", json={}, timeout=5).status_code == 501
        assert requests.get(base + "/", timeout=5).json()["versions"][0]["id"] == "v2.0"
        pid = stub.pid
    finally:
        stub.stop()
    assert _gone(pid)
