"""The schema of a cluster's leapfrog pillar, and its validator.

A cluster lives in the master's pillar under ``leapfrog:clusters:<name>``;
``pillar_examples/cluster.sls`` shows every key. ``validate`` collects every problem (it does
not stop at the first) and returns the cluster config with defaults filled in, or raises
``PillarInvalid`` whose ``problems`` name each key, what is wrong and where the example is.
"""
import copy
import ipaddress
import re

import leapfrog_errors
import leapfrog_recipes

EXAMPLE = "pillar_examples/cluster.sls"

# OpenStack releases in order; skip-level (SLURP) hops go from one .1 release to the next.
RELEASES = ["2024.1", "2024.2", "2025.1", "2025.2", "2026.1", "2026.2"]
STRATEGIES = ["rolling", "fast_forward"]
SERVER_POLICIES = ["skip", "migrate", "force"]
ROLES = ["controller", "compute", "database", "haproxy", "hypervisor"]
DB_BACKUPS = ("auto", "logical", "physical")


def roles(config):
    """``{role: compound target}`` of the roles the cluster has: the required ones and the
    optional ones it sets (``galera``)."""
    return {role: target for role, target in config["roles"].items() if target}


def db_backup(config):
    """How a run backs up the databases: ``logical`` or ``physical`` (``database:backup``,
    ``auto`` resolved: physical on a Galera cluster)."""
    chosen = config["database"]["backup"]
    if chosen == "auto":
        return "physical" if config["roles"].get("galera") else "logical"
    return chosen
_BATCH = re.compile(r"\A([1-9][0-9]*)%?\Z")
_SUFFIX = re.compile(r"\A_[a-z0-9][a-z0-9_]{0,31}\Z")
DEFAULT_SUFFIX = "_upgrade"
_VHOST = re.compile(r"\A[A-Za-z0-9_.-]{1,64}\Z")
DEFAULT_VHOST = "leapfrog_rehearsal"
PROVISION_KINDS = ("server", "network", "volume")


class Field:
    """One pillar key: its type, whether it is required, its default and extra checks."""

    def __init__(self, kind, required=True, default=None, doc="", keys=None, items=None,
                 choices=None, check=None):
        self.kind = kind
        self.required = required
        self.default = default
        self.doc = doc
        self.keys = keys or {}
        self.items = items
        self.choices = choices
        self.check = check


def _release(value):
    if value not in RELEASES:
        return f"unknown release {value!r}; known: {', '.join(RELEASES)}"
    return None


def batch_problem(value):
    if isinstance(value, bool) or not _BATCH.match(str(value)):
        return f"expected a host count (e.g. 2) or a percentage (e.g. '25%'), got {value!r}"
    return None


def clone_suffix(suffix, databases):
    """The problem with a rehearsal's clone ``suffix`` (None when it is fine): it must be
    ``_`` and 1-32 lower-case letters, digits or ``_``, and no database of the cluster with
    the suffix may name another of its databases (``nova`` + ``_api`` is ``nova_api``: the
    rehearsal would overwrite, then drop, production)."""
    if not isinstance(suffix, str) or not _SUFFIX.match(suffix):
        return (f"suffix {suffix!r}: use '_' then 1-32 lower-case letters, digits or '_' "
                f"(default {DEFAULT_SUFFIX})")
    clash = sorted(f"{db}{suffix}" for db in databases if f"{db}{suffix}" in databases)
    if clash:
        return (f"suffix {suffix!r} would name production database(s) "
                f"{', '.join(clash)} as clones: choose another suffix (default "
                f"{DEFAULT_SUFFIX})")
    return None


def _positive(value):
    """An integer field's value (its type already checked) of 1 or more."""
    if value < 1:
        return f"expected a whole number of 1 or more, got {value!r}"
    return None


