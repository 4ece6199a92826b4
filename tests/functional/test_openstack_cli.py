"""The operator's view: the ``openstack`` CLI (python-openstackclient 6.6, the client venv of
lab.openstack_venv) with the lab's rc file works through the VIP.

Seven CLI calls in all (~4 s each: the CLI's imports), one per command an operator runs
first: ``token issue``, ``service list``, ``endpoint list``, ``flavor list``, ``compute
service list``, ``hypervisor list``, ``server list``, each with ``-f json``. Every call goes
through ``OpenStackCloud.cli``: a shell sources the rc file (0600) and runs the CLI, so the
admin password is on no command line (checked on each call's argv) and not in the
environment the call is given either.
"""
import os
import stat
import subprocess
import sys
import time
import urllib.parse

import pytest

from lab import openstack_cloud as cloud_module
from lab import openstack_venv


@pytest.fixture(scope="module")
def client_venv():
    """The client venv (built once, cached like the release venvs)."""
    started = time.monotonic()
    path = openstack_venv.ensure(
        openstack_venv.CLIENT, log=lambda line: print(line, file=sys.stderr, flush=True))
    print(f"client venv ready in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return path


@pytest.fixture
def cli(openstack_cloud, client_venv, monkeypatch):
    """``cli(*args)``: the decoded ``openstack ARGS -f json``; asserts that the password was
    on no command line and not in the environment handed to the shell."""
    secret = openstack_cloud.admin_password
    real_run = subprocess.run
    calls = []

    def spy(argv, *args, **kwargs):
        calls.append(argv)
        assert not any(secret in str(part) for part in argv), "password on a command line"
        assert not any(secret in value for value in kwargs.get("env", {}).values())
        return real_run(argv, *args, **kwargs)

    monkeypatch.setattr(cloud_module.subprocess, "run", spy)

    def run(*args):
        before = len(calls)
        result = openstack_cloud.cli(*args)
        assert len(calls) == before + 1
        assert calls[-1][-len(args) - 2:] == [*args, "-f", "json"]
        assert calls[-1][-len(args) - 3] == os.path.join(client_venv, "bin", "openstack")
        return result

    return run


def test_rc_file_is_private(openstack_cloud, tmp_path):
    rc_file = openstack_cloud.write_rc(str(tmp_path / "openrc"))
    assert stat.S_IMODE(os.stat(rc_file).st_mode) == 0o600
    text = open(rc_file).read()
    assert f"export OS_AUTH_URL={openstack_cloud.auth_url}\n" in text
    assert "export OS_PASSWORD=" in text


def test_token_issue(cli, openstack_cloud):
    token = cli("token", "issue")
    assert token["id"] and token["expires"] and token["user_id"] and token["project_id"]
    assert openstack_cloud.admin_password not in str(token)


def test_service_list(cli):
    services = cli("service", "list")
    assert {s["Type"] for s in services} == {"identity", "compute", "placement", "image",
                                            "network"}
    assert {s["Name"] for s in services} >= {"keystone", "nova", "placement", "glance"}


def test_endpoint_list_goes_through_the_vip(cli, openstack_cloud):
    endpoints = cli("endpoint", "list")
    assert {e["Service Type"] for e in endpoints} == {"identity", "compute", "placement",
                                                      "image", "network"}
    assert {e["Interface"] for e in endpoints} == {"public", "internal", "admin"}
    assert {urllib.parse.urlsplit(e["URL"]).hostname for e in endpoints} == {openstack_cloud.vip}
    assert all(e["Enabled"] and e["Region"] == cloud_module.REGION for e in endpoints)


def test_flavor_list(cli, openstack_cloud):
    flavors = {f["ID"]: f for f in cli("flavor", "list")}
    flavor = flavors[openstack_cloud.ids["flavor"]]
    assert (flavor["Name"], flavor["RAM"], flavor["VCPUs"], flavor["Disk"]) == ("m1.lab", 64, 1, 1)


def test_compute_service_list(cli):
    services = cli("compute", "service", "list")
    computes = sorted((s["Host"], s["Status"], s["State"]) for s in services
                      if s["Binary"] == "nova-compute")
    assert computes == [("cmp01", "enabled", "up"), ("cmp02", "enabled", "up")]
    assert {s["Binary"] for s in services if s["State"] == "up"} >= {
        "nova-conductor", "nova-scheduler", "nova-compute"}


def test_hypervisor_list(cli):
    hypervisors = cli("hypervisor", "list")
    assert len(hypervisors) == 2
    assert all(h["State"] == "up" for h in hypervisors), hypervisors


def test_server_list(cli, openstack_cloud):
    servers = {s["ID"]: s for s in cli("server", "list")}
    seeded = openstack_cloud.ids["servers"]
    assert set(seeded) <= set(servers)
    assert all(servers[i]["Status"] == "ACTIVE" for i in seeded), servers
    assert all(servers[i]["Flavor"] == "m1.lab" for i in seeded), servers


def test_client_constraints_are_the_2024_1_pins():
    """No cloud needed: the client's frozen set is python-openstackclient 6.6.x, and every
    library it shares with the 2024.1 venv has the 2024.1 pin."""
    def pins(release):
        with open(openstack_venv.constraints_file(release)) as handle:
            return dict(line.strip().split("==", 1) for line in handle
                        if "==" in line and not line.startswith("#"))

    client, release = pins(openstack_venv.CLIENT), pins("2024.1")
    assert client["python-openstackclient"].startswith("6.6.")
    assert {d: v for d, v in client.items() if release.get(d, v) != v} == {}
    assert openstack_venv.CLIENT not in openstack_venv.RELEASES
