"""
Verify an OpenStack cloud's APIs the way an operator does, through keystone.

Keystone v3 password authentication (with ``requests``), then the checks an operator runs
after an upgrade step: service and endpoint list, image list, flavor list, compute service
list (every enabled service up; the compute API's version), hypervisor list, server list,
network list (with subnets, routers and ports), network agents (every one alive), volume
list, volume services (every enabled one up) and placement. Each check gives ``pass``/``fail``/``skip``, its
latency and a short reason; a service the cloud's catalog does not have is skipped, not
failed. ``wait`` retries until every check passes or a timeout runs out.

Configuration (arguments win over pillar; keep the password in pillar, not on a command
line)::

    leapfrog:
      verify:
        auth_url: http://10.0.0.10:5000/v3
        username: admin
        password: secret                  # never logged, never returned
        project_name: admin
        user_domain_name: Default         # optional
        project_domain_name: Default      # optional
        region_name: RegionOne            # optional
        interface: public                 # optional: public | internal | admin
        timeout: 10                       # optional: per request, seconds
        verify_tls: true                  # optional (or a CA bundle path)
        all_tenants: true                 # optional: list every project's servers/volumes
        checks: [services, endpoints, images, flavors, compute_services, hypervisors,
                 servers, networks, network_agents, volumes, volume_services,
                 placement]               # optional: which checks run
"""
import logging
import time

import leapfrog_errors
import leapfrog_keystone
import leapfrog_parse
import leapfrog_provision

log = logging.getLogger(__name__)

__virtualname__ = "openstack_verify"

PILLAR_KEY = leapfrog_keystone.PILLAR_KEY
CHECKS = ("services", "endpoints", "images", "flavors", "compute_services", "hypervisors",
          "servers", "networks", "network_agents", "volumes", "volume_services", "placement")
VOLUME_TYPES = ("block-storage", "volumev3", "volume")
# check -> service types that serve it, in order of preference
SERVICE_TYPES = {
    "services": ("identity",),
    "endpoints": ("identity",),
    "images": ("image",),
    "flavors": ("compute",),
    "compute_services": ("compute",),
    "hypervisors": ("compute",),
    "servers": ("compute",),
    "networks": ("network",),
    "network_agents": ("network",),
    "volumes": VOLUME_TYPES,
    "volume_services": VOLUME_TYPES,
    "placement": ("placement",),
}
SECRET_KEYS = ("password", "token")
LIST_LIMIT = 1000


class VerifyError(leapfrog_errors.LeapfrogError):
    """Verification could not run (bad configuration) or did not become healthy in time."""


# One check failed; the message is its short reason (the session raises it too).
_CheckFailed = leapfrog_keystone.RequestFailed
# the connection arguments a caller may give instead of pillar leapfrog:verify's
AUTH_ARGS = {"auth_url", "username", "password", "project_name", "user_domain_name",
             "project_domain_name", "region_name", "interface", "verify_tls"}


class _Down(_CheckFailed):
    """A liveness check found services down (a failure unless liveness is off)."""


def __virtual__():
    if not leapfrog_keystone.HAS_REQUESTS:
        return (False, "openstack_verify needs the python 'requests' library")
    return __virtualname__


# -- configuration ---------------------------------------------------------------------------

def _settings(overrides):
    pillar = globals().get("__pillar__") or {}
    conf = leapfrog_keystone.settings(pillar, overrides, VerifyError, __virtualname__)
    conf.setdefault("all_tenants", True)
    conf["checks"] = _check_list(conf.get("checks"))
    conf["liveness"] = conf.get("liveness") is not False
    if conf.get("address"):
        conf["address"] = str(conf["address"]).strip("[]").lower()
        conf["auth_url"] = leapfrog_keystone.with_host(conf["auth_url"], conf["address"])
    return conf


def _chosen(value, known, what):
    """The names of ``known`` that ``value`` picks (a list, comma-separated text or
    ``{name: true/false}``; empty: all), in ``known``'s order; an unknown name is refused."""
    if value in (None, "", []):
        return list(known)
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    elif isinstance(value, dict):  # {name: true/false}
        value = [name for name, enabled in value.items() if enabled]
    unknown = [name for name in value if name not in known]
    if unknown:
        raise VerifyError(f"unknown {what}(s) {', '.join(map(str, unknown))}; known: "
                          f"{', '.join(known)}")
    return [name for name in known if name in value]


