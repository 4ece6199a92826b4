"""Bad inputs to haproxy_admin against a real haproxy 2.6: each refused with a line that
names the problem and the fix, and haproxy's server states unchanged afterwards."""
import pytest

from tests.functional.test_haproxy_admin import configure_loader_modules, haproxy_admin  # noqa: F401 pylint: disable=unused-import

# (call, kwargs, words the error must hold)
BAD_INPUTS = [
    ("drain", {"server": "ctl01", "timeout": "nan"}, "drain timeout (seconds) must be"),
    ("drain", {"server": "ctl01", "timeout": -1}, "from 0 to 604800"),
    ("drain", {"server": "ctl01", "on_timeout": "mainte"}, "on_timeout must be one of fail, maint"),
    ("drain", {"server": "ctl01", "allow_last": "maybe"}, "allow_last must be true or false"),
    ("drain", {"server": "ctl01\n"}, "no whitespace, newline"),
    ("drain", {"server": "ctl01", "socket_timeout": "abc"}, "socket timeout (seconds)"),
    ("ready", {"server": "ctl01", "timeout": "inf"}, "not finite"),
    ("set_state", {"server": "ctl01", "state": "down"}, "unknown server state"),
    ("set_state", {"server": "ctl01", "state": "ready", "health": "sick"},
     "unknown server health"),
]


@pytest.mark.parametrize("func, kwargs, words", BAD_INPUTS,
                         ids=[f"{f}-{'-'.join(map(str, k.values()))}" for f, k, _ in BAD_INPUTS])
def test_bad_input_is_refused_and_nothing_changes(haproxy_lab, func, kwargs, words):
    before = haproxy_lab.statuses()
    with pytest.raises(haproxy_admin.HAProxyError) as err:
        getattr(haproxy_admin, func)(**kwargs)
    assert words in str(err.value)
    assert "\n" not in str(err.value).strip()
    assert haproxy_lab.statuses() == before


def test_the_last_server_up_is_not_drained_without_allow_last(haproxy_lab):
    haproxy_admin.drain("ctl02", timeout=10)
    before = haproxy_lab.statuses()
    with pytest.raises(haproxy_admin.LastServer) as err:
        haproxy_admin.drain("ctl01", timeout=10)
    assert "ctl01 is the last server UP in backend(s) keystone, nova, placement" in \
        str(err.value) and "allow_last=True" in str(err.value)
    assert haproxy_lab.statuses() == before
    out = haproxy_admin.drain("ctl01", timeout=10, allow_last=True)
    assert all(info["status"] == "MAINT" for info in out["backends"].values())
