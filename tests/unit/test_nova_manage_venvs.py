"""lab.openstack_venv without building anything: constraint files, the stamp check, errors."""
import json
import re

import pytest

from lab import openstack_venv


@pytest.mark.parametrize("release,nova", [("2024.1", 29), ("2025.1", 31), ("2026.1", 33)])
def test_constraints_pin_the_release(release, nova):
    with open(openstack_venv.constraints_file(release)) as handle:
        text = handle.read()
    pins = dict(re.findall(r"^([a-z0-9._-]+)==(\S+)$", text, re.M))
    assert pins["nova"].split(".")[0] == str(nova)
    assert int(pins["setuptools"].split(".")[0]) < 81
    for dist in ("keystone", "openstack-placement", "glance", "pymysql", "gunicorn"):
        assert dist in pins, dist
    assert f"--exclude-newer {openstack_venv.RELEASES[release].exclude_newer}" in text


def test_unknown_release():
    with pytest.raises(openstack_venv.VenvError, match="unknown release 2023.1; known: 2024.1, 2025.1, 2026.1"):
        openstack_venv.ensure("2023.1")


def test_stamp_is_the_cheap_check(tmp_path, monkeypatch):
    monkeypatch.setenv("LEAPFROG_CACHE", str(tmp_path))
    path = openstack_venv.venv_path("2025.1")
    assert path == str(tmp_path / "openstack" / "2025.1")
    assert openstack_venv.is_current("2025.1") is False
    (tmp_path / "openstack" / "2025.1").mkdir(parents=True)
    stamp = tmp_path / "openstack" / "2025.1" / openstack_venv.STAMP
    stamp.write_text(json.dumps({"constraints_sha256": openstack_venv.constraints_hash("2025.1")}))
    assert openstack_venv.is_current("2025.1") is True
    # current: ensure returns at once, without uv
    monkeypatch.setattr(openstack_venv, "uv_binary", lambda: pytest.fail("uv must not run"))
    assert openstack_venv.ensure("2025.1") == path
    # a changed constraint file (another hash) means a rebuild
    stamp.write_text(json.dumps({"constraints_sha256": "0" * 64}))
    assert openstack_venv.is_current("2025.1") is False


def test_missing_uv_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("LEAPFROG_CACHE", str(tmp_path))
    monkeypatch.delenv("LEAPFROG_UV", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(openstack_venv.VenvError, match="uv not found"):
        openstack_venv.ensure("2024.1")
