"""haproxy_admin and haproxy_server through Salt's own loader (module_dirs/states_dirs, pillar),
against the real lab haproxy: the names and dunders an operator's minion would use."""
import os

import pytest
import salt.config
import salt.loader

from tests.conftest import REPO


@pytest.fixture
def salt_env(haproxy_lab, haproxy_tmp):
    opts = salt.config.minion_config(None)
    opts.update({
        "file_client": "local",
        "cachedir": os.path.join(haproxy_tmp, "cache"),
        "module_dirs": [os.path.join(REPO, "_modules")],
        "states_dirs": [os.path.join(REPO, "_states")],
        "grains": {"id": "prx01"},
        "id": "prx01",
        "test": False,
        "pillar": {"leapfrog": {"haproxy": {"socket": haproxy_lab.socket, "timeout": 5,
                                            "drain_timeout": 20}}},
    })
    mods = salt.loader.minion_mods(opts, whitelist=["pillar", "config", "haproxy_admin"])
    utils = salt.loader.utils(opts)
    states = salt.loader.states(opts, mods, utils, {}, whitelist=["haproxy_server"])
    test_opts = {**opts, "test": True}
    test_states = salt.loader.states(test_opts, mods, salt.loader.utils(test_opts), {},
                                     whitelist=["haproxy_server"])
    return {"mods": mods, "states": states, "test_states": test_states}


def test_loader_functions_drain_and_ready(salt_env, haproxy_lab):
    mods = salt_env["mods"]
    assert mods["haproxy_admin.server_backends"]("ctl02") == ["keystone", "nova", "placement"]
    ret = salt_env["test_states"]["haproxy_server.drained"]("ctl02")
    assert ret["result"] is None and ret["comment"].startswith("Would drain ctl02")
    assert {s for (be, srv), s in haproxy_lab.statuses().items() if srv == "ctl02"} == {"UP"}

    ret = salt_env["states"]["haproxy_server.drained"]("ctl02", backends=["nova", "keystone"])
    assert ret["result"] is True, ret
    assert ret["changes"]["new"] == {"keystone": "MAINT", "nova": "MAINT"}
    ret = salt_env["test_states"]["haproxy_server.ready"]("ctl02")
    assert ret["result"] is None
    assert ret["changes"]["old"] == {"keystone": "MAINT", "nova": "MAINT"}
    ret = salt_env["states"]["haproxy_server.ready"]("ctl02")
    assert ret["result"] is True and ret["changes"]["new"] == {"keystone": "UP", "nova": "UP"}

    with pytest.raises(Exception) as err:
        mods["haproxy_admin.drain"]("ctl02\nshow info")
    assert "refused server" in str(err.value)