def _check_list(checks):
    return _chosen(checks, CHECKS, "check")


_join = leapfrog_keystone.join


def _session(conf):
    return leapfrog_keystone.Session(conf, agent="leapfrog-openstack-verify")


def _image_base(url):
    return url if url.rstrip("/").endswith("/v2") else _join(url, "v2")


def _network_base(url):
    return url if url.rstrip("/").endswith("/v2.0") else _join(url, "v2.0")


def _identity_base(session):
    found = session.endpoint(SERVICE_TYPES["services"])
    return leapfrog_keystone.v3(found[1] if found else session.conf["auth_url"])


# -- the checks: each returns (reason, detail) or raises _CheckFailed ---------------------------

def _check_services(session, base):
    services = session.get(_join(_identity_base(session), "services")).get("services", [])
    types = sorted({s.get("type") for s in services if s.get("enabled", True)})
    return f"{len(services)} services", {"count": len(services), "types": types}


def _check_endpoints(session, base):
    endpoints = session.get(_join(_identity_base(session), "endpoints")).get("endpoints", [])
    wanted = session.conf["interface"]
    mine = [e for e in endpoints if e.get("interface") == wanted]
    if not mine:
        raise _CheckFailed(f"no {wanted} endpoint among {len(endpoints)}")
    return f"{len(endpoints)} endpoints", {"count": len(endpoints), wanted: len(mine)}


def _check_images(session, base):
    images = session.get(_join(_image_base(base), "images"),
                         params={"limit": LIST_LIMIT}).get("images", [])
    return f"{len(images)} images", {"count": len(images)}


def _check_flavors(session, base):
    flavors = session.get(_join(base, "flavors")).get("flavors", [])
    return f"{len(flavors)} flavors", {"count": len(flavors)}


def _compute_version(session, base):
    try:
        found = session.get(base).get("version") or {}
    except _CheckFailed:
        return None
    return {"id": found.get("id"), "version": found.get("version"),
            "min_version": found.get("min_version")}


def _check_compute_services(session, base):
    services = session.get(_join(base, "os-services")).get("services", [])
    if not services:
        raise _CheckFailed("nova lists no compute services")
    rows = [{"binary": s.get("binary"), "host": s.get("host"), "zone": s.get("zone"),
             "status": s.get("status"), "state": s.get("state"),
             "updated_at": s.get("updated_at")} for s in services]
    down = [r for r in rows if r["status"] != "disabled" and r["state"] != "up"]
    detail = {"count": len(rows), "services": rows, "api": _compute_version(session, base)}
    if down:
        names = ", ".join(f"{r['binary']} on {r['host']}" for r in down)
        raise _Down(f"{len(down)} of {len(rows)} compute services down: {names}", detail)
    versions = detail["api"] or {}
    api = f", compute API {versions.get('version')}" if versions.get("version") else ""
    return f"{len(rows)} compute services up{api}", detail


def _check_hypervisors(session, base):
    hypervisors = session.get(_join(base, "os-hypervisors")).get("hypervisors", [])
    down = [h.get("hypervisor_hostname") for h in hypervisors
            if h.get("status", "enabled") == "enabled" and h.get("state", "up") != "up"]
    detail = {"count": len(hypervisors), "down": down}
    if down:
        raise _Down(f"hypervisor(s) down: {', '.join(map(str, down))}", detail)
    return f"{len(hypervisors)} hypervisors", detail


def _check_servers(session, base):
    params = {"limit": LIST_LIMIT}
    if session.conf["all_tenants"]:
        params["all_tenants"] = "True"
    servers = session.get(_join(base, "servers/detail"), params=params).get("servers", [])
    by_status = {}
    for server in servers:
        by_status[server.get("status")] = by_status.get(server.get("status"), 0) + 1
    return f"{len(servers)} servers", {"count": len(servers), "status": by_status}


def _check_networks(session, base):
    counts = {}
    for collection in ("networks", "subnets", "routers", "ports"):
        found = session.get(_join(_network_base(base), collection)).get(collection, [])
        counts[collection] = len(found)
    return ", ".join(f"{n} {name}" for name, n in counts.items()), {
        "count": counts["networks"], **counts}


def _down(rows, what):
    """Raise naming the rows not up (``{"binary", "host"}``), else a reason line."""
    down = [r for r in rows if not r["up"]]
    detail = {"count": len(rows), "down": [f"{r['binary']} on {r['host']}" for r in down]}
    if down:
        raise _Down(f"{len(down)} of {len(rows)} {what} down: "
                    f"{', '.join(detail['down'])}", detail)
    return f"{len(rows)} {what} up", detail


