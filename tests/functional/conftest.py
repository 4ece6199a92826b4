"""Fixtures of the functional tier that need more than one lab part.

``openstack_cloud``: ONE real OpenStack 2024.1 cloud for the session (lab/openstack_cloud.py):
a controller (keystone, placement, glance, nova-api behind haproxy on the VIP, nova-conductor,
nova-scheduler), two fake computes (cmp01, cmp02), RabbitMQ, the neutron stand-in, an image, a
flavor and three servers ACTIVE. Its databases live on the session ``mariadb`` server (prefix
``lfos``). Everything runs under a short private directory in /tmp on loopback, and is stopped
by PID at teardown (the databases dropped, the directory removed).

Tests may change the cloud (stop/start a service, restart a compute from the next release):
they say so and leave it healthy.
"""
import shutil
import sys
import tempfile
import time

import pytest


@pytest.fixture(scope="session")
def openstack_cloud(mariadb, openstack_venvs):
    from lab.openstack_cloud import OpenStackCloud  # pylint: disable=import-outside-toplevel

    run_dir = tempfile.mkdtemp(prefix="lf-os-", dir="/tmp")

    def log(line):
        print(f"{time.strftime('%H:%M:%S')} {line}", file=sys.stderr, flush=True)

    cloud = OpenStackCloud(run_dir, release="2024.1", computes=2, mariadb=mariadb, log=log)
    try:
        cloud.start()
        log(f"[openstack_cloud] RSS KiB: {cloud.rss_kb()}")
        yield cloud
    finally:
        started = time.monotonic()
        try:
            cloud.stop(remove=False)
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)
        log(f"[openstack_cloud] stopped in {time.monotonic() - started:.1f} s")
