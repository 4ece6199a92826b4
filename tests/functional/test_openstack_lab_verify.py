"""openstack_verify through Salt's loader against the lab's real OpenStack cloud: healthy
passes every check (volumes and volume services skipped: this cloud has no cinder), stopping keystone fails it with a
clear reason, and the password shows up nowhere (report, logs, output)."""
import json
import logging
import os

import pytest
import salt.config
import salt.loader

from tests.conftest import REPO


@pytest.fixture
def verify(openstack_cloud, tmp_path):
    opts = salt.config.minion_config(None)
    opts.update({
        "file_client": "local",
        "cachedir": str(tmp_path / "cache"),
        "module_dirs": [os.path.join(REPO, "_modules")],
        "grains": {"id": "ctl01"},
        "id": "ctl01",
        "pillar": {"leapfrog": {"verify": {**openstack_cloud.auth, "timeout": 30}}},
    })
    mods = salt.loader.minion_mods(opts, whitelist=["openstack_verify"])
    return mods["openstack_verify.check"]


def _no_secret(cloud, report, caplog, capsys):
    text = json.dumps(report, default=str) + caplog.text
    out = capsys.readouterr()
    text += out.out + out.err
    assert cloud.admin_password not in text
    for password in cloud.passwords.values():
        assert password not in text


def test_verify_passes_on_the_healthy_lab_cloud(openstack_cloud, verify, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    report = verify()
    assert report["healthy"], report["summary"]
    assert report["failed"] == []
    assert report["skipped"] == ["volumes", "volume_services"]
    assert report["checks"]["servers"]["detail"]["status"]["ACTIVE"] >= 3
    assert report["checks"]["hypervisors"]["detail"]["count"] == 2
    assert report["checks"]["compute_services"]["detail"]["count"] == 4
    # the stand-in neutron of a cloud without --neutron-cinder: empty lists
    assert report["checks"]["networks"]["reason"] == "0 networks, 0 subnets, 0 routers, 0 ports"
    assert report["checks"]["network_agents"]["reason"] == "0 network agents up"
    assert report["checks"]["images"]["reason"] == "1 images"
    assert report["auth"]["catalog"] == ["compute", "identity", "image", "network", "placement"]
    _no_secret(openstack_cloud, report, caplog, capsys)


def test_verify_fails_clearly_when_keystone_is_stopped(openstack_cloud, verify, caplog, capsys):
    """Stops keystone (haproxy has no server left: 503), checks, starts it again."""
    caplog.set_level(logging.DEBUG)
    keystone = openstack_cloud.controller["keystone"]
    keystone.stop()
    try:
        report = verify()
    finally:
        keystone.start()
        openstack_cloud.wait_url(openstack_cloud.auth_url, 60)
    assert not report["healthy"]
    assert report["auth"]["result"] == "fail"
    assert report["summary"].startswith("unhealthy: keystone: HTTP 503 from POST http://127.0.1.100:")
    assert report["checks"]["servers"]["reason"] == "not run: keystone authentication failed"
    _no_secret(openstack_cloud, report, caplog, capsys)

    assert verify()["healthy"]


def test_verify_fails_clearly_when_a_compute_service_is_down(openstack_cloud, verify):
    """Marks cmp01's nova-compute forced down (what nova reports for a dead compute once
    its heartbeat is older than service_down_time), checks, then lifts it."""
    found = openstack_cloud.api("GET", "nova", "/os-services?binary=nova-compute&host=cmp01")
    service_id = found["services"][0]["id"]
    openstack_cloud.api("PUT", "nova", f"/os-services/{service_id}",
                        json={"forced_down": True})
    try:
        report = verify()
    finally:
        openstack_cloud.api("PUT", "nova", f"/os-services/{service_id}",
                            json={"forced_down": False})
    assert report["healthy"] is False
    assert sorted(report["failed"]) == ["compute_services", "hypervisors"]
    assert report["checks"]["compute_services"]["reason"] == \
        "1 of 4 compute services down: nova-compute on cmp01"
    assert verify()["healthy"] is True
