"""The lab's own Salt starter (used by ``lab up`` and the demo): real daemons, keys seeded
before start (no auto-accept), compound targeting as on a real cluster, nothing left behind."""
import contextlib
import json
import os
import shutil
import tempfile

import pytest

from lab import procs, salt_cluster, topology


@contextlib.contextmanager
def running(run_dir, ids):
    cluster = salt_cluster.SaltCluster(run_dir, [n for n in topology.nodes() if n.id in ids])
    try:
        cluster.up()
        yield cluster
    finally:
        cluster.down()


@pytest.fixture(scope="module")
def lab_salt():
    run_dir = tempfile.mkdtemp(prefix="lf-lab-", dir="/tmp")
    with running(run_dir, ("ctl01", "cmp01")) as cluster:
        yield cluster
    shutil.rmtree(run_dir, ignore_errors=True)


def test_minions_answer_and_target_by_pillar(lab_salt):
    assert lab_salt.salt("*", "test.ping") == {"ctl01": True, "cmp01": True}
    found = lab_salt.salt("I@nova:compute", "grains.item", "oscodename", tgt_type="compound")
    assert found == {"cmp01": {"oscodename": "bookworm"}}
    up = json.loads(lab_salt.run("manage.up").stdout)
    assert sorted(up) == ["cmp01", "ctl01"]


def test_master_never_auto_accepts(lab_salt):
    master_pki = os.path.join(lab_salt.base, topology.MASTER_ID, "pki", "master")
    assert sorted(os.listdir(os.path.join(master_pki, "minions"))) == ["cmp01", "ctl01"]
    assert os.listdir(os.path.join(master_pki, "minions_pre")) == []


def test_down_stops_every_daemon(lab_salt):
    """The module's cluster, last: its fixture's own down() then finds nothing to stop."""
    pids = [procs.read_pid(lab_salt.pid_file(name)) for name in ("cfg01", "ctl01", "cmp01")]
    assert all(procs.pid_alive(pid) for pid in pids)
    lab_salt.down()
    assert not any(procs.pid_alive(pid) for pid in pids)
    assert lab_salt.status() == {"cfg01": False, "ctl01": False, "cmp01": False}