def _check_network_agents(session, base):
    agents = session.get(_join(_network_base(base), "agents")).get("agents", [])
    return _down([{"binary": a.get("agent_type") or a.get("binary"), "host": a.get("host"),
                   "up": bool(a.get("alive")) or not a.get("admin_state_up", True)}
                  for a in agents], "network agents")


def _check_volume_services(session, base):
    services = session.get(_join(base, "os-services")).get("services", [])
    if not services:
        raise _CheckFailed("cinder lists no volume services")
    return _down([{"binary": s.get("binary"), "host": s.get("host"),
                   "up": s.get("state") == "up" or s.get("status") == "disabled"}
                  for s in services], "volume services")


def _check_volumes(session, base):
    params = {"limit": LIST_LIMIT}
    if session.conf["all_tenants"]:
        params["all_tenants"] = "True"
    volumes = session.get(_join(base, "volumes"), params=params).get("volumes", [])
    return f"{len(volumes)} volumes", {"count": len(volumes)}


def _check_placement(session, base):
    versions = session.get(base).get("versions") or []
    found = [v.get("max_version") for v in versions if v.get("max_version")]
    return (f"placement API {found[0]}" if found else "placement answers"), {"versions": found}


_RUNNERS = {name: globals()[f"_check_{name}"] for name in CHECKS}


def _run_check(session, name):
    started = time.monotonic()
    result = {"result": "fail", "latency": 0.0, "reason": ""}
    try:
        found = session.endpoint(SERVICE_TYPES[name])
        if found is None and name not in ("services", "endpoints"):
            result.update(result="skip", reason=f"no {'/'.join(SERVICE_TYPES[name])} service "
                                                "in the catalog")
            return result
        reason, detail = _RUNNERS[name](session, found[1] if found else None)
        result.update(result="pass", reason=reason, detail=detail)
    except _Down as exc:
        result["reason"] = str(exc.args[0])
        result["detail"] = exc.args[1]
        if not session.conf["liveness"]:  # a copy of a cloud: its services run elsewhere
            result.update(result="pass", reason=f"{exc.args[0]} (not required: liveness off)")
    except _CheckFailed as exc:
        result["reason"] = str(exc.args[0])
        if len(exc.args) > 1:
            result["detail"] = exc.args[1]
    except Exception as exc:  # a check must report, not crash the whole verification
        log.debug("openstack_verify: check %s crashed", name, exc_info=True)
        result["reason"] = f"unexpected {type(exc).__name__} in check {name}"
    finally:
        result["latency"] = round(time.monotonic() - started, 4)
    return result


def _only_at(session, address):
    """With ``address`` (a rehearsal's throwaway controller), every endpoint of the catalog
    must be on it: a check must never reach production through a catalog left as it was."""
    if not address:
        return
    elsewhere = sorted({f"{service.get('type')} at {host}"
                        for service in session.catalog
                        for endpoint in service.get("endpoints") or []
                        for host in [leapfrog_keystone.host_of(endpoint.get("url"))]
                        if host != address})
    if elsewhere:
        raise _CheckFailed(
            f"the catalog sends {', '.join(elsewhere)}, not to {address}: rewrite the clone's "
            "catalog first (clone_rehome.catalog); no check was run")


def _verify(conf):
    started = time.monotonic()
    session = _session(conf)
    report = {"healthy": False, "auth_url": conf["auth_url"], "user": conf["username"],
              "project": conf["project_name"], "checks": {}}
    try:
        auth_started = time.monotonic()
        try:
            session.authenticate()
            _only_at(session, conf.get("address"))
            report["auth"] = {"result": "pass", "reason": "token issued",
                              "latency": round(time.monotonic() - auth_started, 4),
                              "catalog": sorted({s.get("type") for s in session.catalog})}
        except _CheckFailed as exc:
            report["auth"] = {"result": "fail", "reason": str(exc),
                              "latency": round(time.monotonic() - auth_started, 4)}
            for name in conf["checks"]:
                report["checks"][name] = {"result": "fail", "latency": 0.0,
                                          "reason": "not run: keystone authentication failed"}
        else:
            for name in conf["checks"]:
                report["checks"][name] = _run_check(session, name)
    finally:
        session.close()
    results = report["checks"]
    report["passed"] = [n for n in conf["checks"] if results[n]["result"] == "pass"]
    report["failed"] = [n for n in conf["checks"] if results[n]["result"] == "fail"]
    report["skipped"] = [n for n in conf["checks"] if results[n]["result"] == "skip"]
    report["healthy"] = report["auth"]["result"] == "pass" and not report["failed"]
    report["seconds"] = round(time.monotonic() - started, 3)
    report["summary"] = _summary_line(report)
    return report


