"""The lab's OVN (Debian's ovn-central, private paths and ports) and its fake chassis:
alive the way neutron checks an OVN agent (NB_Global.nb_cfg reported back through
Chassis_Private by the keeper that stands in for ovn-controller), stopped by PID."""
import time

import pytest

from lab.ovn import OVN
from lab.procs import pid_alive


def _until(predicate, timeout=15):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


@pytest.fixture
def ovn(tmp_path):
    lab = OVN(str(tmp_path / "ovn"))
    lab.start()
    yield lab
    pids = lab.pids()
    lab.stop()
    assert not [name for name, pid in pids.items() if pid and pid_alive(pid)]


def test_fake_chassis_are_alive_as_neutron_sees_them(ovn):
    ovn.add_chassis("cmp01", "127.0.0.51")
    ovn.add_chassis("ctl01", "127.0.0.11", gateway=True)
    assert ovn.nb_connection.startswith("tcp:127.0.0.1:")
    ovn.nbctl("set", "NB_Global", ".", "nb_cfg=5")  # what neutron's agent check bumps
    _until(lambda: ovn.sbctl("get", "SB_Global", ".", "nb_cfg") == "5")  # ovn-northd
    ovn.start_keeper()
    _until(lambda: ovn.sbctl("get", "chassis_private", "cmp01", "nb_cfg") == "5"
           and ovn.sbctl("get", "chassis_private", "ctl01", "nb_cfg") == "5")
    # northd reports the slowest chassis back to the NB: every chassis caught up
    _until(lambda: ovn.nbctl("get", "NB_Global", ".", "hv_cfg") == "5")
    gateways = ovn.sbctl("--bare", "--columns=name", "find", "chassis",
                         "other_config:ovn-cms-options=enable-chassis-as-gw")
    assert gateways.split() == ["ctl01"]


def test_a_second_handle_finds_the_running_ovn(ovn):
    ovn.add_chassis("cmp02", "127.0.0.52")
    again = OVN(ovn.run_dir)
    assert again.running() and again.chassis == {"cmp02": {"encap_ip": "127.0.0.52",
                                                           "gateway": False}}
    assert again.sbctl("--bare", "--columns=name", "list", "chassis") == "cmp02"
