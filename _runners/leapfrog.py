"""The leapfrog runner: cluster-wide views and stages, run on the salt-master.

Every function takes ``cluster`` (optional when the master's pillar defines one cluster)
and ``pillar`` overrides, reads ``leapfrog:clusters:<cluster>`` from the master's pillar
and validates it. A failure sets ``__context__["retcode"] = 1`` so ``salt-run`` exits
non-zero and an orchestration stops at that step.
"""
import logging

import salt.client
import salt.utils.minions

import leapfrog_cluster
import leapfrog_errors
import leapfrog_schema

log = logging.getLogger(__name__)

__virtualname__ = "leapfrog"


def __virtual__():
    return __virtualname__


def _fail(result):
    """Mark the call failed: the retcode in __context__ stops an orchestration, the one in
    the return makes ``salt-run`` exit non-zero."""
    __context__["retcode"] = 1
    return {**result, "retcode": 1}


def _load(cluster, pillar):
    return leapfrog_cluster.load(__opts__, cluster, pillar)


def validate(cluster=None, pillar=None):
    """
    Check the cluster's pillar against leapfrog's schema and list every problem found.

    CLI Example:

    .. code-block:: bash

        salt-run leapfrog.validate cluster=prod1
    """
    try:
        name, config = _load(cluster, pillar)
    except leapfrog_errors.PillarInvalid as exc:
        return _fail({"cluster": cluster, "valid": False, "problems": exc.problems,
                      "example": leapfrog_schema.EXAMPLE})
    except leapfrog_errors.LeapfrogError as exc:
        return _fail({"cluster": cluster, "valid": False, "problems": [str(exc)]})
    releases = config["releases"]
    return {
        "cluster": name,
        "valid": True,
        "path": " -> ".join(releases["path"]),
        "strategy": releases["strategy"],
        "roles": config["roles"],
    }


def _expected_minions(target):
    found = salt.utils.minions.CkMinions(__opts__).check_minions(target, tgt_type="compound")
    return sorted(found.get("minions", []))


def _ask(target, timeout):
    client = salt.client.get_local_client(__opts__["conf_file"])
    return client.cmd(target, "leapfrog.node_info", tgt_type="compound", timeout=timeout)


def inventory(cluster=None, pillar=None, timeout=10):
    """
    List the cluster's nodes by role, asking each node through its role's compound target
    (``roles`` in the cluster pillar, e.g. ``I@nova:compute``). A role that matches no
    minion, or a node that does not answer, is a problem and makes the call fail.

    CLI Example:

    .. code-block:: bash

        salt-run leapfrog.inventory cluster=prod1
    """
    try:
        name, config = _load(cluster, pillar)
    except leapfrog_errors.LeapfrogError as exc:
        problems = getattr(exc, "problems", None) or [str(exc)]
        return _fail({"cluster": cluster, "problems": problems})

    roles, problems = {}, []
    for role, target in sorted(config["roles"].items()):
        expected = _expected_minions(target)
        answers = _ask(target, timeout)
        nodes = {mid: info for mid, info in sorted(answers.items()) if isinstance(info, dict)}
        silent = sorted(set(expected) - set(nodes))
        roles[role] = {"target": target, "nodes": nodes, "not_responding": silent}
        if not expected and not nodes:
            problems.append(f"role {role}: target {target!r} matches no minion")
        for mid in silent:
            problems.append(f"role {role}: minion {mid} did not answer within {timeout} s")
    result = {"cluster": name, "roles": roles, "problems": problems}
    log.info("leapfrog inventory of %s: %d role(s), %d problem(s)", name, len(roles),
             len(problems))
    return _fail(result) if problems else result
