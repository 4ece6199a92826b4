"""
The lab's deployment of a node's OpenStack services (the lab's stand-in for a formula).

Only in the lab: it drives lab.openstack_cloud on this host. The lab's run dir comes from
the minion option ``leapfrog_lab_dir`` (else ``$LEAPFROG_LAB_DIR``), as in
lab/pillar/lab_dir.jinja; ``<run dir>/lab.json`` names the lab's code, put on sys.path.
A controller deploys its services (six, plus neutron's and cinder's where the lab cloud
runs them), a compute its nova-compute. Database migrations are
not run here: they are the product's (nova_db states).

    salt ctl01 lab_openstack.status
    salt ctl01 lab_openstack.plan 2025.1 stopped
    salt ctl01 lab_openstack.deploy 2025.1 running
    salt cmp01 lab_openstack.venv 2025.1
"""
import json
import os
import sys

from salt.exceptions import CommandExecutionError

__virtualname__ = "lab_openstack"
STATES = ("running", "stopped")


def __virtual__():
    return __virtualname__


def _run_dir():
    return (__opts__.get("leapfrog_lab_dir")
            or os.environ.get("LEAPFROG_LAB_DIR", "/var/tmp/leapfrog-lab"))


def _lab_code():
    """The lab's run dir; its code (lab.json's repo) put on sys.path."""
    run = _run_dir()
    try:
        with open(os.path.join(run, "lab.json")) as handle:
            repo = json.load(handle)["repo"]
    except (OSError, ValueError, KeyError) as exc:
        raise CommandExecutionError(f"no lab in {run} ({exc})") from exc
    if repo not in sys.path:
        sys.path.insert(0, repo)
    return run


def _cloud():
    """(run dir, the attached lab cloud); the lab's code imported from lab.json's repo."""
    run = _lab_code()
    from lab import openstack_cloud  # pylint: disable=import-outside-toplevel

    cloud_dir = os.path.join(run, "os")
    if not os.path.exists(os.path.join(cloud_dir, "cloud.json")):
        raise CommandExecutionError(f"no lab cloud in {cloud_dir}")
    return run, openstack_cloud.OpenStackCloud.attach(cloud_dir)


def _services(cloud, node):
    try:
        return cloud.node_services(node)
    except Exception as exc:  # CloudError: not a node of this cloud
        raise CommandExecutionError(str(exc)) from exc


def status(node=None):
    """
    Each OpenStack service of this node: release, running, healthy, and what is recorded
    as deployed (release, enabled) on its disk (controllers with a VM) and in the cloud.

    CLI Example:

    .. code-block:: bash

        salt ctl01 lab_openstack.status
    """
    from lab import bridge  # pylint: disable=import-outside-toplevel,import-error

    node = node or __opts__["id"]
    run, cloud = _cloud()
    return {"node": node,
            "services": {s.kind: {"release": s.release, "running": s.running(),
                                  "healthy": s.healthy(),
                                  "config": os.path.exists(s.config_path)}
                         for s in _services(cloud, node)},
            "enabled": cloud.enabled.get(node, True),
            "disk": bridge.deployed(run, node)}


def _throwaway(cloud, node, wanted, release):
    """With ``wanted`` ({address, suffix, vhost}: the redeploy SLS's leapfrog:address,
    db_suffix, transport_vhost), ``node`` known to ``cloud`` as a rehearsal's throwaway
    controller (lab/rehearsal_node.py); returns whether its services must be prepared
    (none runs). Changes nothing on disk."""
    if not wanted:
        return False
    from lab import rehearsal_node  # pylint: disable=import-outside-toplevel,import-error

    try:
        spec = rehearsal_node.spec(**wanted)
        if cloud.throwaways.get(node) != spec:
            cloud.add_throwaway(node, spec, release)
    except Exception as exc:  # ThrowawayError, CloudError: the message says why
        raise CommandExecutionError(str(exc)) from exc
    return not any(s.running() for s in cloud.throwaway_services[node].values())


def _reconfigure(service, ffu, compute_rpc):
    """The nova service's FFU workaround or compute RPC cap differs from the one asked."""
    return service.kind.startswith("nova") and (
        service.ffu != bool(ffu) or service.compute_rpc != (compute_rpc or None))


def plan(release, services="running", node=None, ffu=False, compute_rpc=None,
         throwaway=None):
    """
    What ``deploy`` would do: ``{"node", "release", "services", "actions": [...]}``, one
    action per service that is not yet at ``release`` and ``services`` (running/stopped)
    or (nova) not yet with ``[workarounds] disable_compute_service_check_for_ffu = ffu``
    and ``[upgrade_levels] compute = compute_rpc`` (None: not set). ``throwaway``
    ({address, suffix, vhost}): the node is a rehearsal's throwaway controller on those
    clones and that vhost (lab/rehearsal_node.py).

    CLI Example:

    .. code-block:: bash

        salt ctl01 lab_openstack.plan 2025.1 stopped
        salt ctl01 lab_openstack.plan 2026.1 running ffu=True
    """
    release, node = str(release), node or __opts__["id"]
    if services not in STATES:
        raise CommandExecutionError(f"services must be one of {', '.join(STATES)}, "
                                    f"not {services!r}")
    _run, cloud = _cloud()
    from lab import network_volume  # pylint: disable=import-outside-toplevel,import-error

    actions = []
    if _throwaway(cloud, node, throwaway, release):
        actions.append(f"prepare the throwaway controller on the {throwaway['suffix']} clones "
                       f"(vhost {throwaway['vhost']} afresh, keystone keys of its own)")
    for service in _services(cloud, node):
        running, changed = service.running(), _reconfigure(service, ffu, compute_rpc)
        if running and (service.release != release or services == "stopped" or changed):
            actions.append(f"stop {service.kind} ({service.release})")
        if not network_volume.exists_at(service.kind, release):
            continue  # no such process at that release (neutron's maintenance worker)
        if service.release != release or not os.path.exists(service.config_path) or changed:
            workaround = (f", FFU workaround {'on' if ffu else 'off'}, compute RPC cap "
                          f"{compute_rpc or 'none'}") if changed else ""
            actions.append(f"configure {service.kind} for {release}{workaround}")
        if services == "running" and (service.release != release or not running or changed):
            actions.append(f"start {service.kind} at {release}")
    return {"node": node, "release": release, "services": services, "actions": actions}


