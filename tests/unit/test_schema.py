"""The cluster pillar schema: the documented example is valid; each mistake is named."""
import copy
import os

import pytest
import yaml

import leapfrog_errors
import leapfrog_schema
import leapfrog_throwaway
from tests.conftest import REPO


@pytest.fixture
def example():
    with open(os.path.join(REPO, leapfrog_schema.EXAMPLE)) as handle:
        return yaml.safe_load(handle)["leapfrog"]["clusters"]["prod1"]


def problems_of(config):
    with pytest.raises(leapfrog_errors.PillarInvalid) as info:
        leapfrog_schema.validate(config, "prod1")
    return info.value.problems


def test_example_is_valid(example):
    checked = leapfrog_schema.validate(example, "prod1")
    assert checked["releases"]["path"] == ["2024.1", "2025.1", "2026.1"]
    assert checked["roles"]["compute"] == "I@nova:compute"


def test_defaults_are_filled(example):
    del example["approval"]
    del example["data_plane"]["batch"]
    checked = leapfrog_schema.validate(example, "prod1")
    assert checked["approval"]["expiry"] == 7200
    assert checked["data_plane"]["batch"] == 1
    assert checked["data_plane"]["api_calls"] == 4


def test_missing_key_names_the_key_and_the_example(example):
    del example["database"]["host"]
    assert problems_of(example) == [
        "leapfrog:clusters:prod1:database:host: missing; add it as shown in "
        "pillar_examples/cluster.sls"
    ]


def test_every_problem_is_reported_once(example):
    broken = copy.deepcopy(example)
    del broken["roles"]["compute"]
    broken["database"]["port"] = "3306x"
    broken["releases"]["strategy"] = "yolo"
    broken["data_plane"]["batch"] = "-3"
    broken["data_plane"]["api_calls"] = 0
    found = problems_of(broken)
    assert len(found) == 5, found
    assert any("roles:compute: missing" in p for p in found)
    assert any("database:port: expected an integer, got str '3306x'" in p for p in found)
    assert any("'yolo' is not one of rolling, fast_forward" in p for p in found)
    assert any("data_plane:batch: expected a host count" in p for p in found)
    assert any("data_plane:api_calls: expected a whole number of 1 or more, got 0" in p
               for p in found)


def test_unknown_release_and_unsupported_hop(example):
    example["releases"]["path"] = ["2024.1", "2026.1"]
    found = problems_of(example)
    assert found == ["leapfrog:clusters:prod1:releases:path: hop 2024.1 -> 2026.1 is not an "
                     "upgrade OpenStack supports (next release, or .1 to the next .1)"]
    example["releases"]["path"] = ["2024.1", "2025.7"]
    example["releases"]["target"] = "2025.7"
    found = problems_of(example)
    assert any("unknown release '2025.7'" in p for p in found)


def test_path_must_match_current_and_target(example):
    example["releases"]["current"] = "2025.1"
    assert problems_of(example) == [
        "leapfrog:clusters:prod1:releases:path: starts at 2024.1 but releases:current is 2025.1"
    ]


def test_yaml_boolean_is_not_an_integer(example):
    example["haproxy"]["timeout"] = True
    assert "haproxy:timeout: expected an integer, got bool True" in problems_of(example)[0]


def test_not_a_mapping():
    assert problems_of(["a"]) == [
        "leapfrog:clusters:prod1: expected a mapping, got list; see pillar_examples/cluster.sls"
    ]


def test_error_text_lists_each_problem(example):
    del example["vms"]
    del example["backups"]
    with pytest.raises(leapfrog_errors.PillarInvalid) as info:
        leapfrog_schema.validate(example, "prod1")
    text = str(info.value)
    assert "2 problem(s)" in text
    assert "  - leapfrog:clusters:prod1:vms: missing" in text
    assert "  - leapfrog:clusters:prod1:backups: missing" in text


