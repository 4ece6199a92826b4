"""Fixtures of the functional tier that need more than one lab part.

``openstack_cloud``: ONE real OpenStack 2024.1 cloud for the functional tier, stopped when
the tier ends (the integration tier runs without its load) (lab/openstack_cloud.py): a controller (keystone, placement, glance, nova-api behind haproxy on the VIP, nova-conductor,
nova-scheduler), two fake computes (cmp01, cmp02), RabbitMQ, the neutron stand-in, an image, a
flavor and three servers ACTIVE. Its databases live on the session ``mariadb`` server (prefix
``lfos``). Everything runs under a short private directory in /tmp on loopback, and is stopped
by PID at teardown (the databases dropped, the directory removed).

Tests may change the cloud (stop/start a service, restart a compute from the next release):
they say so and leave it healthy.
"""
import pytest

from tests.clouds import running_cloud


@pytest.fixture(scope="package")
def openstack_cloud(mariadb, openstack_venvs):
    with running_cloud("lf-os-", rss=True, release="2024.1", computes=2,
                       mariadb=mariadb) as cloud:
        yield cloud