def deploy(release, services="running", node=None, ffu=False, compute_rpc=None,
           throwaway=None):
    """
    Bring this node's services to ``release`` (config written from that release, its venv
    checked) and to ``services``: ``running`` (started, waited healthy) or ``stopped``;
    nova's services with ``[workarounds] disable_compute_service_check_for_ffu = ffu`` and
    ``[upgrade_levels] compute = compute_rpc``.
    Records the release and whether the services are enabled in the lab cloud's state and
    on the node's disk (the bridge starts them when the VM boots). Already there: nothing
    changes. A failure names the service and shows its log tail. ``throwaway``: see
    ``plan``.

    CLI Example:

    .. code-block:: bash

        salt ctl01 lab_openstack.deploy 2025.1 running
    """
    from lab import bridge, openstack_venv  # pylint: disable=import-outside-toplevel,import-error

    todo = plan(release, services, node, ffu, compute_rpc, throwaway)
    release, node = todo["release"], todo["node"]
    run, cloud = _cloud()
    if _throwaway(cloud, node, throwaway, release):
        from lab import rehearsal_node  # pylint: disable=import-outside-toplevel,import-error

        try:
            rehearsal_node.prepare(cloud, node, cloud.throwaways[node],
                                   cloud.throwaway_services[node])
        except Exception as exc:  # pylint: disable=broad-except
            raise CommandExecutionError(f"preparing throwaway {node}: {exc}") from exc
    targets = _services(cloud, node)
    changed = [s for s in targets if _reconfigure(s, ffu, compute_rpc)]
    try:
        openstack_venv.ensure(release)
    except Exception as exc:  # pylint: disable=broad-except
        raise CommandExecutionError(f"venv of {release}: {exc}") from exc
    enabled = services == "running"
    stop = [s for s in targets
            if s.running() and (s.release != release or not enabled or s in changed)]
    if stop:
        cloud.stop_node(node, services=stop)
    for service in targets:
        if service in changed:
            service.set_nova_options(ffu, compute_rpc)
        if (service.release != release or not os.path.exists(service.config_path)
                or service in changed):
            service.release, service.venv = release, None
            service.write_config()
    cloud.enabled[node] = enabled
    try:
        if enabled:
            cloud.start_node(node, release=release)
        else:
            cloud.save(hosts=[node])
    except Exception as exc:  # ServiceError: names the service, its log tail
        raise CommandExecutionError(str(exc)) from exc
    finally:
        bridge.record_deployed(run, node, release, enabled)
    return {**todo, "status": status(node)}


def reload(kinds, node=None, test=False):
    """
    Reload this node's running services of ``kinds`` (a list or comma-separated): an API
    under gunicorn gets HUP, a daemon is restarted; they re-read what they compute at start
    (cinder's RPC version pins, once every cinder service runs the new release). Returns
    ``{"node", "reloaded": [...]}`` (with ``test``: what would be).

    CLI Example:

    .. code-block:: bash

        salt ctl01 lab_openstack.reload cinder-api,cinder-scheduler,cinder-volume
    """
    node = node or __opts__["id"]
    if isinstance(kinds, str):
        kinds = [k.strip() for k in kinds.split(",") if k.strip()]
    if not isinstance(kinds, list) or not all(isinstance(k, str) for k in kinds):
        raise CommandExecutionError(f"kinds must be a list of service kinds, not {kinds!r}")
    _run, cloud = _cloud()
    targets = [s for s in _services(cloud, node) if s.kind in kinds and s.running()]
    if not test:
        for service in targets:
            try:
                service.reload()
            except Exception as exc:  # ServiceError: names the service, its log tail
                raise CommandExecutionError(str(exc)) from exc
        cloud.save(hosts=[node])
    return {"node": node, "reloaded": [s.kind for s in targets]}


def venv(release, test=False):
    """
    Make ``release``'s venv ready on this host (built from its constraints unless current)
    without touching a service: the lab's "packages installed ahead". Returns ``{"release",
    "path", "built"}`` (``built``: it was missing or stale; with ``test``, it would be).

    CLI Example:

    .. code-block:: bash

        salt cmp01 lab_openstack.venv 2025.1
    """
    _lab_code()
    from lab import openstack_venv  # pylint: disable=import-outside-toplevel,import-error

    release = str(release)
    try:
        built = not openstack_venv.is_current(release)
        if built and not test:
            openstack_venv.ensure(release)
    except Exception as exc:  # pylint: disable=broad-except
        raise CommandExecutionError(f"venv of {release}: {exc}") from exc
    return {"release": release, "path": openstack_venv.venv_path(release), "built": built}
