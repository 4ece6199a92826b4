"""One OpenStack virtualenv per release, built with uv from frozen constraint files.

Each release's venv holds nova + keystone + openstack-placement + glance + PyMySQL +
gunicorn (and ``setuptools<81``: nova 29 imports ``pkg_resources``). Its exact package set is
frozen in ``lab/constraints/<release>.txt`` (``uv pip compile --exclude-newer DATE``), kept
in the repo so every build installs the same versions. Venvs live under
``$LEAPFROG_CACHE/openstack/<release>`` (default ``/var/cache/leapfrog/openstack``); a stamp
file carrying the constraint file's hash makes the "already built?" check cost one small
read, and a changed constraint file rebuilds the venv.

neutron and cinder have a venv per release of their own (``neutron-2025.1``,
``cinder-2026.1``: ``SERVICE_SPECS``, the pins FACTS.md measured), frozen and cached the same
way.

One more venv, ``client``, holds the operator's ``openstack`` CLI (python-openstackclient of
the 2024.1 series), frozen in ``lab/constraints/client.txt`` against the 2024.1 constraint
file (the libraries it shares with the 2024.1 venv have the same pins). It is built and
cached the same way, apart from the release venvs (adding it to one would rebuild that
release's venv under a running lab).

    python -m lab.openstack_venv build [RELEASE...]    # build (or check) venvs, print paths
    python -m lab.openstack_venv build client          # the openstack CLI's venv
    python -m lab.openstack_venv freeze [RELEASE...]   # re-resolve the constraint files
    python -m lab.openstack_venv path RELEASE          # print the venv path (no build)

From Python: ``ensure("2025.1")`` returns the venv path, building it first if needed;
``openstack_cli()`` the path of the ``openstack`` executable (built first if needed).
"""
import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CONSTRAINTS_DIR = os.path.join(HERE, "constraints")
STAMP = ".leapfrog-venv.json"
PYTHON_VERSION = "3.11"


class Release:
    """What one release's venv is made of: the top-level requirements and a date cut-off.

    ``check``: (distribution, major version) the built venv must hold (default nova's);
    ``constrained_by``: releases whose constraint files also bound the freeze.
    """

    def __init__(self, name, nova, exclude_newer, requirements, check=None,
                 constrained_by=(), title=None):
        self.name = name
        self.nova = nova  # nova's major version (the release's number)
        self.exclude_newer = exclude_newer
        self.requirements = list(requirements)
        self.check = check or ("nova", nova)
        self.constrained_by = tuple(constrained_by)
        self.title = title or f"OpenStack {name} (nova {nova}.x) lab venv"

    def __repr__(self):
        return f"Release({self.name!r}, {self.check[0]} {self.check[1]})"


_COMMON = ["PyMySQL", "gunicorn", "setuptools<81"]

# release -> its venv's contents (FACTS.md: the combinations seen working here).
RELEASES = {
    "2024.1": Release("2024.1", 29, "2024-09-15", [
        "nova==29.*", "keystone==25.*", "openstack-placement==11.*", "glance==28.*",
        *_COMMON]),
    "2025.1": Release("2025.1", 31, "2025-09-15", [
        "nova==31.*", "keystone==27.*", "openstack-placement==13.*", "glance==30.*",
        *_COMMON]),
    "2026.1": Release("2026.1", 33, "2026-09-01", [
        "nova==33.*", "keystone==29.*", "openstack-placement==15.*", "glance==32.*",
        # placement 15's API needs oslo.policy<6; the date cut-off needs cryptography<47.
        "oslo.policy<6", "cryptography<47", *_COMMON]),
}

# The operator's CLI: python-openstackclient of the 2024.1 (Caracal) series, resolved within
# the 2024.1 constraints. Not a release: not in RELEASES (nor the nodes' pillar).
CLIENT = "client"
CLIENT_SPEC = Release(
    CLIENT, None, RELEASES["2024.1"].exclude_newer, ["python-openstackclient==6.6.*"],
    check=("python-openstackclient", 6), constrained_by=("2024.1",),
    title="openstack CLI (python-openstackclient, 2024.1 series) lab venv")

def _service(service, release, major, exclude_newer, *extra):
    """``service``'s venv of ``release`` (its major version ``major``): the service, PyMySQL,
    gunicorn and the ``extra`` pins, named ``<service>-<release>``."""
    name = f"{service}-{release}"
    return name, Release(name, major, exclude_newer,
                         [f"{service}=={major}.*", "PyMySQL", "gunicorn", *extra],
                         check=(service, major),
                         title=f"{service} {release} ({major}.x) lab venv")


