"""Where Salt's loader finds leapfrog's modules when leapfrog is pip-installed.

Installed, the folders sit inside this package (``modules``, ``states``, ``runners``,
``orch``); in a source checkout (``pip install -e``) they are the repository's
``_modules``, ``_states``, ``_runners`` and ``orch``.
"""
import os

_HERE = os.path.dirname(os.path.abspath(__file__))
_REPO = os.path.dirname(_HERE)


def _folder(installed, checkout):
    path = os.path.join(_HERE, installed)
    if os.path.isdir(path):
        return path
    return os.path.join(_REPO, checkout)


def module_dirs():
    """Execution module folders for Salt's loader."""
    return [_folder("modules", "_modules")]


def states_dirs():
    """State module folders for Salt's loader."""
    return [_folder("states", "_states")]


def runner_dirs():
    """Runner module folders for Salt's loader."""
    return [_folder("runners", "_runners")]


def file_root():
    """A folder to add to the master's file_roots: it holds ``orch/``."""
    return os.path.dirname(_folder("orch", "orch"))
