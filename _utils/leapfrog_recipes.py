"""Service recipes: how each OpenStack service's database is upgraded, as data the plan
builders (``leapfrog_builders``) turn into steps. No orchestration names a service.

A recipe lists its database stages in the order they run, each in one phase:

* ``sync``: with the target release's code, after the first controller is redeployed at the
  target and before its services start (expand-type work old servers can live with:
  nova's staged sync, keystone/glance ``expand`` + ``migrate``, placement's sync);
* ``finish``: once no server of the old release runs (contract-type work and online data
  migrations to completion: nova's online migrations, keystone/glance ``contract``).
  Finish stages are a rollback's point of no return only when they destroy what the old
  release reads (``irreversible``).

Each stage names the execution function the first controller runs (through
``leapfrog.call``) and builds its kwargs from the run's context (``Context``). ``processes``
lists the service's processes per role (what the redeploy SLS stops and starts).
A cluster's pillar ``services`` lists the recipes a run applies (default: all below, in
this order). Adding a service is a recipe here plus its tests.
"""
import collections

import leapfrog_errors

# The facts a stage's kwargs are built from: the releases of the run (``path``: from the
# control plane's release to the target), the target, and whether the run fast-forwards.
Context = collections.namedtuple("Context", "path to ffu")


class Stage:
    """One database stage of a service: its step name, phase, function and kwargs."""

    def __init__(self, name, phase, function, kwargs, irreversible=False, changes=""):
        self.name, self.phase, self.function = name, phase, function
        self.kwargs, self.irreversible, self.changes = kwargs, irreversible, changes


class Recipe:
    """A service: its database stages and its processes per role."""

    def __init__(self, service, stages, processes):
        self.service, self.stages, self.processes = service, list(stages), dict(processes)

    def phase(self, phase):
        return [s for s in self.stages if s.phase == phase]


def _db_sync(service, stage):
    return lambda ctx: {"service": service, "stage": stage, "release": ctx.to}


def _openstack_db(service, sync_stages, contract):
    """keystone/glance/placement: ``openstack_db.sync`` stages with the target's code."""
    stages = [Stage(f"dbsync_{service}_{stage}", "sync", "openstack_db.sync",
                    _db_sync(service, stage), changes=f"{service} DB: {stage}")
              for stage in sync_stages]
    if contract:
        stages.append(Stage(f"finish_{service}", "finish", "openstack_db.sync",
                            _db_sync(service, "contract"), irreversible=True,
                            changes=f"{service} DB: contract (drops what the old release "
                                    "reads: going back means the backup, writes since lost)"))
    return stages


RECIPES = {
    "nova": Recipe("nova", [
        Stage("dbsync_nova", "sync", "nova_manage.staged_sync",
              lambda ctx: {"path": ctx.path, "online": ctx.ffu},
              changes="nova api/main/cell0 DBs: staged sync through every release of the "
                      "path (online migrations per hop when fast-forwarding)"),
        Stage("finish_nova", "finish", "nova_manage.online_data_migrations",
              lambda ctx: {"release": ctx.to},
              changes="nova: online data migrations to completion"),
    ], {"controller": ["nova-api", "nova-conductor", "nova-scheduler"],
        "compute": ["nova-compute"]}),
    "keystone": Recipe("keystone", _openstack_db("keystone", ["expand", "migrate"], True),
                       {"controller": ["keystone"]}),
    "glance": Recipe("glance", _openstack_db("glance", ["expand", "migrate"], True),
                     {"controller": ["glance-api"]}),
    "placement": Recipe("placement", _openstack_db("placement", ["sync"], False),
                        {"controller": ["placement-api"]}),
}
DEFAULT_SERVICES = list(RECIPES)


def recipes(services=None):
    """The recipes of ``services`` (default: every known one), in the given order."""
    names = list(services or DEFAULT_SERVICES)
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        raise leapfrog_errors.LeapfrogError(
            f"services: no recipe for {', '.join(map(repr, unknown))}; known: "
            f"{', '.join(RECIPES)}")
    return [RECIPES[n] for n in names]