def test_a_physical_backup_needs_a_galera_cluster_and_its_node(example):
    """database:backup auto is physical on a Galera cluster: its node must be named; a
    physical backup without roles:galera is refused; logical needs neither."""
    config = example
    assert leapfrog_schema.db_backup(leapfrog_schema.validate(config, "prod1")) == "logical"
    config["roles"]["galera"] = "I@galera:server"
    assert problems_of(config) == [
        "leapfrog:clusters:prod1:database:galera:backup_node: missing: a physical backup of "
        "the Galera cluster (database:backup: physical, or auto with roles:galera set) is "
        "taken on one standby node of the DB frontend; name its minion id, or set "
        "database:backup: logical"]
    config["database"]["galera"] = {"backup_node": "dbs03"}
    checked = leapfrog_schema.validate(config, "prod1")
    assert leapfrog_schema.db_backup(checked) == "physical"
    assert checked["database"]["galera"] == {"backup_node": "dbs03", "frontend": "galera",
                                             "server": ""}
    config["roles"]["galera"] = ""
    config["database"]["backup"] = "physical"
    with pytest.raises(leapfrog_errors.PillarInvalid, match="database:backup: physical needs "
                       "a Galera cluster: set roles:galera"):
        leapfrog_schema.validate(config, "prod1")
    config["database"]["backup"] = "snapshot"
    with pytest.raises(leapfrog_errors.PillarInvalid, match="database:backup"):
        leapfrog_schema.validate(config, "prod1")


def test_the_throwaway_controller_is_never_a_production_node(example):
    """rehearsal:node names the rehearsal's own VM: a node of vms:nodes would have its key
    and domain replaced, then discarded."""
    provision = {"kinds": ["server", "network", "volume"], "image": "cirros",
                 "flavor": "m1.tiny"}
    assert example["rehearsal"] == {"node": "upg01", "address": "10.0.0.41",
                                    "provision": provision}  # the example pillar's
    checked = leapfrog_schema.validate(example, "prod1")
    assert checked["rehearsal"] == {"node": "upg01", "hypervisor": "", "like": "",
                                    "address": "10.0.0.41", "vhost": "leapfrog_rehearsal",
                                    "provision": {**provision, "network": ""}}
    example["rehearsal"]["provision"] = {"kinds": ["server", "router"]}
    assert problems_of(example) == [
        "leapfrog:clusters:prod1:rehearsal:provision:kinds: unknown kind(s) 'router'; known: "
        "server, network, volume",
        "leapfrog:clusters:prod1:rehearsal:provision: a server needs image and flavor (names in "
        "the cloud)"]
    target = leapfrog_throwaway.target(checked)
    first = next(iter(checked["vms"]["nodes"]))
    assert (target["node"], target["like"]) == ("upg01", first)
    assert target["hypervisor"] == checked["vms"]["nodes"][first]["hypervisor"]
    example["rehearsal"] = {"node": first, "address": "10.0.0.41"}
    assert problems_of(example) == [
        f"leapfrog:clusters:prod1:rehearsal:node: {first} is a production node (vms:nodes): "
        "the throwaway controller needs a minion id of its own, e.g. upg01"]
    example["rehearsal"] = {"node": "upg01", "address": example["haproxy"]["vip"],
                            "vhost": "/"}
    assert problems_of(example) == [
        "leapfrog:clusters:prod1:rehearsal:vhost: expected 1-64 letters, digits, '_', '-' or "
        "'.' (a RabbitMQ vhost of its own, e.g. leapfrog_rehearsal), got '/'",
        f"leapfrog:clusters:prod1:rehearsal:address: {example['haproxy']['vip']} is the "
        "production VIP (haproxy:vip): give the throwaway controller an address of its own"]
    example["rehearsal"] = {"node": "upg01", "address": "upg01.example"}
    assert problems_of(example) == [
        "leapfrog:clusters:prod1:rehearsal:address: expected an IP address (e.g. 10.0.0.41), "
        "got 'upg01.example'"]
    example["rehearsal"] = {"node": "upg01"}
    assert problems_of(example) == [
        "leapfrog:clusters:prod1:rehearsal:address: required with rehearsal:node: the IP "
        "address upg01's services listen on (see pillar_examples/cluster.sls)"]
    del example["rehearsal"]
    assert leapfrog_schema.validate(example, "prod1")["rehearsal"] == {
        "node": "", "hypervisor": "", "like": "", "address": "",
        "vhost": "leapfrog_rehearsal",
        "provision": {"kinds": [], "image": "", "flavor": "", "network": ""}}
    with pytest.raises(leapfrog_errors.LeapfrogError, match="rehearsal:node is not set"):
        leapfrog_throwaway.target(leapfrog_schema.validate(example, "prod1"))
