"""What tests that start a lab cloud of their own share: the cloud started under a private
/tmp folder and stopped by PID (the folder removed) whatever happens, its progress on
stderr; and a wait for a condition with a deadline."""
import contextlib
import shutil
import sys
import tempfile
import time


def log(line):
    print(f"{time.strftime('%H:%M:%S')} {line}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def running_cloud(prefix, rss=False, **kwargs):
    """``lab.openstack_cloud.OpenStackCloud(**kwargs)`` started in ``/tmp/<prefix>XXXX``;
    stopped and removed on exit (``rss``: its memory logged once up)."""
    from lab.openstack_cloud import OpenStackCloud  # pylint: disable=import-outside-toplevel

    run_dir = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    cloud = OpenStackCloud(run_dir, log=log, **kwargs)
    try:
        cloud.start()
        if rss:
            log(f"[openstack_cloud] RSS KiB: {cloud.rss_kb()}")
        yield cloud
    finally:
        started = time.monotonic()
        try:
            cloud.stop(remove=False)
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)
        log(f"[openstack_cloud] stopped in {time.monotonic() - started:.1f} s")


def wait_until(check, timeout, what, interval=0.2):
    """Return once ``check()`` is true; fail the test naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise AssertionError(f"{what} not within {timeout} s")
