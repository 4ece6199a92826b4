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


def test_one_service_alone_2026_1_keystone_start_health_stop_from_another_object(
        tmp_path_factory, openstack_venvs):
    """OpenStackService alone (SQLite, no cloud): keystone of 2026.1 under gunicorn 26, which
    retitles its master (``gunicorn: master [...]``): a second object on the same run dir
    still recognises the process as ours (its cwd) and stops it; nothing is left."""
    from lab.openstack_service import OpenStackService  # pylint: disable=import-outside-toplevel

    run_dir = str(tmp_path_factory.mktemp("ks"))
    settings = {"db": {"keystone": f"sqlite:///{run_dir}/keystone.db"}, "transport_url": "",
                "auth_url": "http://127.0.0.1:9/v3", "region": "RegionOne", "passwords": {}}
    service = OpenStackService("keystone", "2026.1", run_dir, "127.0.1.21", host="ctl01",
                               settings=settings, venv=openstack_venvs["2026.1"])
    service.manage("db_sync")
    service.manage("fernet_setup", "--keystone-user", "root", "--keystone-group", "root")
    try:
        service.start()
        assert service.healthy()
        version = requests.get(service.url + "/v3", timeout=5).json()["version"]
        assert version["id"].startswith("v3.")
        with open(f"/proc/{service.pid}/cmdline", "rb") as handle:
            assert handle.read().startswith(b"gunicorn: master [lf-keystone-ctl01]")
        pid = service.pid
        other = OpenStackService("keystone", "2026.1", run_dir, "127.0.1.21", host="ctl01")
        assert other.running() and other.pid == pid and other.port == service.port
        assert other.stop() is True
    finally:
        service.stop()
    assert _gone(pid) and not _listening("127.0.1.21", service.port)


def test_rabbitmq_refuses_a_taken_port_naming_it_and_leaves_nothing_running(tmp_path_factory):
    run_dir = str(tmp_path_factory.mktemp("mq-taken"))
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        mq = RabbitMQ(run_dir, port=port)
        try:
            mq.start(attempts=2)
            raise AssertionError("RabbitMQ started on a port another process holds")
        except Exception as exc:  # pylint: disable=broad-except
            message = str(exc)
        finally:
            mq.stop()
    assert f"127.0.0.1:{port} is already taken by another process" in message
    assert message.count("attempt ") == 2
    assert mq.pid is None and mq.epmd_pid is None
    assert not mq._find_node()  # pylint: disable=protected-access