def _address(value):
    """An IP address (a host name could resolve to a production node)."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return f"expected an IP address (e.g. 10.0.0.41), got {value!r}"
    return None


def vhost_problem(value):
    """The problem with a RabbitMQ vhost name for a rehearsal (None when it is fine)."""
    if not _VHOST.match(value):
        return (f"expected 1-64 letters, digits, '_', '-' or '.' (a RabbitMQ vhost of its own, "
                f"e.g. {DEFAULT_VHOST}), got {value!r}")
    return None


def _provision_kinds(value):
    unknown = [k for k in value if k not in PROVISION_KINDS]
    if unknown:
        return (f"unknown kind(s) {', '.join(map(repr, unknown))}; known: "
                f"{', '.join(PROVISION_KINDS)}")
    return None


def _services(value):
    """Every service listed has a recipe (leapfrog_recipes), each once."""
    unknown = [s for s in value if s not in leapfrog_recipes.RECIPES]
    if unknown:
        return (f"no recipe for {', '.join(map(repr, unknown))}; known: "
                f"{', '.join(leapfrog_recipes.RECIPES)}")
    if len(set(value)) != len(value):
        return "lists a service twice"
    return None


def _path(value):
    """A path lists every release from current to target, each hop a valid upgrade."""
    bad = [r for r in value if r not in RELEASES]
    if bad:
        return f"unknown release(s) {', '.join(map(repr, bad))}; known: {', '.join(RELEASES)}"
    if len(value) < 2:
        return "needs at least two releases (the current one and the target)"
    for old, new in zip(value, value[1:]):
        step = RELEASES.index(new) - RELEASES.index(old)
        slurp = step == 2 and old.endswith(".1")
        if step != 1 and not slurp:
            return (f"hop {old} -> {new} is not an upgrade OpenStack supports "
                    "(next release, or .1 to the next .1)")
    return None


SCHEMA = {
    "releases": Field(dict, doc="where the cloud is and where it goes", keys={
        "current": Field(str, check=_release, doc="release running now"),
        "target": Field(str, check=_release, doc="release to reach"),
        "path": Field(list, items=Field(str), check=_path,
                      doc="every release from current to target, in order"),
        "strategy": Field(str, required=False, default="rolling", choices=STRATEGIES),
        "venvs": Field(dict, required=False, default={},
                       doc="release -> virtualenv prefix on the nodes"),
    }),
    "services": Field(list, required=False, default=list(leapfrog_recipes.DEFAULT_SERVICES),
                      items=Field(str), check=_services,
                      doc="the OpenStack services a run upgrades (their recipes), in order"),
    "roles": Field(dict, doc="role -> compound target (e.g. I@nova:compute)", keys={
        **{role: Field(str, doc=f"compound target of the {role} nodes") for role in ROLES},
        "galera": Field(str, required=False, default="",
                        doc="compound target of the Galera nodes (e.g. I@galera:server), "
                            "when the databases live on a Galera cluster: the precheck asks "
                            "each node (galera.precheck)"),
    }),
    "haproxy": Field(dict, keys={
        "socket": Field(str, doc="admin socket: a unix path or host:port"),
        "vip": Field(str, doc="address the API frontends listen on"),
        "timeout": Field(int, required=False, default=5),
        "drain_timeout": Field(int, required=False, default=300),
        "backends": Field(dict, required=False, default={},
                          doc="service -> its API's haproxy backend name, where it is not "
                              "the service's name (e.g. neutron: neutron_server)"),
        "probe_urls": Field(list, required=False, default=[], items=Field(str),
                            doc="API URLs on the VIP the availability probe requests during "
                                "a run (loopback only)"),
    }),
    "provision_probe": Field(dict, required=False, default={},
                             doc="users' provisioning during a run (leapfrog_provision): "
                                 "keystone credentials, image and flavor names", keys={
        "auth_url": Field(str), "username": Field(str),
        "password": Field(str, doc="read by the master only; never logged"),
        "project_name": Field(str),
        "user_domain_name": Field(str, required=False, default="Default"),
        "project_domain_name": Field(str, required=False, default="Default"),
        "region_name": Field(str, required=False, default=""),
        "image": Field(str, doc="image name the server cycle boots"),
        "flavor": Field(str, doc="flavor name the server cycle boots"),
        "network": Field(str, required=False, default="",
                         doc="network name the server cycle's server gets its NIC on (nova "
                             "creates and binds the port, as for users); empty: no NIC"),
        "kinds": Field(list, required=False, default=["network", "volume", "server"],
                       items=Field(str, choices=("network", "volume", "server"))),
        "interval": Field(int, required=False, default=2, check=_positive,
                          doc="seconds between two cycles of a kind"),
        "timeout": Field(int, required=False, default=120, check=_positive,
                         doc="seconds a volume or server may take to become ready"),
    }),
    "database": Field(dict, keys={
        "host": Field(str),
        "port": Field(int, required=False, default=3306),
        "socket": Field(str, required=False, default=""),
        "user": Field(str),
        "password": Field(str, doc="read on the database minion only; never logged"),
        "databases": Field(list, items=Field(str)),
        "backup": Field(str, required=False, default="auto", choices=DB_BACKUPS,
                        doc="how a run backs up the databases: logical (mysql_backup: a dump "
                            "of each database on the database role), physical (galera_backup: "
                            "mariadb-backup on database:galera:backup_node, taken out of the "
                            "DB frontend); auto: physical when roles:galera is set"),
        "galera": Field(dict, required=False, default={},
                        doc="where a physical backup is taken on a Galera cluster", keys={
            "backup_node": Field(str, doc="minion id of the Galera node the backup is taken "
                                          "on: a standby of the DB frontend, never the node "
                                          "taking the writes"),
            "frontend": Field(str, required=False, default="galera",
                              doc="haproxy backend of the DB frontend"),
            "server": Field(str, required=False, default="",
                            doc="the backup node's server name in that backend (default: its "
                                "minion id)"),
        }),
    }),
    "vms": Field(dict, keys={
        "image": Field(str, doc="qcow2 base image of the new OS"),
        "os": Field(dict, doc="OS grains the rebuilt VMs must report", keys={
            "os": Field(str),
            "oscodename": Field(str),
        }),
        "redeploy_sls": Field(str, doc="SLS that deploys a controller"),
        "nodes": Field(dict, doc="node id -> {hypervisor, domain}"),
        "master": Field(str, required=False, default="",
                        doc="host[:port] rebuilt minions connect to (default: the master's "
                            "interface)"),
    }),
    "rehearsal": Field(dict, required=False, default={},
                       doc="the rehearsal's throwaway controller (leapfrog.throwaway_node)",
                       keys={
        "node": Field(str, required=False, default="",
                      doc="minion id of the throwaway controller (e.g. upg01): a VM of its "
                          "own, never a production node"),
        "hypervisor": Field(str, required=False, default="",
                            doc="the hypervisor minion that runs it (default: the first node "
                                "of vms:nodes's)"),
        "like": Field(str, required=False, default="",
                      doc="the domain whose settings (CPU, memory, networks) it copies "
                          "(default: the first node of vms:nodes's domain)"),
        "address": Field(str, required=False, default="", check=_address,
                         doc="the IP address its services listen on (the clones' catalog "
                             "is rewritten to it; never the VIP); required with node"),
        "vhost": Field(str, required=False, default=DEFAULT_VHOST, check=vhost_problem,
                       doc="its RabbitMQ virtual host (the production user's, never the "
                           "cloud's own vhost): its services and the cloned cells' transport "
                           "URL use it"),
        "provision": Field(dict, required=False, default={},
                           doc="what is created and deleted on it once its checks pass",
                           keys={
            "kinds": Field(list, required=False, default=[], items=Field(str),
                           check=_provision_kinds,
                           doc="server, network, volume (default: none)"),
            "image": Field(str, required=False, default="",
                           doc="the server's image (a name in the cloud)"),
            "flavor": Field(str, required=False, default="",
                            doc="the server's flavor (a name in the cloud)"),
            "network": Field(str, required=False, default="",
                             doc="the server's network (default: no NIC)"),
        }),
    }),
    "backups": Field(dict, keys={
        "dir": Field(str),
        "keep": Field(int, required=False, default=3),
    }),
    "approval": Field(dict, required=False, default={}, keys={
        "expiry": Field(int, required=False, default=7200, doc="seconds"),
    }),
    "lock": Field(dict, required=False, default={}, keys={
        "stale_after": Field(int, required=False, default=21600,
                             doc="seconds after which a silent run's lock is taken over"),
    }),
    "testing": Field(dict, required=False, default={},
                     doc="test only: fail_at / stall_at / stall_seconds (the fault switch)"),
    "data_plane": Field(dict, keys={
        "canary": Field(str, required=False, default="",
                        doc="list, glob or compound target upgraded first"),
        "batch": Field((int, str), required=False, default=1, check=batch_problem),
        "pause": Field(int, required=False, default=30, doc="seconds between restarts"),
        "timeout": Field(int, required=False, default=600,
                         doc="seconds a compute may take to get idle, or to come back up "
                             "at the new release, before its switch fails"),
        "servers": Field(str, required=False, default="skip", choices=SERVER_POLICIES),
        "api_calls": Field(int, required=False, default=4, check=_positive,
                           doc="compute API calls a batch makes at once on the first "
                               "controller (raise it for a control plane with more "
                               "nova-api workers)"),
        "redeploy_sls": Field(str, required=False, default="",
                              doc="SLS that switches a compute to a release (pillar "
                                  "leapfrog:release, leapfrog:services)"),
        "prestage_sls": Field(str, required=False, default="",
                              doc="SLS that installs a release's code on a compute without "
                                  "touching its services (pillar leapfrog:release), applied "
                                  "on every compute before the first switch"),
    }),
}

_TYPE_NAMES = {dict: "a mapping", list: "a list", str: "a string", int: "an integer"}


def _type_name(kind):
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(_TYPE_NAMES[k] for k in kinds)


def _is(value, kind):
    if isinstance(value, bool):  # YAML "yes" is not a port number
        return False
    return isinstance(value, kind)


def _check(value, field, where, problems):
    """Validate ``value`` against ``field``; return it with defaults filled in."""
    if not _is(value, field.kind):
        problems.append(f"{where}: expected {_type_name(field.kind)}, got "
                        f"{type(value).__name__} {value!r}")
        return value
    if field.choices and value not in field.choices:
        problems.append(f"{where}: {value!r} is not one of {', '.join(field.choices)}")
    if field.check:
        reason = field.check(value)
        if reason:
            problems.append(f"{where}: {reason}")
    if field.items and isinstance(value, list):
        value = [_check(v, field.items, f"{where}[{i}]", problems) for i, v in enumerate(value)]
    if field.keys and isinstance(value, dict):
        value = _check_keys(value, field.keys, where, problems)
    return value


def _check_keys(mapping, keys, where, problems):
    out = dict(mapping)
    for name, field in keys.items():
        key = f"{where}:{name}"
        if name not in mapping or mapping[name] is None:
            if field.required:
                what = f" ({field.doc})" if field.doc else ""
                problems.append(f"{key}: missing{what}; add it as shown in {EXAMPLE}")
            else:
                out[name] = copy.deepcopy(field.default)
                # an optional section with keys of its own required (provision_probe) is
                # off when absent; one of defaults only (approval) gets them filled in
                if field.keys and not any(f.required for f in field.keys.values()):
                    out[name] = _check_keys(out[name], field.keys, key, problems)
            continue
        out[name] = _check(mapping[name], field, key, problems)
    return out


def _cross_checks(config, where, problems):
    services, database = config.get("services"), config.get("database")
    if isinstance(services, list) and isinstance(database, dict) and \
            isinstance(database.get("databases"), list):
        missing = [db for name in services if name in leapfrog_recipes.RECIPES
                   for db in leapfrog_recipes.RECIPES[name].databases
                   if db not in database["databases"]]
        if missing:
            problems.append(
                f"{where}:database:databases: lacks {', '.join(missing)}, the database(s) of "
                f"services {', '.join(services)}: a run backs up only what this lists, and "
                "upgrades every service listed; add them, or leave the service out of "
                "services")
    _backup_checks(config, where, problems)
    _rehearsal_checks(config, where, problems)
    releases = config.get("releases")
    if not isinstance(releases, dict):
        return
    path = releases.get("path")
    if isinstance(path, list) and len(path) >= 2:
        if releases.get("current") not in (None, path[0]):
            problems.append(f"{where}:releases:path: starts at {path[0]} but releases:current "
                            f"is {releases.get('current')}")
        if releases.get("target") not in (None, path[-1]):
            problems.append(f"{where}:releases:path: ends at {path[-1]} but releases:target "
                            f"is {releases.get('target')}")


def _rehearsal_checks(config, where, problems):
    """The throwaway controller is a node of its own: a production node's key and domain
    would be replaced, then discarded; its services listen on an address of their own (on
    the VIP they would answer production's clients with the clones' data)."""
    rehearsal, vms = config.get("rehearsal"), config.get("vms")
    if not isinstance(rehearsal, dict) or not rehearsal.get("node"):
        return
    node, address = rehearsal["node"], rehearsal.get("address")
    nodes = vms.get("nodes") if isinstance(vms, dict) else None
    if isinstance(nodes, dict) and node in nodes:
        problems.append(f"{where}:rehearsal:node: {node} is a production node (vms:nodes): "
                        "the throwaway controller needs a minion id of its own, e.g. upg01")
    if not address:
        problems.append(f"{where}:rehearsal:address: required with rehearsal:node: the IP "
                        f"address {node}'s services listen on (see {EXAMPLE})")
    provision = rehearsal.get("provision")
    if isinstance(provision, dict) and "server" in (provision.get("kinds") or []) and not (
            provision.get("image") and provision.get("flavor")):
        problems.append(f"{where}:rehearsal:provision: a server needs image and flavor (names "
                        "in the cloud)")
    haproxy = config.get("haproxy")
    if address and isinstance(haproxy, dict) and address == haproxy.get("vip"):
        problems.append(f"{where}:rehearsal:address: {address} is the production VIP "
                        "(haproxy:vip): give the throwaway controller an address of its own")


def _backup_checks(config, where, problems):
    """A physical backup needs a Galera cluster and the node it is taken on."""
    database, roles_ = config.get("database"), config.get("roles")
    if not (isinstance(database, dict) and isinstance(roles_, dict)
            and database.get("backup") in DB_BACKUPS):
        return
    if db_backup(config) != "physical":
        return
    if not roles_.get("galera"):
        problems.append(f"{where}:database:backup: physical needs a Galera cluster: set "
                        "roles:galera to its nodes' target, or choose logical")
    elif not (database.get("galera") or {}).get("backup_node"):
        problems.append(
            f"{where}:database:galera:backup_node: missing: a physical backup of the Galera "
            "cluster (database:backup: physical, or auto with roles:galera set) is taken on "
            "one standby node of the DB frontend; name its minion id, or set database:backup:"
            " logical")


def validate(config, cluster):
    """Validate one cluster's config; return it with defaults, or raise ``PillarInvalid``.

    ``config`` is the value of ``leapfrog:clusters:<cluster>``.
    """
    where = f"leapfrog:clusters:{cluster}"
    problems = []
    if not isinstance(config, dict):
        raise leapfrog_errors.PillarInvalid(
            [f"{where}: expected a mapping, got {type(config).__name__}; see {EXAMPLE}"])
    checked = _check_keys(config, SCHEMA, where, problems)
    _cross_checks(checked, where, problems)
    if problems:
        raise leapfrog_errors.PillarInvalid(problems)
    return checked
