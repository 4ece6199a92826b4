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
