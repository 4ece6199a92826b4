"""The whole lab (lab.stack.Lab) in a private run dir for a heavy test module, and the
progress lines its tests print."""
import contextlib
import shutil
import tempfile
import time

from lab import stack


def log(line):
    print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)


@contextlib.contextmanager
def whole_lab(controllers, computes):
    """``Lab.up()`` with that many controllers and computes; down and removed after."""
    run_dir = tempfile.mkdtemp(prefix="lf-lab-", dir="/tmp")
    lab = stack.Lab(run_dir, controllers=controllers, computes=computes, log=log)
    try:
        lab.up()
        yield lab
    finally:
        lab.down()
        shutil.rmtree(run_dir, ignore_errors=True)
