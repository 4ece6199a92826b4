"""
The OpenStack processes running on this node and the release each one's code is from.

A release's code lives in a virtualenv (pillar ``leapfrog:releases:venvs:<release>``, or a
service's own ``leapfrog:<service>:venvs:<release>``). A process belongs to ``service``
when its program is named for the service (``neutron-server``, ``neutron-rpc-server``, a
gunicorn titled ``...neutron...``) or it runs from a known venv with the service on its
command line; its release is the venv its command line or its mapped
files (``/proc/<pid>/maps``: a retitled gunicorn keeps its libraries mapped) lie under.
What the master asks before a step only safe once no older server runs (neutron's
contract). Reads /proc only; command lines are never returned (a process name is).
"""
import os

import salt.utils.data

import leapfrog_errors
import leapfrog_recipes

__virtualname__ = "openstack_procs"


def __virtual__():
    return __virtualname__


def _pillar(key, default=None):
    return salt.utils.data.traverse_dict_and_list(__pillar__, key, default)


def _venvs(service):
    """{venv path (normalised): release} from the pillar, the service's own over the
    shared ones."""
    venvs = dict(_pillar("leapfrog:releases:venvs", {}) or {})
    venvs.update(_pillar(f"leapfrog:{service}:venvs", {}) or {})
    return {os.path.realpath(str(path)).rstrip("/") + "/": str(release)
            for release, path in venvs.items() if path}


def _read(path, mode="rb"):
    try:
        with open(path, mode) as handle:
            return handle.read()
    except OSError:  # gone meanwhile, or not ours to read
        return None


def _argv(pid):
    raw = _read(f"/proc/{pid}/cmdline")
    return [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a] if raw else []


def _name(argv):
    """The process's name: the script a venv python runs, else the program (a retitled
    process's title, as ps shows it, cut at its first blank)."""
    if argv[0].startswith("gunicorn:"):
        return argv[0]
    # a retitled process (setproctitle) shows one string: its words stand for argv
    words = argv if len(argv) > 1 else argv[0].split()
    first = os.path.basename(words[0])
    if first.startswith("python") and len(words) > 1:
        return os.path.basename(words[1])
    return first


def _release(pid, argv, venvs):
    """The release whose venv the process runs from (its argv, else its mapped files)."""
    for text in (" ".join(argv), _read(f"/proc/{pid}/maps", "r") or ""):
        for venv, release in venvs.items():
            if venv in text:
                return release
    return None


def servers(service, release=None):
    """
    List ``service``'s processes running on this node with the release of their code, and
    (given ``release``) those older than it in ``older``. A process whose code is in no
    known venv is listed with release None and counted as older (it cannot be shown to run
    the target).

    CLI Example:

    .. code-block:: bash

        salt -C 'I@neutron:server' openstack_procs.servers neutron release=2025.1
    """
    if service not in leapfrog_recipes.RECIPES:
        raise leapfrog_errors.LeapfrogError(
            f"unknown service {service!r}; known: {', '.join(leapfrog_recipes.RECIPES)}")
    venvs = _venvs(service)
    if not venvs:
        raise leapfrog_errors.LeapfrogError(
            f"no venvs known for {service}: set pillar leapfrog:releases:venvs (or "
            f"leapfrog:{service}:venvs)")
    found, me = [], os.getpid()
    for entry in sorted(os.listdir("/proc"), key=lambda e: (len(e), e)):
        if not entry.isdigit() or int(entry) == me:
            continue
        argv = _argv(entry)
        if not argv or not any(service in a for a in argv):
            continue
        name, code = _name(argv), _release(entry, argv, venvs)
        # named for the service, or run from a known venv with the service on its command
        # line (gunicorn serving it): a tool merely mentioning it is neither
        if service in name or code is not None:
            found.append({"pid": int(entry), "process": name[:80], "release": code})
    older = []
    if release is not None:
        older = [f"{p['process']} (pid {p['pid']}) at {p['release'] or 'an unknown release'}"
                 for p in found if p["release"] is None or p["release"] < str(release)]
    return {"service": service, "node": __grains__.get("id"), "servers": found,
            "releases": sorted({p["release"] for p in found if p["release"]}),
            "older": older}
