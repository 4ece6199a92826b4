"""Write the lab's run-time pillar (lab/pillar/runtime.sls reads it): values the starters
only know once they run — sockets, ports, generated passwords, venv paths.

Files are ``<run_dir>/pillar/all.json`` (every node) and ``<run_dir>/pillar/<id>.json``,
mode 0600: they hold secrets, as a pillar backend would.
"""
import json
import os


def path(run_dir, name):
    return os.path.join(run_dir, "pillar", f"{name}.json")


def read(run_dir, name):
    try:
        with open(path(run_dir, name)) as handle:
            return json.load(handle)
    except FileNotFoundError:
        return {}


def _merge(base, extra):
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) \
            if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def update(run_dir, name, data):
    """Deep-merge ``data`` into ``<run_dir>/pillar/<name>.json`` (``all`` = every node)."""
    merged = _merge(read(run_dir, name), data)
    target = path(run_dir, name)
    os.makedirs(os.path.dirname(target), mode=0o700, exist_ok=True)
    tmp = target + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(merged, handle, indent=1)
    os.replace(tmp, target)
    return merged


def write_shape(run_dir, shape):
    """``<run_dir>/pillar/cluster.json``: what the running lab cloud is made of (no secret:
    its extra services), read by lab/pillar/leapfrog/lab.sls."""
    target = os.path.join(run_dir, "pillar", "cluster.json")
    os.makedirs(os.path.dirname(target), mode=0o700, exist_ok=True)
    with open(target + ".tmp", "w") as handle:
        json.dump(shape, handle)
    os.replace(target + ".tmp", target)
