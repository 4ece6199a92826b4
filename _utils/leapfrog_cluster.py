"""A cluster's config, read on the master from its pillar and validated.

Runners call ``load(__opts__, cluster, overrides)``: the master's own pillar is compiled
(``leapfrog:clusters:<name>``), merged with the CLI/orchestration ``pillar=`` overrides,
and validated against ``leapfrog_schema``.
"""
import salt.pillar
import salt.utils.dictupdate

import leapfrog_errors
import leapfrog_schema


def master_pillar(opts):
    """Compile the pillar the master itself sees (its id, its saltenv)."""
    pillar = salt.pillar.get_pillar(
        opts,
        opts.get("grains", {}),
        opts["id"],
        saltenv=opts.get("saltenv"),
        pillarenv=opts.get("pillarenv"),
    )
    return pillar.compile_pillar()


def clusters(pillar):
    """Return ``leapfrog:clusters`` from ``pillar`` ({} when absent)."""
    found = (pillar.get("leapfrog") or {}).get("clusters") or {}
    if not isinstance(found, dict):
        raise leapfrog_errors.PillarInvalid(
            [f"leapfrog:clusters: expected a mapping of cluster name -> config, got "
             f"{type(found).__name__}; see {leapfrog_schema.EXAMPLE}"])
    return found


def pick(known, cluster=None):
    """Return the cluster name to use: the one asked for, or the only one defined."""
    if cluster is None:
        if len(known) == 1:
            return next(iter(known))
        names = ", ".join(sorted(known)) or "none"
        raise leapfrog_errors.ClusterUnknown(
            f"name the cluster (cluster=NAME); clusters in the master's pillar: {names}")
    if cluster not in known:
        names = ", ".join(sorted(known)) or "none"
        raise leapfrog_errors.ClusterUnknown(
            f"cluster {cluster!r} is not in the master's pillar (leapfrog:clusters); "
            f"known: {names}. Add it as shown in {leapfrog_schema.EXAMPLE}")
    return cluster


def load(opts, cluster=None, overrides=None):
    """Return ``(name, config)`` for ``cluster``, validated, with defaults filled in."""
    pillar = master_pillar(opts)
    if overrides:
        pillar = salt.utils.dictupdate.merge(pillar, overrides, strategy="recurse")
    known = clusters(pillar)
    name = pick(known, cluster)
    return name, leapfrog_schema.validate(known[name], name)
