"""openstack_verify against a fake keystone/nova/glance/placement on a real local HTTP server."""
import json
import logging
import time

import pytest
from salt.exceptions import CommandExecutionError

from tests.loader import load
from tests.unit.fake_openstack import PASSWORD, TOKEN, FakeCloud

verify = load("modules", "openstack_verify")
PILLAR = {}
CONTEXT = {}



@pytest.fixture
def cloud():
    fake = FakeCloud()
    PILLAR.clear()
    PILLAR["leapfrog"] = {"verify": {"auth_url": f"{fake.base}/identity", "username": "admin",
                                     "password": PASSWORD, "project_name": "admin",
                                     "region_name": "RegionOne", "timeout": 2}}
    yield fake
    fake.close()
    PILLAR.clear()


@pytest.fixture
def configure_loader_modules():
    CONTEXT.clear()
    return {verify: {"__pillar__": PILLAR, "__context__": CONTEXT}}


def no_secret(report, caplog):
    text = json.dumps(report) + caplog.text
    assert PASSWORD not in text and TOKEN not in text


def test_healthy_cloud_passes_every_check_and_skips_absent_services(cloud, caplog):
    caplog.set_level(logging.DEBUG)
    report = verify.check()
    assert report["healthy"] is True, report["summary"]
    assert report["passed"] == ["services", "endpoints", "images", "flavors",
                                "compute_services", "hypervisors", "servers", "placement"]
    assert report["skipped"] == ["networks", "network_agents", "volumes", "volume_services"]
    assert report["checks"]["networks"]["reason"] == "no network service in the catalog"
    compute = report["checks"]["compute_services"]
    assert compute["reason"] == "4 compute services up, compute API 2.96"
    assert compute["detail"]["api"] == {"id": "v2.1", "version": "2.96", "min_version": "2.1"}
    assert all(c["latency"] >= 0 for c in report["checks"].values())
    assert report["checks"]["servers"]["detail"]["status"] == {"ACTIVE": 1, "SHUTOFF": 1}
    assert report["summary"] == "healthy: 8 checks passed, 4 skipped"
    assert report["auth"]["result"] == "pass"
    assert "retcode" not in CONTEXT
    # the token went to the APIs as a header; the password only in keystone's POST body
    assert all(token == TOKEN for method, path, token in cloud.requests if method == "GET"
               and path != "/placement")
    assert sum(PASSWORD in body for body in cloud.bodies) == 1
    no_secret(report, caplog)


def test_network_and_volume_checked_when_in_catalog(cloud):
    cloud.with_network = cloud.with_volume = True
    report = verify.check(checks="networks,volumes")
    assert report["passed"] == ["networks", "volumes"]
    assert list(report["checks"]) == ["networks", "volumes"]
    assert ("GET", "/volume/v3/project1/volumes", TOKEN) in cloud.requests
    assert report["checks"]["networks"]["reason"] == "1 networks, 1 subnets, 0 routers, 2 ports"


def test_network_agents_and_volume_services_must_be_up(cloud):
    cloud.with_network = cloud.with_volume = True
    report = verify.check(checks="network_agents,volume_services")
    assert report["passed"] == ["network_agents", "volume_services"]
    assert report["checks"]["volume_services"]["reason"] == "2 volume services up"
    cloud.services_down.add("ctl01")
    report = verify.check(checks="network_agents,volume_services")
    assert report["failed"] == ["network_agents", "volume_services"]
    assert report["checks"]["network_agents"]["reason"] == (
        "1 of 2 network agents down: OVN Controller agent on ctl01")
    assert report["checks"]["volume_services"]["reason"] == (
        "1 of 2 volume services down: cinder-scheduler on ctl01")
    assert report["healthy"] is False


def test_which_checks_run_is_pillar_config(cloud):
    PILLAR["leapfrog"]["verify"]["checks"] = {"flavors": True, "servers": False, "images": True}
    report = verify.check()
    assert list(report["checks"]) == ["images", "flavors"]
    with pytest.raises(verify.VerifyError, match="unknown check.s. routers"):
        verify.check(checks=["routers"])


