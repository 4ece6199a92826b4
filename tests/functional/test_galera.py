"""The galera module against the lab's real three-node cluster (MariaDB + galera-4): each
node read from its own minion's pillar, a desync that lets the node lag, a stop refused when
it would break quorum, a crashed node back by IST from its recovered position, and a whole
cluster stopped and bootstrapped again from the node a clean stop marked safe."""
import os
import signal

import pytest

from leapfrog_galera import GaleraError
from tests.loader import minion_modules


@pytest.fixture(scope="module")
def node_mods(galera_cluster, tmp_path_factory):
    """name -> the galera module as that node's minion loads it (its own pillar)."""
    out = {}
    for node in galera_cluster.nodes:
        pillar = {"leapfrog": {"galera": {"defaults_file": node.config, "size": 3},
                               "database": {"socket": node.socket, "user": "root",
                                            "password": galera_cluster.root_password}}}
        mods = minion_modules(tmp_path_factory.mktemp(f"cache-{node.name}"), pillar,
                              ["galera"])
        out[node.name] = {name.split(".", 1)[1]: mods[name] for name in
                          ("galera.status", "galera.desync", "galera.resync", "galera.stop",
                           "galera.recover", "galera.bootstrap", "galera.join",
                           "galera.precheck")}
    return out


@pytest.fixture
def table(galera_cluster):
    with galera_cluster.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE DATABASE IF NOT EXISTS lfgal")
        cur.execute("CREATE OR REPLACE TABLE lfgal.t (id INT AUTO_INCREMENT PRIMARY KEY, "
                    "v VARCHAR(40))")
    yield "lfgal.t"
    _all_synced(galera_cluster)
    with galera_cluster.connect() as conn, conn.cursor() as cur:
        cur.execute("DROP DATABASE lfgal")


def _all_synced(cluster):
    """Leave the session's cluster as it was: 3 nodes running and Synced."""
    cluster.start()
    for node in cluster.nodes:
        node.wait_synced()


def _insert(node, rows, tag):
    with node.connect() as conn, conn.cursor() as cur:
        cur.executemany("INSERT INTO lfgal.t (v) VALUES (%s)",
                        [(f"{tag}-{i}",) for i in range(rows)])


def _count(node):
    with node.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM lfgal.t")
        return cur.fetchone()[0]


def test_every_node_reports_a_synced_primary_cluster_of_three(galera_cluster, node_mods,
                                                              table):
    n1, _, n3 = galera_cluster.nodes
    _insert(n1, 10, "a")
    assert _count(n3) == 10  # written on n1, read on n3: real replication
    for name, mods in node_mods.items():
        found = mods["status"]()
        assert found["running"] and found["node"] == name
        assert (found["size"], found["expected_size"], found["state"], found["ready"],
                found["primary"], found["desync"]) == (3, 3, "Synced", True, True, False)
    seqnos = {mods["status"]()["seqno"] for mods in node_mods.values()}
    assert len(seqnos) == 1 and seqnos.pop() > 0


def test_desync_lets_the_node_lag_and_resync_brings_it_back(galera_cluster, node_mods, table):
    n3 = node_mods["n3"]
    changed = n3["desync"]()
    assert changed["changed"] and changed["desync"]
    assert changed["state"] in ("Donor/Desynced", "Synced")
    assert n3["desync"]()["changed"] is False  # a second desync changes nothing
    _insert(galera_cluster.nodes[0], 50, "b")
    back = n3["resync"](timeout=60)
    assert (back["state"], back["desync"], back["recv_queue"]) == ("Synced", False, 0)
    assert _count(galera_cluster.nodes[2]) == 50


def test_precheck_names_a_node_left_desynced(galera_cluster, node_mods, table):
    """What an upgrade's precheck asks each node: all fine on a Synced cluster of 3; a node
    an earlier backup left desynced named with galera.resync."""
    for name, mods in node_mods.items():
        found = mods["precheck"]()
        assert (found["ok"], found["node"], found["problems"]) == (True, name, [])
    node_mods["n3"]["desync"]()
    try:
        found = node_mods["n3"]["precheck"]()
        assert found["ok"] is False and found["status"]["desync"] is True
        assert found["problems"] == [
            "n3 was left desynced (wsrep_desync=ON, e.g. by a backup that did not finish): "
            "run galera.resync on n3"]
    finally:
        node_mods["n3"]["resync"]()
    assert node_mods["n3"]["precheck"]()["ok"] is True
    # a stopped node: see the quorum test below (one stop and join for both)


