"""Load one of leapfrog's loader modules by path, under a unique import name.

``_modules/leapfrog.py`` and ``_runners/leapfrog.py`` share a name, as Salt allows; tests
import them as ``modules_leapfrog`` and ``runners_leapfrog``.
"""
import importlib.util
import os
import sys

from tests.conftest import REPO


def load(kind, name):
    """Import ``<repo>/_<kind>/<name>.py`` as ``<kind>_<name>`` and return the module."""
    path = os.path.join(REPO, f"_{kind}", f"{name}.py")
    modname = f"{kind}_{name}"
    spec = importlib.util.spec_from_file_location(modname, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[modname] = module
    spec.loader.exec_module(module)
    return module


def minion_modules(cachedir, pillar, names):
    """This repository's execution modules ``names`` (plus cmd, pillar and config) through
    Salt's real loader, as a minion with ``pillar`` and id ctl01 loads them."""
    import salt.config  # pylint: disable=import-outside-toplevel
    import salt.loader  # pylint: disable=import-outside-toplevel

    opts = salt.config.minion_config(None)
    opts.update({
        "file_client": "local", "cachedir": str(cachedir), "id": "ctl01",
        "module_dirs": [os.path.join(REPO, "_modules")],
        "utils_dirs": [os.path.join(REPO, "_utils")],
        "pillar": pillar,
    })
    return salt.loader.minion_mods(opts, whitelist=["cmd", "pillar", "config", *names])
