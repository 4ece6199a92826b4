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
A cluster's pillar ``services`` lists the recipes a run applies (default: nova, keystone,
glance, placement, in this order; neutron and cinder when listed). Adding a service is a
recipe here plus its tests.
"""
import collections

import leapfrog_errors

# The facts a stage's kwargs are built from: the releases of the run (``path``: from the
# control plane's release to the target), the target, and whether the run fast-forwards.
Context = collections.namedtuple("Context", "path to ffu")


class Stage:
    """One database stage of a service: its step name, phase, function and kwargs; a
    ``guard`` checked on every controller right before it."""

    def __init__(self, name, phase, function, kwargs, irreversible=False, changes="",
                 guard=None):
        self.name, self.phase, self.function = name, phase, function
        self.kwargs, self.irreversible, self.changes = kwargs, irreversible, changes
        self.guard = guard


class Guard:
    """What every controller must answer before a stage runs (step ``<stage>_guard``): the
    function, its kwargs from the run's context, the answer expected, a plan line."""

    def __init__(self, function, kwargs, expect, changes):
        self.function, self.kwargs, self.expect, self.changes = function, kwargs, expect, changes


# neutron's contract drops what older servers read: refused while one still runs anywhere
NO_OLDER_NEUTRON = Guard(
    "openstack_procs.servers", lambda ctx: {"service": "neutron", "release": ctx.to},
    {"older": []}, "nothing: no neutron server older than the target runs on any controller")


class Check:
    """A service's own check after a control-plane run (beside the operator's API checks):
    its step name, the function the first controller runs, what it must return, and a
    line for the plan."""

    def __init__(self, name, function, expect, changes):
        self.name, self.function, self.expect, self.changes = name, function, expect, changes


class NodeStep:
    """A service's step on each controller of a rolling hop, before it is drained or once
    its services run again (before haproxy sends it requests): step ``<node>_<suffix>``,
    the function the node runs, a plan line."""

    def __init__(self, suffix, function, changes, kind="gateways"):
        self.suffix, self.function, self.changes, self.kind = suffix, function, changes, kind


class Recipe:
    """A service: its database stages, its processes per role and its databases (what
    a run's backup must hold before any stage runs)."""

    def __init__(self, service, stages, processes, databases=None, version=None,
                 offline_check=False, checks=(), repin=(), before_node=(), after_node=(),
                 status_check=False, purge=None, ovsdb=False, one_release_api=False,
                 after_handover=()):
        self.service, self.stages, self.processes = service, list(stages), dict(processes)
        # its tool for the soft-deleted rows the precheck counts (the advice it gives)
        self.purge = purge
        # its state lives in OVN's NB/SB too: a run backs them up (``ovsdb_backup``) beside
        # the databases, and its rollback restores them
        self.ovsdb = bool(ovsdb)
        # in a rolling hop, its API answered by one release at a time: once the first
        # controller serves the target, the others' (older) servers leave its haproxy
        # backend until each is upgraded (what one release writes the other may not read)
        self.one_release_api = bool(one_release_api)
        self.checks = list(checks)
        # processes the redeploy SLS reloads (``leapfrog:reload``) on each controller once
        # every one runs the target: they compute their RPC version pins at start
        self.repin = list(repin)
        self.before_node, self.after_node = list(before_node), list(after_node)
        # on the first controller, once its API took over from the older servers
        # (``one_release_api``): what those may have left in the moment both answered
        self.after_handover = list(after_handover)
        # its tool says whether the target's code has migrations only stopped servers
        # survive (``openstack_db.offline_migrations``): the precheck asks
        self.offline_check = bool(offline_check)
        # its ``<service>-status upgrade check`` (``openstack_db.upgrade_check``) with the
        # target's code in the precheck: a failure stops the run, a warning is a note
        self.status_check = bool(status_check)
        self.databases = list(databases or [service])
        # (function, kwargs builder): how its DB revisions are read with a release's code
        self.version = version or ("openstack_db.version",
                                   lambda release: {"service": service, "release": release})

    def phase(self, phase):
        return [s for s in self.stages if s.phase == phase]


def _db_sync(service, stage):
    return lambda ctx: {"service": service, "stage": stage, "release": ctx.to}


