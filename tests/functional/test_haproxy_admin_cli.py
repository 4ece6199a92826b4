"""What an operator sees from ``salt-call --local``: haproxy_admin/haproxy_server against the
real lab haproxy, openstack_verify against a fake keystone/nova (real HTTP), with the pillar
read on the minion, one-line errors, retcodes, and no password in output or log."""
import json
import os
import subprocess
import sys

import pytest
import yaml

from tests.conftest import REPO
from tests.unit.fake_openstack import PASSWORD, TOKEN, FakeCloud

SALT_CALL = os.path.join(os.path.dirname(sys.executable), "salt-call")


@pytest.fixture
def cloud():
    fake = FakeCloud()
    yield fake
    fake.close()


@pytest.fixture
def minion(haproxy_lab, cloud, haproxy_tmp):
    base = os.path.join(haproxy_tmp, "minion")
    root = os.path.join(base, "root")
    for sub in ("pillar", "files"):
        os.makedirs(os.path.join(base, sub))
    with open(os.path.join(base, "pillar", "top.sls"), "w") as handle:
        handle.write("base:\n  '*': [leapfrog]\n")
    with open(os.path.join(base, "pillar", "leapfrog.sls"), "w") as handle:
        yaml.safe_dump({"leapfrog": {
            "haproxy": {"socket": haproxy_lab.socket, "timeout": 5, "drain_timeout": 20},
            "verify": {"auth_url": f"{cloud.base}/identity/v3", "username": "admin",
                       "password": PASSWORD, "project_name": "admin", "timeout": 5},
        }}, handle)
    with open(os.path.join(base, "minion"), "w") as handle:
        yaml.safe_dump({
            "id": "prx01", "file_client": "local", "root_dir": root,
            "cachedir": os.path.join(root, "cache"), "pki_dir": os.path.join(root, "pki"),
            "log_file": os.path.join(root, "minion.log"), "log_level_logfile": "debug",
            "module_dirs": [os.path.join(REPO, "_modules")],
            "states_dirs": [os.path.join(REPO, "_states")],
            "pillar_roots": {"base": [os.path.join(base, "pillar")]},
            "file_roots": {"base": [os.path.join(base, "files")]},
        }, handle)

    def call(*args):
        env = dict(os.environ, PYTHONPATH=os.path.join(REPO, "_utils"))
        proc = subprocess.run([SALT_CALL, "-c", base, "--local", "--out=json", *args],
                              capture_output=True, text=True, env=env, timeout=120, check=False)
        return proc

    call.log = os.path.join(root, "minion.log")
    return call


def test_drain_and_states_from_salt_call(minion, haproxy_lab):
    proc = minion("haproxy_admin.drain", "ctl01")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)["local"]
    assert sorted(out["backends"]) == ["keystone", "nova", "placement"]
    assert {s for (be, srv), s in haproxy_lab.statuses().items() if srv == "ctl01"} == {"MAINT"}

    proc = minion("state.single", "haproxy_server.ready", "name=ctl01", "test=True")
    ret = next(iter(json.loads(proc.stdout)["local"].values()))
    assert ret["result"] is None and ret["comment"].startswith("Would set ctl01 ready")
    proc = minion("state.single", "haproxy_server.ready", "name=ctl01")
    assert proc.returncode == 0, proc.stdout
    ret = next(iter(json.loads(proc.stdout)["local"].values()))
    assert ret["result"] is True and ret["changes"]["new"] == {
        "keystone": "UP", "nova": "UP", "placement": "UP"}

    proc = minion("haproxy_admin.drain", "ctl01;shutdown sessions server nova/ctl02")
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        "Error running 'haproxy_admin.drain': refused server 'ctl01;shutdown sessions server "
        "nova/ctl02': haproxy names here may only hold letters, digits, '.', '_' and '-' (no "
        "whitespace, newline or ';'); nothing was sent to haproxy")


def test_verify_from_salt_call_never_shows_the_password(minion, cloud):
    proc = minion("openstack_verify.check")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)["local"]
    assert report["healthy"] is True and report["skipped"] == [
        "networks", "network_agents", "volumes", "volume_services"]

    cloud.services_down.add("cmp01")
    proc = minion("openstack_verify.check", "checks=compute_services")
    assert proc.returncode == 1                     # an unhealthy cloud fails the job
    report = json.loads(proc.stdout)["local"]
    assert report["summary"] == ("unhealthy: compute_services: 1 of 4 compute services down: "
                                 "nova-compute on cmp01")
    with open(minion.log) as handle:
        text = proc.stdout + proc.stderr + handle.read()
    assert PASSWORD not in text and TOKEN not in text
