"""
State of the lab's deployment (see lab/salt/_modules/lab_openstack.py)::

    ctl01:
      lab_openstack.deployed:
        - release: "2025.1"
        - services: running     # or stopped
        - ffu: false            # nova's [workarounds] disable_compute_service_check_for_ffu
        - compute_rpc: auto     # nova's [upgrade_levels] compute (null: not set)

    ctl01_reload:
      lab_openstack.reloaded:
        - name: ctl01
        - kinds: [cinder-api, cinder-scheduler, cinder-volume]   # HUP or restart

    cmp01_venv:
      lab_openstack.venv_ready:
        - release: "2025.1"     # the release's code installed, no service touched
"""


def deployed(name, release, services="running", ffu=False, compute_rpc=None, throwaway=None):
    """This node (``name``: its minion id) at ``release`` with its services ``services``,
    nova's FFU workaround ``ffu`` and compute RPC cap ``compute_rpc``; ``throwaway``
    ({address, suffix, vhost}): a rehearsal's throwaway controller on those clones."""
    ret = {"name": name, "result": False, "changes": {}, "comment": ""}
    try:
        todo = __salt__["lab_openstack.plan"](release, services, node=name, ffu=ffu,
                                             compute_rpc=compute_rpc, throwaway=throwaway)
    except Exception as exc:  # pylint: disable=broad-except
        ret["comment"] = str(exc)
        return ret
    where = f"{name}: {todo['release']}, services {services}"
    if not todo["actions"]:
        sick = [kind for kind, info in
                __salt__["lab_openstack.status"](node=name)["services"].items()
                if services == "running" and not info["healthy"]]
        ret["result"] = not sick
        ret["comment"] = (f"{where}: not healthy: {', '.join(sick)}" if sick
                          else f"{where}: already so")
        return ret
    if __opts__["test"]:
        ret.update(result=None, changes={"actions": todo["actions"]},
                   comment=f"{where}: would " + "; ".join(todo["actions"]))
        return ret
    try:
        __salt__["lab_openstack.deploy"](release, services, node=name, ffu=ffu,
                                         compute_rpc=compute_rpc, throwaway=throwaway)
    except Exception as exc:  # pylint: disable=broad-except
        ret["comment"] = f"{where} failed: {exc}"
        return ret
    ret.update(result=True, changes={"actions": todo["actions"]},
               comment=f"{where}: " + "; ".join(todo["actions"]))
    return ret


def reloaded(name, kinds):
    """This node's running services of ``kinds`` reloaded (HUP or restart): always a change
    when one runs."""
    ret = {"name": name, "result": False, "changes": {}, "comment": ""}
    try:
        found = __salt__["lab_openstack.reload"](kinds, node=name, test=__opts__["test"])
    except Exception as exc:  # pylint: disable=broad-except
        ret["comment"] = str(exc)
        return ret
    done = ", ".join(found["reloaded"]) or "nothing running"
    if not found["reloaded"]:
        ret.update(result=True, comment=f"{name}: none of {', '.join(kinds)} runs")
    elif __opts__["test"]:
        ret.update(result=None, changes={"reload": found["reloaded"]},
                   comment=f"{name}: would reload {done}")
    else:
        ret.update(result=True, changes={"reload": found["reloaded"]},
                   comment=f"{name}: reloaded {done}")
    return ret


def venv_ready(name, release):
    """``release``'s venv built on this host (nothing else changes)."""
    ret = {"name": name, "result": False, "changes": {}, "comment": ""}
    try:
        found = __salt__["lab_openstack.venv"](release, test=__opts__["test"])
    except Exception as exc:  # pylint: disable=broad-except
        ret["comment"] = str(exc)
        return ret
    if not found["built"]:
        ret.update(result=True, comment=f"venv of {release} already in {found['path']}")
    elif __opts__["test"]:
        ret.update(result=None, changes={"venv": found["path"]},
                   comment=f"would build the venv of {release} in {found['path']}")
    else:
        ret.update(result=True, changes={"venv": found["path"]},
                   comment=f"built the venv of {release} in {found['path']}")
    return ret
