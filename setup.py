"""leapfrog: Salt extension modules and orchestrations that upgrade OpenStack clouds.

``pip install .`` ships the same ``_modules``/``_states``/``_runners`` folders that
``saltutil.sync_all`` serves from file_roots, and registers them with Salt's loader
through the ``salt.loader`` entry points. The shared helpers in ``_utils`` are installed
as top-level modules (``leapfrog_*``) so both install modes import them the same way.
"""
import os

from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))
UTILS = sorted(
    name[:-3]
    for name in os.listdir(os.path.join(HERE, "_utils"))
    if name.startswith("leapfrog_") and name.endswith(".py")
)

setup(
    name="leapfrog",
    version="0.1.0",
    description="Skip-level OpenStack upgrades driven by Salt orchestration",
    python_requires=">=3.10",
    packages=[
        "leapfrog_ext",
        "leapfrog_ext.modules",
        "leapfrog_ext.states",
        "leapfrog_ext.runners",
        "leapfrog_ext.orch",
    ],
    package_dir={
        "": "_utils",
        "leapfrog_ext": "leapfrog_ext",
        "leapfrog_ext.modules": "_modules",
        "leapfrog_ext.states": "_states",
        "leapfrog_ext.runners": "_runners",
        "leapfrog_ext.orch": "orch",
    },
    package_data={"leapfrog_ext.orch": ["*.sls"]},
    py_modules=UTILS,
    install_requires=[
        "salt>=3007,<3009",
        "PyYAML",
        "PyMySQL",
        "requests",
    ],
    entry_points={
        "salt.loader": [
            "module_dirs = leapfrog_ext:module_dirs",
            "states_dirs = leapfrog_ext:states_dirs",
            "runner_dirs = leapfrog_ext:runner_dirs",
        ]
    },
)
