"""The whole lab (lab.stack.Lab) in a private run dir for a heavy test module, and the
progress lines its tests print."""
import contextlib
import os
import shutil
import tempfile
import time

from lab import stack


def log(line):
    print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)


@contextlib.contextmanager
def whole_lab(controllers, computes):
    """``Lab.up()`` with that many controllers and computes; down and removed after (with
    ``LEAPFROG_KEEP_LAB_DIR=1`` the stopped lab's run dir, its logs, stays for a post-mortem)."""
    run_dir = tempfile.mkdtemp(prefix="lf-lab-", dir="/tmp")
    lab = stack.Lab(run_dir, controllers=controllers, computes=computes, log=log)
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