def test_compute_service_down_fails_with_a_clear_reason(cloud, caplog):
    cloud.services_down.add("cmp02")
    report = verify.check()
    assert report["healthy"] is False
    assert report["failed"] == ["compute_services", "hypervisors"]
    assert report["checks"]["compute_services"]["reason"] == \
        "1 of 4 compute services down: nova-compute on cmp02"
    assert report["checks"]["hypervisors"]["reason"] == "hypervisor(s) down: cmp02"
    assert report["summary"].startswith("unhealthy: compute_services: 1 of 4")
    assert CONTEXT["retcode"] == 1
    no_secret(report, caplog)


def test_keystone_down_fails_every_check_with_the_reason(cloud, caplog):
    cloud.close()
    report = verify.check()
    assert report["healthy"] is False
    assert report["auth"]["result"] == "fail"
    assert report["auth"]["reason"] == f"keystone: connection refused by 127.0.0.1:{cloud.port}"
    assert set(c["reason"] for c in report["checks"].values()) == {
        "not run: keystone authentication failed"}
    assert report["summary"].startswith("unhealthy: keystone: connection refused")
    assert CONTEXT["retcode"] == 1
    no_secret(report, caplog)


def test_keystone_error_and_wrong_password(cloud, caplog):
    caplog.set_level(logging.DEBUG)
    report = verify.check(password="wrong-" + PASSWORD)
    assert report["auth"]["reason"] == ("keystone refused the credentials of admin (HTTP 401): "
                                        "wrong user, password or project")
    cloud.broken["/identity"] = 503
    report = verify.check()
    assert report["auth"]["reason"].startswith("keystone: HTTP 503 from POST")
    assert report["auth"]["reason"].endswith("keystone is unwell")
    no_secret(report, caplog)
    assert "wrong-" not in json.dumps(report) + caplog.text


def test_one_api_broken_fails_only_its_checks(cloud):
    cloud.broken["/compute/v2.1/flavors"] = 500
    report = verify.check()
    assert report["failed"] == ["flavors"]
    assert report["checks"]["flavors"]["reason"] == \
        "HTTP 500 from GET /compute/v2.1/flavors: Unexpected API Error."


def test_an_api_that_hangs_fails_on_the_timeout(cloud):
    cloud.slow = 1.0
    started = time.monotonic()
    report = verify.check(checks="flavors", timeout=0.3)
    assert time.monotonic() - started < 5
    assert report["checks"]["flavors"]["reason"] == f"127.0.0.1:{cloud.port} did not answer in time"


def test_missing_credentials_name_the_pillar_key():
    PILLAR.clear()
    with pytest.raises(CommandExecutionError, match="needs auth_url, username, password, "
                                                    "project_name: set them under the pillar key leapfrog:verify"):
        verify.check()


def test_endpoint_of_another_interface_or_region_fails(cloud):
    report = verify.check(checks="flavors", interface="admin")
    assert report["checks"]["flavors"]["reason"] == \
        "the catalog has a compute service but no admin endpoint in region RegionOne"
    report = verify.check(checks="flavors", region_name="RegionTwo")
    assert report["checks"]["flavors"]["result"] == "fail"


def test_wait_retries_until_healthy(cloud):
    cloud.services_down.add("cmp01")
    import threading
    threading.Timer(0.6, cloud.services_down.clear).start()
    report = verify.wait(timeout=10, interval=0.2, checks="compute_services")
    assert report["healthy"] is True
    assert report["attempts"] >= 2 and report["waited"] >= 0.4


def test_wait_gives_up_with_the_last_reasons(cloud, caplog):
    cloud.services_down.add("cmp01")
    started = time.monotonic()
    with pytest.raises(verify.VerifyError) as err:
        verify.wait(timeout=0.8, interval=0.2, checks=["compute_services"])
    assert time.monotonic() - started < 3
    assert "OpenStack APIs not healthy after" in str(err.value)
    assert "compute_services: 1 of 4 compute services down: nova-compute on cmp01" in str(err.value)
    assert PASSWORD not in str(err.value) + caplog.text
    assert CONTEXT["retcode"] == 1