# neutron and cinder of each release, each in a venv of its own (as OSA and kolla deploy a
# service per venv or image): FACTS.md's pins. 28.x neutron imports pyroute2 without
# declaring it, and its cut-off would pull neutron-lib 5 (2026.2: 'Plugin ovn-router not
# found'); cinder.tests.fake_driver needs fixtures; eventlet 0.37 kills cinder-volume 2024.1.
SERVICE_SPECS = dict([
    _service("neutron", "2024.1", 24, "2024-09-15", "setuptools<81", "eventlet<0.36"),
    _service("neutron", "2025.1", 26, "2025-09-15"),
    _service("neutron", "2026.1", 28, "2026-09-01", "cryptography<47", "pyroute2",
             "neutron-lib<3.25"),
    _service("cinder", "2024.1", 24, "2024-09-15", "setuptools<81", "fixtures",
             "eventlet<0.36"),
    _service("cinder", "2025.1", 26, "2025-09-15", "fixtures"),
    _service("cinder", "2026.1", 28, "2026-09-01", "cryptography<47", "fixtures"),
])


class VenvError(RuntimeError):
    """A venv could not be built (unknown release, missing constraints, uv failed)."""


def cache_root():
    """Directory holding the release venvs (``$LEAPFROG_CACHE/openstack``)."""
    return os.path.join(os.environ.get("LEAPFROG_CACHE", "/var/cache/leapfrog"), "openstack")


def uv_binary():
    """The uv to use: ``$LEAPFROG_UV``, the cache's tools venv, or uv on PATH."""
    candidates = [
        os.environ.get("LEAPFROG_UV"),
        os.path.join(os.environ.get("LEAPFROG_CACHE", "/var/cache/leapfrog"), "tools", "bin", "uv"),
        shutil.which("uv"),
    ]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise VenvError("uv not found: set LEAPFROG_UV or run ./dev setup")


def _release(release):
    if str(release) == CLIENT:
        return CLIENT_SPEC
    try:
        return RELEASES.get(str(release)) or SERVICE_SPECS[str(release)]
    except KeyError:
        raise VenvError(
            f"unknown release {release}; known: {', '.join(RELEASES)}, the services' "
            f"{', '.join(SERVICE_SPECS)} (and {CLIENT}: the CLI)") from None


def constraints_file(release):
    """Path of the release's frozen constraint file in the repo."""
    _release(release)
    return os.path.join(CONSTRAINTS_DIR, f"{release}.txt")


