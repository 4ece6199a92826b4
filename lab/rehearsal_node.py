"""The lab's throwaway controller: what an operator's formula deploys on a rehearsal's node
(leapfrog's redeploy SLS with pillar ``leapfrog:db_suffix``, ``transport_vhost`` and
``address``; issue 18).

The cloud's controller services and a nova-compute (the fake driver, host ``node``) on
``address``, each API on its VIP frontend's port (the
clones' catalog, rewritten by ``clone_rehome.catalog``, keeps the ports), over the clones
``<database><suffix>``, on RabbitMQ vhost ``vhost`` (made afresh at each deploy, the
cloud's user), with a keystone of its own (fresh fernet keys; the cloud's credential keys,
so the clone's encrypted credentials stay readable), a glance image store of its own (never
production's files) and, in a cloud without real neutron, the neutron stand-in on the
network frontend's port. A cloud with real neutron is refused: its neutron-server would
write production's OVN databases (an OVN of its own is not in the lab yet).

``OpenStackCloud`` keeps each throwaway's spec in cloud.json (``throwaways``): the bridge
starts and stops its services with its VM, as a controller's.

    spec = rehearsal_node.spec("127.0.1.41", "_upgrade", "leapfrog_rehearsal")
    cloud.add_throwaway("upg01", spec)       # then cloud.start_node("upg01", "2026.1")
"""
import os
import shutil
import sys

from lab.http_backend import require_loopback
from lab.neutron_stub import NeutronStub
from lab.openstack_service import OpenStackService

# the same rules for a suffix, a vhost and a URL's host as leapfrog's own
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "_utils"))
import leapfrog_keystone  # noqa: E402  pylint: disable=wrong-import-position
import leapfrog_schema  # noqa: E402  pylint: disable=wrong-import-position


class ThrowawayError(RuntimeError):
    """A throwaway controller this lab cannot deploy (the message says why)."""


def spec(address, suffix, vhost):
    """The throwaway's settings, checked: a loopback address, a clone suffix, a vhost."""
    problem = leapfrog_schema.clone_suffix(suffix, ())
    if problem:
        raise ThrowawayError(f"db_suffix: {problem}")
    problem = leapfrog_schema.vhost_problem(str(vhost or ""))
    if problem:
        raise ThrowawayError(f"transport_vhost: {problem}")
    return {"address": require_loopback(str(address)), "suffix": suffix, "vhost": vhost}


def run_dir(cloud, host):
    return os.path.join(cloud.run_dir, "throwaway", host)


def _ports(cloud):
    """service kind -> the port of the VIP frontend that serves it (None: the stand-in)."""
    return {kind: cloud.haproxy.frontend_address(name)[1]
            for name, (kind, *_rest) in cloud.frontends.items()}


def auth_url(cloud, spec_):
    """Its own keystone: the cloud's auth URL on the throwaway's address."""
    return leapfrog_keystone.with_host(cloud.auth_url, spec_["address"])


def settings(cloud, host, spec_):
    """The cloud's settings with the clones, the vhost, its keystone and its image store."""
    if cloud.with_neutron:
        raise ThrowawayError(
            f"{host}: a throwaway controller of a cloud with real neutron would write "
            "production's OVN databases; the lab has no OVN of its own for it yet")
    out = cloud.settings()
    out["db"] = {name: cloud.db_url(name, spec_["suffix"]) for name in cloud.databases}
    out["transport_url"] = cloud.rabbitmq.transport_url("/" + spec_["vhost"])
    out["auth_url"] = auth_url(cloud, spec_)
    out["image_dir"] = os.path.join(run_dir(cloud, host), "images")
    return out


def kinds(cloud):
    """A controller's services and a nova-compute of its own (a rehearsal's server boots
    there: the clones' computes report to production, not to its vhost)."""
    return (*cloud.controller_kinds, "nova-compute")


def services(cloud, host, spec_, releases):
    """``{kind: OpenStackService}`` of the throwaway, each at ``releases[kind]`` (without
    settings when the cloud was attached without its database: they cannot be written)."""
    ports = _ports(cloud)
    conf = settings(cloud, host, spec_) if cloud.mariadb is not None else None
    fallback = next(iter(releases.values()))
    return {kind: OpenStackService(kind, releases.get(kind, fallback),
                                   os.path.join(run_dir(cloud, host), kind.replace("nova-", "n")),
                                   spec_["address"], host=host, settings=conf,
                                   port=ports.get(kind))
            for kind in kinds(cloud)}


def stub(cloud, host, spec_):
    """The neutron stand-in on the network frontend's port (None: the cloud runs neutron)."""
    if cloud.frontends["neutron"][0] is not None:
        return None
    return NeutronStub(os.path.join(run_dir(cloud, host), "neutron"), spec_["address"],
                       port=_ports(cloud)[None])


def prepare(cloud, host, spec_, services_):
    """Before its services first start: its vhost made afresh (no queue of an earlier
    rehearsal), its keystone's fernet keys made, the cloud's credential keys copied."""
    cloud.rabbitmq.reset_vhost(spec_["vhost"])
    keystone = services_["keystone"]
    keystone.write_config()
    shutil.rmtree(os.path.join(keystone.run_dir, "fernet-keys"), ignore_errors=True)
    keystone.manage("fernet_setup", "--keystone-user", "root", "--keystone-group", "root")
    target = os.path.join(keystone.run_dir, "credential-keys")
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(os.path.join(cloud.controller["keystone"].run_dir, "credential-keys"),
                    target)