def test_stop_keeps_quorum_and_a_crashed_node_rejoins_by_ist(galera_cluster, node_mods,
                                                            table):
    n1, n2, n3 = galera_cluster.nodes
    stopped = node_mods["n3"]["stop"]()
    assert stopped["changed"] and stopped["seqno"] > 0
    assert node_mods["n1"]["status"]()["size"] == 2
    # the precheck names the stopped node on itself and as a missing one on the others
    assert node_mods["n3"]["precheck"]()["problems"] == [
        "n3: its server is not running: start it (galera.join; galera.recover first "
        "after a crash) before the upgrade"]
    assert node_mods["n1"]["precheck"]()["problems"] == [
        "n1 sees a cluster of 2 nodes, leapfrog:galera:size says 3: bring the missing "
        "node(s) back (galera.join on each) or correct the pillar"]
    with pytest.raises(GaleraError, match=r"refusing to stop n2: the cluster would keep 1 of "
                                          r"its 3 nodes, no majority.*galera\.join"):
        node_mods["n2"]["stop"]()
    assert node_mods["n2"]["status"]()["running"]  # nothing changed
    with pytest.raises(GaleraError, match=r"refusing to bootstrap n3: a node of its cluster "
                                          r"runs at .*join it instead"):
        node_mods["n3"]["bootstrap"]()
    _insert(n1, 20, "c")
    joined = node_mods["n3"]["join"](timeout=300)
    assert (joined["state"], joined["size"]) == ("Synced", 3)
    assert _count(n3) == 20

    # a crash: n2 killed, its grastate says seqno -1; join recovers its position (IST)
    os.kill(n2.pid, signal.SIGKILL)
    galera_cluster.nodes[1].pid = None
    assert n2.grastate()["seqno"] == -1
    assert node_mods["n2"]["recover"]()["source"] == "--wsrep-recover"
    _insert(n1, 5, "d")
    rejoined = node_mods["n2"]["join"](timeout=300)
    assert rejoined["from_seqno"] > 0 and rejoined["state"] == "Synced"
    assert _count(n2) == 25


def test_a_stopped_cluster_bootstraps_from_the_node_marked_safe(galera_cluster, node_mods,
                                                                table):
    n1 = galera_cluster.nodes[0]
    _insert(n1, 7, "e")
    for name in ("n3", "n2", "n1"):  # n1 last: a clean stop marks it safe to bootstrap
        node_mods[name]["stop"](force=name != "n3")
    positions = {name: mods["recover"]() for name, mods in node_mods.items()}
    assert positions["n1"]["safe_to_bootstrap"] and not positions["n2"]["safe_to_bootstrap"]
    assert positions["n1"]["seqno"] >= positions["n2"]["seqno"] >= positions["n3"]["seqno"]
    with pytest.raises(GaleraError, match=r"refusing to join n2: no node of its cluster runs"
                                          r".*galera\.bootstrap"):
        node_mods["n2"]["join"]()
    with pytest.raises(GaleraError, match=r"refusing to bootstrap n2: it is not marked "
                                          r"safe_to_bootstrap.*highest seqno with force=True"):
        node_mods["n2"]["bootstrap"]()
    assert not any(node.running() for node in galera_cluster.nodes)  # nothing started
    booted = node_mods["n1"]["bootstrap"](timeout=120)
    assert booted["primary"] and booted["bootstrapped_seqno"] == positions["n1"]["seqno"]
    for name in ("n2", "n3"):
        assert node_mods[name]["join"](timeout=300)["state"] == "Synced"
    assert {name: _count(node) for name, node in zip(("n1", "n2", "n3"), galera_cluster.nodes)} \
        == {"n1": 7, "n2": 7, "n3": 7}


@pytest.mark.parametrize("call, kwargs, message", [
    ("resync", {"timeout": "abc"}, r"timeout \(seconds\) must be a number"),
    ("stop", {"timeout": "-1"}, r"timeout \(seconds\) must be"),
    ("stop", {"force": "forse"}, r"force"),
    ("bootstrap", {"timeout": "nan"}, r"not finite"),
])
def test_bad_arguments_are_refused_and_nothing_changes(galera_cluster, node_mods, call,
                                                       kwargs, message):
    with pytest.raises(GaleraError, match=message):
        node_mods["n3"][call](**kwargs)
    assert all(mods["status"]()["state"] == "Synced" for mods in node_mods.values())
