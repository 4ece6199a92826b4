"""Install mode (b): ``pip install .`` into a clean venv registers leapfrog's folders with
Salt's loader through the ``salt.loader`` entry points; no file_roots, no sync."""
import json
import os
import shutil
import subprocess
import textwrap

import pytest
import yaml

from tests.conftest import REPO

CACHE = os.environ.get("LEAPFROG_CACHE", "/var/cache/leapfrog")


def uv():
    found = os.environ.get("LEAPFROG_UV") or shutil.which("uv")
    if not found:
        pytest.fail("uv not found: run the tests through ./dev test (it installs uv)")
    return found


def sh(*argv, **kwargs):
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, **kwargs)
    assert proc.returncode == 0, f"{argv} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A clean venv with leapfrog pip-installed from a copy of the source tree."""
    base = tmp_path_factory.mktemp("pip")
    source = base / "src"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".git", "__pycache__", "build",
                                                                "*.egg-info"))
    venv = base / "venv"
    scratch = base / "tmp"  # uv's build locks go here, not in /tmp
    scratch.mkdir()
    env = {**os.environ, "UV_CACHE_DIR": os.path.join(CACHE, "uv"), "UV_LINK_MODE": "copy",
           "TMPDIR": str(scratch)}
    sh(uv(), "venv", "-q", "-p", "python3", str(venv), env=env)
    sh(uv(), "pip", "install", "-q", "-p", str(venv / "bin" / "python"),
       "-c", os.path.join(REPO, "requirements", "constraints.txt"), str(source), env=env)
    shutil.rmtree(source)
    return base, venv


def write_config(base, name, config):
    # salt-run without a running master: create the job cache folder it writes to
    if "cachedir" in config:
        os.makedirs(os.path.join(config["cachedir"], "proc"), exist_ok=True)
    confdir = base / f"conf-{name}"
    confdir.mkdir(exist_ok=True)
    name = name.split("-")[0]
    (confdir / name).write_text(yaml.safe_dump(config))
    return confdir


def test_salt_call_lists_and_runs_the_modules(installed):
    base, venv = installed
    confdir = write_config(base, "minion", {
        "root_dir": str(base / "minion-root"), "file_client": "local", "id": "cmp01",
        "pillar": {"nova": {"compute": {"version": "2024.1"}}},
    })
    out = sh(str(venv / "bin" / "salt-call"), "--local", "-c", str(confdir), "--out=json",
             "sys.list_modules")
    modules = json.loads(out)["local"]
    assert "leapfrog" in modules
    out = sh(str(venv / "bin" / "salt-call"), "--local", "-c", str(confdir), "--out=json",
             "leapfrog.node_info")
    assert json.loads(out)["local"]["release"] == "2024.1"


def test_salt_run_shows_the_runner(installed):
    base, venv = installed
    pillar_root = base / "pillar"
    pillar_root.mkdir(exist_ok=True)
    (pillar_root / "top.sls").write_text("base:\n  'cfg01':\n    - cluster\n")
    shutil.copy(os.path.join(REPO, "pillar_examples", "cluster.sls"), pillar_root / "cluster.sls")
    confdir = write_config(base, "master", {
        "root_dir": str(base / "master-root"), "id": "cfg01",
        "cachedir": str(base / "master-root" / "cache"),
        "pillar_roots": {"base": [str(pillar_root)]},
    })
    run = [str(venv / "bin" / "salt-run"), "-c", str(confdir), "--out=json"]
    functions = json.loads(sh(*run, "doc.runner"))
    assert {"leapfrog.inventory", "leapfrog.validate"} <= set(functions)
    result = json.loads(sh(*run, "leapfrog.validate"))
    assert result["valid"] is True and result["cluster"] == "prod1"
    # leapfrog's _utils helpers came from the installed package, not from this checkout
    where = sh(str(venv / "bin" / "python"), "-c",
               "import leapfrog_schema, leapfrog_ext; print(leapfrog_schema.__file__); "
               "print(leapfrog_ext.file_root())", cwd=str(base))
    assert str(venv) in where and REPO not in where
    assert os.path.isfile(os.path.join(where.split()[1], "orch", "inventory.sls"))


def test_installed_runner_reports_a_bad_pillar(installed):
    base, venv = installed
    pillar_root = base / "bad-pillar"
    pillar_root.mkdir(exist_ok=True)
    (pillar_root / "top.sls").write_text("base:\n  'cfg01':\n    - cluster\n")
    (pillar_root / "cluster.sls").write_text(textwrap.dedent("""\
        leapfrog:
          clusters:
            prod1:
              releases: {current: "2024.1", target: "2026.1", path: ["2024.1", "2026.1"]}
        """))
    confdir = write_config(base, "master-bad", {
        "root_dir": str(base / "master-root"), "id": "cfg01",
        "cachedir": str(base / "master-root" / "cache"),
        "pillar_roots": {"base": [str(pillar_root)]},
    })
    proc = subprocess.run([str(venv / "bin" / "salt-run"), "-c", str(confdir), "--out=json",
                           "leapfrog.validate"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    result = json.loads(proc.stdout)
    assert "Traceback" not in proc.stdout + proc.stderr
    assert len(result["problems"]) == 7
    assert ("leapfrog:clusters:prod1:roles: missing (role -> compound target (e.g. "
            "I@nova:compute)); add it as shown in pillar_examples/cluster.sls") in result["problems"]
