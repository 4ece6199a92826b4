"""Golden plans, as COU tests its plans: each sample cluster of tests/unit/plans/*.yaml (the
example prod1 pillar plus the sample's changes, and the facts a run would gather) gives the
plan its orchestration would run; the whole plan (every step's kind, function, kwargs,
needs and the text an operator reads) must equal tests/unit/golden/plans/<sample>.yaml.
Review a change, then rewrite them with LEAPFROG_UPDATE_GOLDEN=1."""
import copy
import glob
import os

import pytest
import yaml

import leapfrog_builders
import leapfrog_facts
import leapfrog_plan
import leapfrog_schema
import leapfrog_steps
from tests.conftest import REPO
from tests.unit.test_plan import example_pillar

SAMPLES = os.path.join(REPO, "tests", "unit", "plans")
GOLDEN = os.path.join(REPO, "tests", "unit", "golden", "plans")
RUN = "20261201-000000-gold"


def sample_names():
    return sorted(os.path.basename(p)[:-5] for p in glob.glob(os.path.join(SAMPLES, "*.yaml")))


def build(name):
    """The sample's plan as a dict (or its refusal as {"refused": text})."""
    with open(os.path.join(SAMPLES, f"{name}.yaml")) as handle:
        sample = yaml.safe_load(handle)
    pillar = copy.deepcopy(example_pillar()["leapfrog"]["clusters"]["prod1"])
    for key, value in (sample.get("pillar") or {}).items():  # a mapping merges one level
        pillar[key] = dict(pillar[key], **value) if isinstance(value, dict) and \
            isinstance(pillar.get(key), dict) else value
    config = leapfrog_schema.validate(pillar, "prod1")
    facts = {"cluster": "prod1", "run": RUN, "config": config,
             "controllers": sample.get("controllers", []), **(sample.get("facts") or {})}
    if "decide" in sample:
        decide = sample["decide"]
        try:
            facts["decision"] = leapfrog_plan.strategy(
                config["releases"]["path"], decide["strategy"], decide["control"],
                decide["computes"], to=decide["to"])
        except leapfrog_plan.Impossible as exc:
            return {"refused": str(exc)}
        facts["computes"] = decide["computes"]
    if sample["orch"] == "orch.test_upgrade":  # as leapfrog_facts.plan_facts gathers it
        facts["throwaway"] = leapfrog_facts.throwaway(config, sample.get("throwaway", False))
    plan = leapfrog_builders.BUILDERS[sample["orch"]](facts)
    return {"text": plan.render().splitlines(), **plan.to_dict()}


@pytest.mark.parametrize("name", sample_names())
def test_golden_plan(name):
    got = yaml.safe_dump(build(name), sort_keys=False, width=100)
    path = os.path.join(GOLDEN, f"{name}.yaml")
    if os.environ.get("LEAPFROG_UPDATE_GOLDEN"):
        with open(path, "w") as handle:
            handle.write(got)
    with open(path) as handle:
        assert got == handle.read(), f"the plan differs from {path}"


def test_every_sample_has_a_golden_file_and_no_golden_file_is_orphaned():
    golden = sorted(os.path.basename(p)[:-5] for p in glob.glob(os.path.join(GOLDEN, "*.yaml")))
    assert golden == sample_names()


@pytest.mark.parametrize("name", [n for n in sample_names() if "refused" not in n])
def test_a_plan_survives_its_journal_round_trip(name):
    """begin stores the plan as JSON; a resume rebuilds exactly the same object."""
    built = build(name)
    built.pop("text")
    again = leapfrog_steps.Plan.from_dict(yaml.safe_load(yaml.safe_dump(built)))
    assert again.to_dict() == built


def test_the_services_of_the_pillar_drive_the_db_steps():
    names = [s["name"] for s in build("services_without_glance")["steps"]]
    assert "dbsync_nova" in names and "dbsync_placement_sync" in names
    assert not [n for n in names if "glance" in n]


def test_contracts_and_data_plane_switches_are_points_of_no_return():
    """A fast-forward's compute switch is not: its rollback redeploys the old release."""
    def irreversible(name):
        return {s["name"] for s in build(name)["steps"] if s["irreversible"]}
    assert irreversible("rolling_2_controllers") == {"finish_keystone", "finish_glance"}
    assert irreversible("fast_forward_3_controllers") == {"finish_keystone", "finish_glance"}
    assert irreversible("data_plane_canary_batches") == {"cmp001_switch", "batch01_switch",
                                                         "cmp004_switch"}
    text = "\n".join(build("rolling_2_controllers")["text"])
    assert "finish_keystone [db_finish] on first controller: keystone DB: contract" in text
    assert "POINT OF NO RETURN" in text


def test_a_plan_refuses_a_step_needing_a_later_one():
    plan = leapfrog_steps.Plan("orch.x", "prod1", "2025.1", "t")
    plan.add("one", "precheck", "leapfrog.precheck", needs=["two"])
    plan.add("two", "verify", "leapfrog.call")
    with pytest.raises(leapfrog_steps.PlanError, match="step one needs two"):
        plan.check()


def test_an_unknown_kind_or_a_bad_name_is_refused():
    with pytest.raises(leapfrog_steps.PlanError, match="unknown kind 'explode'"):
        leapfrog_steps.Step("one", "explode", "leapfrog.call")
    with pytest.raises(Exception, match="step"):
        leapfrog_steps.Step("one\nsalt.state", "verify", "leapfrog.call")


def test_fast_forward_moves_gateways_off_each_controller_before_its_rebuild():
    """Routers' gateways leave a controller before its VM is rebuilt, one controller at a
    time, and come back between its start and its ready; the first's leave only once every
    other controller serves again (a chassis being rebuilt cannot take them)."""
    plan = build("fast_forward_with_neutron_and_cinder")
    steps = {s["name"]: s for s in plan["steps"]}
    order = list(steps)

    def before(a, b):  # a runs before b: b needs a, directly or through others
        seen, todo = set(), [b]
        while todo:
            for need in steps[todo.pop()]["needs"]:
                if need not in seen:
                    seen.add(need)
                    todo.append(need)
        return a in seen

    for node in ("ctl01", "ctl02", "ctl03"):
        assert before(f"{node}_gateways_off", f"{node}_rebuild")
        assert before(f"{node}_start", f"{node}_gateways_back")
        assert before(f"{node}_gateways_back", f"{node}_ready")
        assert before(f"{node}_network_types", f"{node}_ready")
    assert before("ctl02_gateways_off", "ctl03_gateways_off")  # one move at a time
    assert before("ctl02_ready", "ctl01_gateways_off")
    assert before("ctl03_ready", "ctl01_gateways_off")
    assert order.index("ctl01_gateways_off") > order.index("ctl03_ready")