def constraints_hash(release):
    """sha256 of the release's constraint file (what the stamp records)."""
    path = constraints_file(release)
    try:
        with open(path, "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest()
    except FileNotFoundError:
        raise VenvError(
            f"{path} is missing: run `python -m lab.openstack_venv freeze {release}`"
        ) from None


def venv_path(release):
    """Where the release's venv lives (built or not)."""
    _release(release)
    return os.path.join(cache_root(), str(release))


def is_current(release):
    """True when the venv is built from the current constraint file (one small read)."""
    stamp = os.path.join(venv_path(release), STAMP)
    try:
        with open(stamp) as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return False
    return data.get("constraints_sha256") == constraints_hash(release)


def _uv_env():
    env = dict(os.environ)
    env.setdefault("UV_CACHE_DIR", os.path.join(os.path.dirname(cache_root()), "uv"))
    env.setdefault("UV_LINK_MODE", "copy")
    env.pop("VIRTUAL_ENV", None)
    return env


def _python():
    """Interpreter the venvs are made from (the constraints are frozen for 3.11)."""
    wanted = os.environ.get("LEAPFROG_OPENSTACK_PYTHON")
    if wanted:
        return wanted
    for candidate in (f"/usr/bin/python{PYTHON_VERSION}", shutil.which(f"python{PYTHON_VERSION}")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return PYTHON_VERSION  # let uv find (or fetch) one


def _run(argv, what):
    proc = subprocess.run(argv, env=_uv_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise VenvError(f"{what} failed (exit {proc.returncode}):\n{tail}")
    return proc


@contextlib.contextmanager
def _lock(release):
    """Serialise builds of one release across processes (parallel test sessions)."""
    os.makedirs(cache_root(), exist_ok=True)
    with open(os.path.join(cache_root(), f".{release}.lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure(release, rebuild=False, log=None):
    """Return the release's venv path, building it first unless it is current.

    ``rebuild=True`` rebuilds even a current venv. ``log`` is a callable taking a line.
    """
    path = venv_path(release)
    if not rebuild and is_current(release):
        return path
    digest = constraints_hash(release)
    with _lock(release):
        if not rebuild and is_current(release):  # built by another process meanwhile
            return path
        started = time.monotonic()
        if log:
            log(f"building {release} venv in {path}")
        shutil.rmtree(path, ignore_errors=True)
        uv = uv_binary()
        _run([uv, "venv", "-q", "-p", _python(), path], f"uv venv for {release}")
        python = os.path.join(path, "bin", "python")
        _run([uv, "pip", "install", "-q", "-p", python, "-r", constraints_file(release)],
             f"uv pip install for {release}")
        dist, major = _release(release).check
        version = _installed_version(path, dist)
        if not version or int(version.split(".")[0]) != major:
            raise VenvError(f"{release} venv holds {dist} {version}, expected {major}.x")
        stamp = {
            "release": release,
            "constraints_sha256": digest,
            dist: version,
            "python": _python(),
            "built_seconds": round(time.monotonic() - started, 1),
        }
        tmp = os.path.join(path, STAMP + ".tmp")
        with open(tmp, "w") as handle:
            json.dump(stamp, handle, indent=1)
        os.replace(tmp, os.path.join(path, STAMP))
        if log:
            log(f"built {release} ({dist} {version}) in {stamp['built_seconds']} s")
    return path


def openstack_cli(log=None):
    """Path of the ``openstack`` executable (the client venv, built first if needed)."""
    return os.path.join(ensure(CLIENT, log=log), "bin", "openstack")


def _installed_version(path, dist):
    """Version of ``dist`` installed in the venv, read from its dist-info (no import)."""
    def norm(name):
        return name.lower().replace("-", "_").replace(".", "_")

    lib = os.path.join(path, "lib")
    for pyver in os.listdir(lib) if os.path.isdir(lib) else ():
        site = os.path.join(lib, pyver, "site-packages")
        for entry in os.listdir(site) if os.path.isdir(site) else ():
            if entry.endswith(".dist-info"):
                name, _, version = entry[:-len(".dist-info")].partition("-")
                if norm(name) == norm(dist):
                    return version
    return None


def ensure_all(releases=None, log=None):
    """Build (or check) several venvs; return ``{release: path}``."""
    return {release: ensure(release, log=log) for release in (releases or RELEASES)}


def freeze(release, log=None):
    """Re-resolve the release's requirements into its constraint file (uv pip compile)."""
    spec = _release(release)
    os.makedirs(CONSTRAINTS_DIR, exist_ok=True)
    out = constraints_file(release)
    bounds = []
    for other in spec.constrained_by:
        bounds += ["-c", constraints_file(other)]
    argv = [uv_binary(), "pip", "compile", "-q", "--no-header", "--no-annotate",
            "--python-version", PYTHON_VERSION, "--exclude-newer", spec.exclude_newer,
            *bounds, "-"]
    proc = subprocess.run(argv, env=_uv_env(), input="\n".join(spec.requirements) + "\n",
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise VenvError(f"uv pip compile for {release} failed:\n{proc.stderr.strip()}")
    header = [
        f"# {spec.title}, frozen by lab/openstack_venv.py.",
        f"# Regenerate: python -m lab.openstack_venv freeze {release}",
        f"# uv pip compile --python-version {PYTHON_VERSION} --exclude-newer {spec.exclude_newer}"
        + "".join(f" -c lab/constraints/{other}.txt" for other in spec.constrained_by),
        f"# from: {' '.join(spec.requirements)}",
    ]
    with open(out, "w") as handle:
        handle.write("\n".join(header) + "\n" + proc.stdout)
    if log:
        log(f"froze {release} into {out}")
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lab.openstack_venv", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build (or check) venvs and print their paths")
    build.add_argument("releases", nargs="*", metavar="RELEASE")
    build.add_argument("--rebuild", action="store_true", help="rebuild even current venvs")
    frz = sub.add_parser("freeze", help="re-resolve the constraint files")
    frz.add_argument("releases", nargs="*", metavar="RELEASE")
    where = sub.add_parser("path", help="print a venv's path without building it")
    where.add_argument("release")
    args = parser.parse_args(argv)

    def log(line):
        print(f"[openstack_venv] {line}", file=sys.stderr)

    try:
        if args.command == "build":
            for release in args.releases or RELEASES:
                started = time.monotonic()
                path = ensure(release, rebuild=args.rebuild, log=log)
                print(f"{release} {path} ({time.monotonic() - started:.1f} s)")
        elif args.command == "freeze":
            for release in args.releases or RELEASES:
                print(freeze(release, log=log))
        else:
            print(venv_path(args.release))
    except VenvError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