def _openstack_db(service, sync_stages, contract, guard=None):
    """keystone/glance/placement/neutron: ``openstack_db.sync`` stages with the target's
    code; ``guard`` before the contract."""
    stages = [Stage(f"dbsync_{service}_{stage}", "sync", "openstack_db.sync",
                    _db_sync(service, stage), changes=f"{service} DB: {stage}")
              for stage in sync_stages]
    if contract:
        stages.append(Stage(f"finish_{service}", "finish", "openstack_db.sync",
                            _db_sync(service, "contract"), irreversible=True, guard=guard,
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
        "compute": ["nova-compute"]}, databases=["nova_api", "nova", "nova_cell0"],
        version=("nova_manage.versions", lambda release: {"release": release}),
        purge="nova-manage db archive_deleted_rows --until-complete --all-cells, then "
              "nova-manage db purge --all --all-cells"),
    "keystone": Recipe("keystone", _openstack_db("keystone", ["expand", "migrate"], True),
                       {"controller": ["keystone"]}),
    "glance": Recipe("glance", _openstack_db("glance", ["expand", "migrate"], True),
                     {"controller": ["glance-api"]},
                     purge="glance-manage db purge --age_in_days <days>"),
    "placement": Recipe("placement", _openstack_db("placement", ["sync"], False),
                        {"controller": ["placement-api"]}),
    # expand with the target's code before its first server starts (old servers live with
    # it); contract once no older neutron server runs. 2024.1 runs neutron-server (eventlet);
    # 2025.1 on, the WSGI API plus the RPC, periodic and OVN maintenance workers.
    "neutron": Recipe("neutron", _openstack_db("neutron", ["expand"], True,
                                               NO_OLDER_NEUTRON) + [
        # 2025.1+ servers read a key 2024.1 servers never write on the switches they make;
        # neutron's own one-run task missed those made during the window (a port on them
        # then fails with HTTP 500): set once no old server runs
        Stage("finish_neutron_network_types", "finish", "ovn_nb.set_network_types",
              lambda ctx: {}, changes="OVN: each network's switch given the network type "
                                      "new servers read (those old servers made lack it)")],
                      {"controller": ["neutron-server", "neutron-api", "neutron-rpc-server",
                                      "neutron-periodic-workers",
                                      "neutron-ovn-maintenance-worker"]},
                      offline_check=True, status_check=True, ovsdb=True,
                      # 2024.1 servers make switches 2025.1 servers cannot put ports on
                      one_release_api=True,
                      # 2026.1's maintenance task was seen duplicating older networks'
                      # Logical_Switch (FACTS.md): found here, named, with the fix
                      checks=[Check("ovn_consistency", "ovn_nb.consistency",
                                    {"consistent": True},
                                    "nothing: OVN's northbound DB against neutron (every "
                                    "network and router once)")],
                      # seed 000: routers off a node before it is touched, back after
                      before_node=[NodeStep("gateways_off", "ovn_nb.move_gateways",
                                            "routers' gateways active on its OVN chassis "
                                            "moved to the next chassis in priority")],
                      # before it takes requests again: its gateways back, and every
                      # switch typed (a 2025.1+ server's port on an untyped one is an
                      # HTTP 500 until its own one-run maintenance task catches up)
                      after_node=[NodeStep("gateways_back", "ovn_nb.restore_gateways",
                                           "its routers' gateways back (the priorities "
                                           "kept)"),
                                  NodeStep("network_types", "ovn_nb.set_network_types",
                                           "OVN: every network's switch given the network "
                                           "type new servers read", kind="ovn")],
                      after_handover=[NodeStep("network_types_after_handover",
                                               "ovn_nb.set_network_types",
                                               "OVN: the switches of networks old servers "
                                               "made during the handover typed", kind="ovn")]),
    # one sync (additive), then the online data migrations once every service runs the
    # target; the RPC pins follow the oldest service until then
    "cinder": Recipe("cinder", [
        Stage("dbsync_cinder", "sync", "openstack_db.sync", _db_sync("cinder", "sync"),
              changes="cinder DB: sync"),
        Stage("finish_cinder", "finish", "openstack_db.sync", _db_sync("cinder", "online"),
              changes="cinder: online data migrations to completion"),
    ], {"controller": ["cinder-api", "cinder-scheduler"], "storage": ["cinder-volume"]},
        repin=["cinder-api", "cinder-scheduler", "cinder-volume"], status_check=True,
        purge="cinder-manage db purge <days>"),
}
# a cluster without pillar ``services`` runs these (the four every cloud of the first wave
# has); neutron and cinder are listed in ``services`` by the clusters that run them
DEFAULT_SERVICES = ["nova", "keystone", "glance", "placement"]


def purge_advice(services=None):
    """{database: its service's purge tool} of the recipes of ``services`` that have one
    (what ``mysql_backup.precheck`` advises for soft-deleted rows)."""
    return {database: recipe.purge for recipe in recipes(services) if recipe.purge
            for database in recipe.databases}


def recipes(services=None):
    """The recipes of ``services`` (default: every known one), in the given order."""
    names = list(services or DEFAULT_SERVICES)
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        raise leapfrog_errors.LeapfrogError(
            f"services: no recipe for {', '.join(map(repr, unknown))}; known: "
            f"{', '.join(RECIPES)}")
    return [RECIPES[n] for n in names]
