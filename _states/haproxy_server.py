"""
States of a server in haproxy: drained (in maintenance after its sessions ended) or ready.

.. code-block:: yaml

    ctl01 out of haproxy:
      haproxy_server.drained:
        - name: ctl01
        - backends: [keystone, nova_api]   # optional: every backend where it appears
        - timeout: 300                     # optional: pillar leapfrog:haproxy:drain_timeout
        - on_timeout: fail                 # or maint: force maintenance after the timeout

    ctl01 back in haproxy:
      haproxy_server.ready:
        - name: ctl01

The socket comes from ``socket:`` or the pillar key ``leapfrog:haproxy:socket``. Both states
are idempotent and ``test=True`` safe: they read the server's status first, return at once
when nothing differs, and only say what they would do under test.
"""
from salt.exceptions import CommandExecutionError

__virtualname__ = "haproxy_server"

UP_STATUSES = ("UP", "no check")


def __virtual__():
    if "haproxy_admin.drain" in __salt__:
        return __virtualname__
    return (False, "haproxy_server: the haproxy_admin execution module is not available")


def _ret(name):
    return {"name": name, "result": False, "changes": {}, "comment": ""}


def _statuses(name, backends, socket):
    found = __salt__["haproxy_admin.server_status"](name, backends=backends, socket=socket)
    return {be: record["status"] for be, record in found.items()}


def _act(ret, name, before, socket, action):
    """Run ``action()``, re-read the server's statuses and fill ``changes`` (what moved).

    Returns ``(action's return, statuses after)``, or None when the action failed or haproxy
    could not be re-read: ``ret["comment"]`` then says why.
    """
    error, out = None, None
    try:
        out = action()
    except CommandExecutionError as exc:
        error = str(exc)
    try:
        after = _statuses(name, list(before), socket)
    except CommandExecutionError as exc:
        ret["comment"] = f"{error + '; ' if error else ''}could not re-read haproxy: {exc}"
        return None
    changed = {be: status for be, status in after.items() if before.get(be) != status}
    if changed:
        ret["changes"] = {"old": {be: before[be] for be in changed}, "new": changed}
    if error:
        ret["comment"] = error
        return None
    return out, after


def drained(name, backends=None, timeout=None, poll=0.5, on_timeout="fail", socket=None):
    """
    Ensure server ``name`` is out of haproxy: drained (no session left) and in maintenance on
    every backend where it appears (or the given ``backends``).

    name
        the server's name in haproxy (e.g. ctl01)
    backends
        list of backends; default: every backend where the server appears
    timeout
        seconds to wait for its sessions to end (pillar leapfrog:haproxy:drain_timeout)
    on_timeout
        ``fail`` (default): fail and leave it in drain; ``maint``: force maintenance
    socket
        admin socket (unix path or host:port); default pillar leapfrog:haproxy:socket
    """
    ret = _ret(name)
    try:
        before = _statuses(name, backends, socket)
    except CommandExecutionError as exc:
        ret["comment"] = str(exc)
        return ret
    todo = {be: status for be, status in before.items() if not (status or "").startswith("MAINT")}
    if not todo:
        ret["result"] = True
        ret["comment"] = f"{name} is already in maintenance on {', '.join(sorted(before))}"
        return ret
    if __opts__.get("test"):
        ret["result"] = None
        ret["changes"] = {"old": todo, "new": {be: "MAINT" for be in todo}}
        ret["comment"] = (f"Would drain {name} on {', '.join(sorted(todo))} (wait for its "
                          "sessions to end) and put it in maintenance")
        return ret
    acted = _act(ret, name, before, socket, lambda: __salt__["haproxy_admin.drain"](
        name, backends=list(before), timeout=timeout, poll=poll, on_timeout=on_timeout,
        socket=socket))
    if acted is None:
        return ret
    out, after = acted
    left = {be: s for be, s in after.items() if not (s or "").startswith("MAINT")}
    if left:
        ret["comment"] = (f"{name} is still not in maintenance on "
                          f"{', '.join(f'{be} ({s})' for be, s in sorted(left.items()))}")
        return ret
    timings = ", ".join(f"{be} {info['seconds']:.1f}s" + (" (forced)" if info.get("forced") else "")
                        for be, info in sorted(out["backends"].items()) if info.get("changed"))
    ret["result"] = True
    ret["comment"] = f"Drained {name} and put it in maintenance: {timings}"
    if out.get("forced"):
        ret["warnings"] = [f"sessions were still open on {', '.join(out['forced'])} when "
                           "maintenance was forced"]
    return ret


def ready(name, backends=None, timeout=None, socket=None):
    """
    Ensure server ``name`` takes traffic again: ready and ``UP`` on every backend where it
    appears (or the given ``backends``).

    name
        the server's name in haproxy
    backends
        list of backends; default: every backend where the server appears
    timeout
        seconds to wait for UP (pillar leapfrog:haproxy:ready_timeout, default 30)
    socket
        admin socket (unix path or host:port); default pillar leapfrog:haproxy:socket
    """
    ret = _ret(name)
    try:
        before = _statuses(name, backends, socket)
    except CommandExecutionError as exc:
        ret["comment"] = str(exc)
        return ret
    todo = {be: status for be, status in before.items() if status not in UP_STATUSES}
    if not todo:
        ret["result"] = True
        ret["comment"] = f"{name} is already UP on {', '.join(sorted(before))}"
        return ret
    if __opts__.get("test"):
        ret["result"] = None
        ret["changes"] = {"old": todo, "new": {be: "UP" for be in todo}}
        ret["comment"] = f"Would set {name} ready on {', '.join(sorted(todo))} and wait for UP"
        return ret
    acted = _act(ret, name, before, socket, lambda: __salt__["haproxy_admin.ready"](
        name, backends=list(before), timeout=timeout, socket=socket))
    if acted is None:
        return ret
    _, after = acted
    down = {be: s for be, s in after.items() if s not in UP_STATUSES}
    if down:
        ret["comment"] = (f"{name} is not UP on "
                          f"{', '.join(f'{be} ({s})' for be, s in sorted(down.items()))}")
        return ret
    ret["result"] = True
    ret["comment"] = f"{name} is ready and UP on {', '.join(sorted(after))}"
    return ret
