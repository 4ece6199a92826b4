"""Master side of a rehearsal's throwaway controller (issue 18): a VM of its own, made like
a production controller from the new OS image, whose minion comes in with a pre-accepted
key as a rebuilt node's does, and which is discarded (domain, disk, seed, key) at the end
of the rehearsal, also after a failure.

Pillar ``rehearsal``: ``node`` (its minion id, never a node of ``vms:nodes``), ``hypervisor``
and ``like`` (default: the first node of ``vms:nodes``'s hypervisor and domain). What
leapfrog made is recorded in ``<cachedir>/leapfrog/throwaway/<node>.json`` (the run, the
hypervisor): a key is generated only for a minion id that has none or whose key leapfrog
made for this same run, and ``discard`` removes only what that record names, for its run.
"""
import json
import os
import time

import leapfrog_errors
import leapfrog_rebuild


def target(config):
    """node, hypervisor, domain, like, image and expected OS of the throwaway controller."""
    rehearsal, vms = config.get("rehearsal") or {}, config["vms"]
    node, nodes = rehearsal.get("node"), vms.get("nodes") or {}
    if not node:
        raise leapfrog_errors.LeapfrogError(
            "pillar rehearsal:node is not set: name the throwaway controller's minion id "
            "(e.g. upg01)")
    if node in nodes:
        raise leapfrog_errors.LeapfrogError(
            f"rehearsal:node {node} is a production node (vms:nodes): name a minion id of "
            "its own, e.g. upg01; nothing was changed")
    if not nodes:
        raise leapfrog_errors.LeapfrogError("vms:nodes is empty: no controller to copy")
    first, entry = next(iter(nodes.items()))
    return {"node": node, "domain": node,
            "hypervisor": rehearsal.get("hypervisor") or entry["hypervisor"],
            "like": rehearsal.get("like") or entry.get("domain") or first,
            "image": vms["image"],
            "os": {k: str(v) for k, v in (vms.get("os") or {}).items()}}


def _record_path(opts, node):
    return os.path.join(opts["cachedir"], "leapfrog", "throwaway", f"{node}.json")


def _record(opts, node):
    """What leapfrog made for ``node`` ({run, hypervisor, domain}; {}: nothing)."""
    try:
        with open(_record_path(opts, node)) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return {}


def made_for(opts, node):
    """The run leapfrog made ``node``'s throwaway key and VM for (None: it made none)."""
    return _record(opts, node).get("run")


def _refuse_foreign_key(opts, wheel, node, run):
    owner = made_for(opts, node)
    if leapfrog_rebuild.key_of(wheel, node) and owner != run:
        why = (f"leapfrog made it for rehearsal run {owner}: discard that first "
               f"(salt-run leapfrog.discard_node run={owner})" if owner else
               "leapfrog did not make it: it is another minion's (choose another "
               "rehearsal:node) or a leftover (salt-key -d " + node + ")")
        raise leapfrog_errors.LeapfrogError(
            f"minion id {node} has an accepted key: {why}; nothing was changed")


def make(opts, config, run, local, wheel, event, timeout=300):
    """Make run ``run``'s throwaway controller and wait until its minion answers with the
    expected OS; returns its summary (never a key) or raises RebuildFailed."""
    plan = target(config)
    node, hyp = plan["node"], plan["hypervisor"]
    started = time.monotonic()
    deadline, phases, step = started + float(timeout), {}, "check"
    try:
        master = leapfrog_rebuild.master_address(opts, config["vms"])
        _refuse_foreign_key(opts, wheel, node, run)
        hyp_pub = leapfrog_rebuild.key_of(wheel, hyp)
        if not hyp_pub:
            raise leapfrog_errors.LeapfrogError(f"no accepted key for hypervisor {hyp}")
        step = "key"
        path = _record_path(opts, node)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as handle:  # before the key: a teardown finds what to remove
            json.dump({"run": run, "hypervisor": hyp, "domain": plan["domain"]}, handle)
        pair = leapfrog_rebuild.wheel_fun(wheel, "key.gen_accept")(id_=node, force=True)
        if not pair or "pub" not in pair or "priv" not in pair:
            raise leapfrog_errors.LeapfrogError(f"key.gen_accept gave no key pair for {node}")
        new_pub, sealed = pair["pub"], leapfrog_rebuild.seal(pair.pop("priv"), hyp_pub)
        del pair
        step, now = "throwaway", time.monotonic()
        made = leapfrog_rebuild.call_minion(
            local, hyp, "vm_backup.throwaway", max(5, int(deadline - time.monotonic())),
            kwarg={"node": node, "image": plan["image"], "like": plan["like"], "run": run,
                   "minion_pub": new_pub, "minion_pem": sealed, "master": master,
                   "os_release": plan["os"].get("oscodename"), "grains": plan["os"]})
        del sealed
        phases[step] = round(time.monotonic() - now, 2)
        new, seed = leapfrog_rebuild.await_minion(
            local, event, hyp, node, plan["domain"], (made.get("seed") or {}).get("path"),
            plan["os"], deadline, timeout, phases)
    except leapfrog_rebuild.MinionFailed as exc:
        raise leapfrog_rebuild.RebuildFailed(
            f"throwaway {node} failed at {exc.step}: {exc}", phases, exc.step) from None
    except leapfrog_errors.LeapfrogError as exc:
        raise leapfrog_rebuild.RebuildFailed(
            f"throwaway {node} failed at {step}: {exc}", phases, step) from None
    return {"node": node, "run": run, "hypervisor": hyp, "like": plan["like"],
            "image": plan["image"], "master": master,
            "new": {"os": new.get("os"), "oscodename": new.get("oscodename")},
            "key": {"finger": leapfrog_rebuild.finger(new_pub)}, "disk": made.get("disk"),
            "seed": seed, "phases": phases, "seconds": round(time.monotonic() - started, 2)}


def discard(opts, config, run, local, wheel, event=None):  # pylint: disable=unused-argument
    """Remove run ``run``'s throwaway controller: its domain and files on the hypervisor
    (``vm_backup.discard``, which refuses any other domain), its key, the record. Refused,
    changing nothing, when leapfrog's record names another run or there is none while a
    key is accepted for the id; nothing to do when neither exists (a re-run)."""
    node = target(config)["node"]
    record = _record(opts, node)
    owner = record.get("run")
    if owner is None:
        _refuse_foreign_key(opts, wheel, node, run)
        return {"node": node, "run": run, "discarded": False, "key_deleted": False}
    if owner != run:
        raise leapfrog_errors.LeapfrogError(
            f"the throwaway {node} was made for rehearsal run {owner}, not {run}: discard it "
            f"with run={owner}; nothing was changed")
    gone = leapfrog_rebuild.call_minion(local, record["hypervisor"], "vm_backup.discard", 120,
                                        arg=[node, run])
    key = bool(leapfrog_rebuild.key_of(wheel, node))
    if key:
        leapfrog_rebuild.wheel_fun(wheel, "key.delete")(node)
    os.unlink(_record_path(opts, node))
    return {"node": node, "run": run, "discarded": gone.get("discarded"),
            "removed": gone.get("removed"), "key_deleted": key}