def _summary_line(report):
    if report["auth"]["result"] != "pass":
        return f"unhealthy: {report['auth']['reason']}"
    if not report["failed"]:
        skipped = f", {len(report['skipped'])} skipped" if report["skipped"] else ""
        return f"healthy: {len(report['passed'])} checks passed{skipped}"
    reasons = "; ".join(f"{n}: {report['checks'][n]['reason']}" for n in report["failed"])
    return f"unhealthy: {reasons}"


def _set_retcode(healthy):
    """An unhealthy cloud fails the job (salt-call exit code, orchestration step)."""
    if healthy:
        return
    try:
        __context__["retcode"] = 1  # a loader context object, not a plain dict, under Salt
    except NameError:  # imported outside Salt's loader
        pass


# -- public functions --------------------------------------------------------------------------

def check(checks=None, auth_url=None, username=None, password=None, project_name=None,
          user_domain_name=None, project_domain_name=None, region_name=None, interface=None,
          timeout=None, verify_tls=None, all_tenants=None, address=None, liveness=None):
    """
    Authenticate against keystone and run the API checks; return a report::

        {"healthy": bool, "summary": "...", "auth": {"result", "latency", "reason"},
         "checks": {name: {"result": "pass"|"fail"|"skip", "latency": s, "reason": "..."}},
         "passed": [...], "failed": [...], "skipped": [...]}

    ``checks`` (list or comma-separated; default pillar ``leapfrog:verify:checks`` or all):
    services, endpoints, images, flavors, compute_services, hypervisors, servers, networks,
    network_agents, volumes, volume_services, placement. A service missing from the catalog is skipped. The credentials come
    from the pillar ``leapfrog:verify`` (arguments override it); the password and the token
    are never logged or returned. An unhealthy cloud sets the job's retcode to 1.
    ``address`` (a rehearsal's throwaway controller): keystone asked on that host (the
    auth URL's port and path kept), and every endpoint of its catalog must be on it, else
    no check runs. ``liveness=False`` (clones of a cloud, whose services run elsewhere):
    compute services, hypervisors, network agents and volume services must be listed, not
    up.

    CLI Example:

    .. code-block:: bash

        salt ctl01 openstack_verify.check
        salt ctl01 openstack_verify.check checks=compute_services,hypervisors
        salt ctl01 openstack_verify.check address=10.0.0.41 liveness=False
    """
    conf = _settings({
        "checks": checks, "auth_url": auth_url, "username": username, "password": password,
        "project_name": project_name, "user_domain_name": user_domain_name,
        "project_domain_name": project_domain_name, "region_name": region_name,
        "interface": interface, "timeout": timeout, "verify_tls": verify_tls,
        "all_tenants": all_tenants, "address": address, "liveness": liveness,
    })
    report = _verify(conf)
    _set_retcode(report["healthy"])
    return report


def wait(timeout=300, interval=5, checks=None, **kwargs):
    """
    Run ``check`` until the cloud is healthy or ``timeout`` seconds have passed (used after
    a restart). Returns the healthy report with ``attempts`` and ``waited``; raises an error
    with the last failing reasons on timeout. Takes the same arguments as ``check``, except
    that the per-request timeout is called ``timeout_request`` here.

    CLI Example:

    .. code-block:: bash

        salt ctl01 openstack_verify.wait timeout=600 interval=10
    """
    kwargs = {k: v for k, v in kwargs.items() if not k.startswith("__")}
    unknown = set(kwargs) - AUTH_ARGS - {"timeout_request", "all_tenants", "address",
                                         "liveness"}
    if unknown:
        raise VerifyError(f"openstack_verify.wait: unknown argument(s) {', '.join(sorted(unknown))}")
    if "timeout_request" in kwargs:
        kwargs["timeout"] = kwargs.pop("timeout_request")
    limit = leapfrog_parse.seconds(timeout, "timeout", error=VerifyError)
    pause = max(leapfrog_parse.seconds(interval, "interval", error=VerifyError), 0.1)
    conf = _settings(dict(kwargs, checks=checks))
    started = time.monotonic()
    attempts = 0
    while True:
        attempts += 1
        report = _verify(conf)
        waited = round(time.monotonic() - started, 3)
        if report["healthy"]:
            report.update(attempts=attempts, waited=waited)
            return report
        if waited + pause > limit:
            _set_retcode(False)
            raise VerifyError(
                f"OpenStack APIs not healthy after {waited:.0f}s ({attempts} attempt(s)): "
                f"{report['summary'].split(': ', 1)[-1]}")
        log.info("openstack_verify.wait: attempt %d %s", attempts, report["summary"])
        time.sleep(pause)