def test_catalog_has_no_token(cloud):
    out = verify.catalog()
    assert out["compute"]["RegionOne/public"] == f"{cloud.base}/compute/v2.1"
    assert TOKEN not in json.dumps(out)
    cloud.close()
    with pytest.raises(verify.VerifyError, match="connection refused"):
        verify.catalog()


def test_virtual_and_docs():
    import inspect
    assert verify.__virtual__() == "openstack_verify"
    for name, func in inspect.getmembers(verify, inspect.isfunction):
        if not name.startswith("_") and func.__module__ == verify.__name__:
            assert "CLI Example:" in (func.__doc__ or ""), name


def test_a_rehearsal_checks_its_throwaway_controller_and_nothing_else(cloud):
    """address= (the throwaway controller): keystone is asked there, and a catalog that
    still sends a service elsewhere (production) stops every check before it runs."""
    PILLAR["leapfrog"]["verify"]["auth_url"] = f"http://localhost:{cloud.port}/identity"
    report = verify.check(checks="images,compute_services", address="127.0.0.1",
                          liveness=False)
    assert report["auth_url"] == f"http://127.0.0.1:{cloud.port}/identity"
    assert report["healthy"] is True, report["summary"]
    cloud.base = f"http://localhost:{cloud.port}"  # the clone's catalog not rewritten
    asked = len(cloud.requests)
    report = verify.check(checks="images", address="127.0.0.1")
    assert report["healthy"] is False and CONTEXT["retcode"] == 1
    assert report["auth"]["reason"].startswith("the catalog sends ")
    assert "image at localhost" in report["auth"]["reason"]
    assert report["auth"]["reason"].endswith(
        "not to 127.0.0.1: rewrite the clone's catalog first (clone_rehome.catalog); no "
        "check was run")
    assert [r for r in cloud.requests[asked:] if r[0] == "GET"] == []


def test_liveness_off_lists_services_without_requiring_them_up(cloud):
    """Clones of a cloud: its computes report to production, not to the copy."""
    cloud.services_down.add("cmp02")
    report = verify.check(checks="compute_services,hypervisors", liveness=False)
    assert report["healthy"] is True, report["summary"]
    assert report["checks"]["compute_services"]["reason"] == (
        "1 of 4 compute services down: nova-compute on cmp02 (not required: liveness off)")
    assert report["checks"]["hypervisors"]["detail"]["down"] == ["cmp02"]
    assert verify.check(checks="compute_services")["failed"] == ["compute_services"]


def test_provision_checks_its_arguments_and_the_catalog_before_creating_anything(cloud):
    with pytest.raises(verify.VerifyError, match=r"unknown provisioning kind\(s\) router"):
        verify.provision(kinds="server,router")
    with pytest.raises(verify.VerifyError, match="a server needs image= and flavor="):
        verify.provision(kinds="server")
    PILLAR["leapfrog"]["verify"]["auth_url"] = f"http://localhost:{cloud.port}/identity"
    cloud.base = f"http://localhost:{cloud.port}"  # a clone's catalog not rewritten
    with pytest.raises(verify.VerifyError, match=r"provision: the catalog sends .* not to "
                                                 r"127\.0\.0\.1"):
        verify.provision(kinds="server", image="cirros", flavor="m1", address="127.0.0.1")
    assert [r for r in cloud.requests if r[0] == "POST" and "auth" not in r[1]] == []
    assert CONTEXT["retcode"] == 1


def test_provision_skips_a_kind_whose_service_the_catalog_lacks(cloud):
    got = verify.provision(kinds="network,volume")
    assert got["skipped"] == ["network", "volume"] and got["passed"] == []
    assert got["kinds"]["network"]["reason"] == "no network service in the catalog"
