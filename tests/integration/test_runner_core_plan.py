"""leapfrog.plan on the real master with the lab's minions: compute releases come from the
inventory (leapfrog.node_info), and the lab's rolling 2024.1 -> 2026.1 is refused."""
import pytest

pytestmark = pytest.mark.usefixtures("salt_minions")


def test_rolling_to_2026_1_with_2024_1_computes_is_refused(salt_master):
    ret = salt_master.salt_run_cli(timeout=120).run("leapfrog.plan", "cluster=lab")
    assert ret.returncode == 1, ret
    assert ret.data["possible"] is False
    assert ret.data["reason"].startswith(
        "rolling control-plane hop 2025.1 -> 2026.1 is impossible: nova 2026.1 (Gazpacho, "
        "service version 72) refuses computes older than 2025.1 (Epoxy); found cmp01 "
        "(2024.1), cmp02 (2024.1)")
    assert ret.data["alternatives"][0].startswith("rolling, one hop now: to=2025.1")


def test_the_first_rolling_hop_is_planned_from_the_inventory(salt_master):
    ret = salt_master.salt_run_cli(timeout=120).run("leapfrog.plan", "cluster=lab",
                                                    "to=2025.1")
    assert ret.returncode == 0, ret
    assert ret.data["computes"] == {"cmp01": "2024.1", "cmp02": "2024.1"}
    assert ret.data["text"].splitlines()[0] == (
        "Upgrade the control plane of lab: 2024.1 -> 2025.1 (rolling)")
    assert ret.data["steps"][5:7] == ["ctl01_drain", "ctl01_backup_disk"]
    assert [s["kind"] for s in ret.data["plan"]["steps"][5:7]] == ["drain", "backup_disk"]
