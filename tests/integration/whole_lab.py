"""The whole lab (lab.stack.Lab) in a private run dir for a heavy test module, the
progress lines its tests print, and what they read back (a run's journal, the computes)."""
import contextlib
import glob
import json
import os
import shutil
import tempfile
import time

from lab import stack


def log(line):
    print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)


@contextlib.contextmanager
def whole_lab(controllers, computes, neutron_cinder=False, db="mariadb"):
    """``Lab.up()`` with that many controllers and computes (and real neutron and cinder
    with ``neutron_cinder``; the databases on ``db``: one MariaDB or a Galera cluster);
    down and removed after (with
    ``LEAPFROG_KEEP_LAB_DIR=1`` the stopped lab's run dir, its logs, stays for a post-mortem)."""
    run_dir = tempfile.mkdtemp(prefix="lf-lab-", dir="/tmp")
    lab = stack.Lab(run_dir, controllers=controllers, computes=computes, log=log,
                    neutron_cinder=neutron_cinder, db=db)
    try:
        lab.up()
        yield lab
    finally:
        keep = bool(os.environ.get("LEAPFROG_KEEP_LAB_DIR"))
        lab.down(remove=not keep)
        if keep:
            log(f"lab run dir kept: {run_dir}")
        else:
            shutil.rmtree(run_dir, ignore_errors=True)


def journal_steps(lab, run):
    """The run's journal as the master keeps it, step name -> record (with its result)."""
    found = glob.glob(os.path.join(lab.salt.base, "**", "leapfrog", "lab", run,
                                   "journal.json"), recursive=True)
    with open(found[0]) as handle:
        return {s["name"]: s for s in json.load(handle)["steps"]}


def run_report(lab, run):
    """The run's report.json as the master wrote it."""
    found = glob.glob(os.path.join(lab.salt.base, "**", "leapfrog", "lab", run, "report",
                                   "report.json"), recursive=True)
    assert found, f"no report of run {run}"
    with open(found[0]) as handle:
        return json.load(handle)


def computes(lab):
    """host -> (state, status, service version) of every nova-compute, as nova shows them."""
    rows = lab.salt.salt("ctl01", "nova_service.list", timeout=120)["ctl01"]
    return {r["host"]: (r["state"], r["status"], r["version"]) for r in rows}