def provision(kinds=None, image=None, flavor=None, network=None, host=None, timeout=120,
              address=None, **kwargs):
    """
    Create and delete what users create, once each (``leapfrog_provision``'s cycles): a
    network with a subnet and a port, a 1 GiB volume (until available), a server from
    ``image`` and ``flavor`` (on ``network``, else without a NIC; on compute ``host`` when
    given) until ACTIVE, then deleted and gone. ``kinds``: server, network, volume (default
    all); a kind whose service is not in the catalog is skipped. ``address``: as ``check``
    (every catalog endpoint on it, else nothing is created). Returns each kind's result,
    seconds and reason; a failed kind raises an error naming it and what the API answered.
    Credentials as ``check``'s (pillar ``leapfrog:verify``).

    CLI Example:

    .. code-block:: bash

        salt ctl01 openstack_verify.provision kinds=server image=cirros flavor=m1.tiny
        salt ctl01 openstack_verify.provision address=10.0.0.41 host=upg01 image=cirros flavor=m1.tiny
    """
    auth = {k: v for k, v in kwargs.items() if not k.startswith("__")}
    unknown = set(auth) - AUTH_ARGS
    if unknown:
        raise VerifyError(f"openstack_verify.provision: unknown argument(s) "
                          f"{', '.join(sorted(unknown))}")
    wanted = _chosen(kinds, leapfrog_provision.KINDS, "provisioning kind")
    if "server" in wanted and not (image and flavor):
        raise VerifyError("provision: a server needs image= and flavor= (names in the cloud)")
    conf = _settings(dict(auth, address=address))
    conf.update(image=image, flavor=flavor, network=network, host=host,
                timeout=leapfrog_parse.seconds(timeout, "timeout", error=VerifyError))
    with _session(conf) as session:  # the catalog checked before anything is created
        try:
            session.authenticate()
            _only_at(session, conf.get("address"))
        except _CheckFailed as exc:
            _set_retcode(False)
            raise VerifyError(f"provision: {exc.args[0]}") from None
    results = leapfrog_provision.once(conf, wanted)
    failed = [k for k, r in results.items() if r["result"] == "fail"]
    if failed:
        _set_retcode(False)
        raise VerifyError("provision failed: " + "; ".join(
            f"{k}: {results[k]['reason']}" for k in failed))
    return {"auth_url": conf["auth_url"], "kinds": results,
            "passed": [k for k, r in results.items() if r["result"] == "pass"],
            "skipped": [k for k, r in results.items() if r["result"] == "skip"]}


def catalog(auth_url=None, username=None, password=None, project_name=None,
            user_domain_name=None, project_domain_name=None, interface=None, timeout=None,
            verify_tls=None):
    """
    Return the service catalog keystone gives these credentials (type -> endpoint URLs of
    every interface), without the token.

    CLI Example:

    .. code-block:: bash

        salt ctl01 openstack_verify.catalog
    """
    conf = _settings({
        "auth_url": auth_url, "username": username, "password": password,
        "project_name": project_name, "user_domain_name": user_domain_name,
        "project_domain_name": project_domain_name, "interface": interface,
        "timeout": timeout, "verify_tls": verify_tls,
    })
    session = _session(conf)
    try:
        try:
            session.authenticate()
        except _CheckFailed as exc:
            raise VerifyError(str(exc))
        out = {}
        for service in session.catalog:
            entry = out.setdefault(service.get("type"), {})
            for endpoint in service.get("endpoints") or []:
                entry[f"{endpoint.get('region_id') or endpoint.get('region')}/"
                      f"{endpoint.get('interface')}"] = endpoint.get("url")
        return out
    finally:
        session.close()
