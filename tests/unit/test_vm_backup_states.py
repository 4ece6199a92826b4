"""vm_backup states: compare, return early, test mode says "Would ...", act, re-check."""
import pytest
from salt.exceptions import CommandExecutionError

from tests.loader import load

states = load("states", "vm_backup")

IMAGE = "/images/trixie.qcow2"


class FakeModule:
    """Stand-in for the vm_backup execution module: records calls, keeps simple state."""

    def __init__(self):
        self.backups = []
        self.calls = []
        self.domain = {"domain": "ctl01", "uuid": "u-old", "active": True,
                       "image": "/images/bookworm.qcow2", "disks": []}
        self.broken = set()

    def salt(self):
        return {
            "vm_backup.backup": self.backup,
            "vm_backup.list": self.list_,
            "vm_backup.verify": self.verify,
            "vm_backup.info": self.info,
            "vm_backup.rebuild": self.rebuild,
            "vm_backup.start": self.start,
            "vm_backup.restore": self.restore,
            "vm_backup.manifest": self.manifest,
        }

    def backup(self, name, **kwargs):
        self.calls.append(("backup", kwargs.get("tag")))
        item = {"id": f"{name}/2026-{kwargs.get('tag')}", "tag": kwargs.get("tag"),
                "created": "2026-01-01T00:00:00+00:00"}
        self.backups.insert(0, item)
        return {"backup": item["id"]}

    def list_(self, domain=None, backup_dir=None):
        return list(self.backups)

    def verify(self, backup, backup_dir=None, domain=None):
        if backup in self.broken:
            raise CommandExecutionError(f"backup {backup} failed verification: sha256")
        return {"backup": backup, "verified": True, "disks": []}

    def manifest(self, backup, backup_dir=None, domain=None):
        return {"uuid": "u-old", "disks": []}

    def info(self, name, uri=None):
        if self.domain is None:
            raise CommandExecutionError(f"domain {name!r} is not defined on test:///")
        return dict(self.domain)

    def rebuild(self, node, image, **kwargs):
        self.calls.append(("rebuild", image))
        if self.domain and self.domain["active"] and not kwargs.get("stop"):
            raise CommandExecutionError("domain 'ctl01' is running")
        self.domain = {"domain": "ctl01", "uuid": "u-new", "active": True, "image": image,
                       "disks": []}

    def start(self, name, uri=None):
        self.calls.append(("start", name))
        self.domain["active"] = True

    def restore(self, name, backup, **kwargs):
        self.calls.append(("restore", backup))
        self.domain = {"domain": "ctl01", "uuid": "u-old", "active": kwargs.get("start"),
                       "image": None, "disks": []}


@pytest.fixture
def fake():
    return FakeModule()


@pytest.fixture
def configure_loader_modules(fake):
    return {states: {"__salt__": fake.salt(), "__opts__": {"test": False}}}


def test_present_takes_a_backup_once(fake):
    ret = states.present("ctl01", tag="run1")
    assert ret["result"] is True and ret["changes"] == {"old": None, "new": "ctl01/2026-run1"}
    ret = states.present("ctl01", tag="run1")
    assert ret["result"] is True and ret["changes"] == {}
    assert fake.calls == [("backup", "run1")]


def test_present_in_test_mode_changes_nothing(fake):
    states.__opts__["test"] = True
    ret = states.present("ctl01", tag="run1")
    assert ret["result"] is None and ret["comment"] == "Would back up domain ctl01 (offline, tag run1)"
    assert fake.calls == []


def test_present_does_not_count_a_broken_backup(fake):
    fake.backups = [{"id": "ctl01/old", "tag": "run1", "created": "2026-01-01T00:00:00+00:00"}]
    fake.broken.add("ctl01/old")
    states.__opts__["test"] = True
    ret = states.present("ctl01", tag="run1")
    assert ret["result"] is None and "unusable backups: backup ctl01/old failed" in ret["comment"]


def test_present_reports_a_failed_backup(fake):
    def boom(name, **kwargs):
        raise CommandExecutionError("not enough space for a backup of 'ctl01'")

    states.__salt__["vm_backup.backup"] = boom
    ret = states.present("ctl01")
    assert ret["result"] is False and "not enough space" in ret["comment"]


def test_runs_image_compares_then_rebuilds(fake):
    ret = states.runs_image("ctl01", "/images/bookworm.qcow2")
    assert ret["result"] is True and ret["changes"] == {}
    states.__opts__["test"] = True
    ret = states.runs_image("ctl01", IMAGE)
    assert ret["result"] is None and ret["comment"] == f"Would rebuild domain ctl01 from {IMAGE}"
    assert ret["changes"]["old"] == {"image": "/images/bookworm.qcow2", "active": True}
    states.__opts__["test"] = False
    ret = states.runs_image("ctl01", IMAGE)
    assert ret["result"] is False and "is running" in ret["comment"]
    ret = states.runs_image("ctl01", IMAGE, stop=True)
    assert ret["result"] is True and ret["changes"]["new"] == {"image": IMAGE, "active": True}
    ret = states.runs_image("ctl01", IMAGE)
    assert ret["result"] is True and ret["changes"] == {}


def test_runs_image_starts_a_stopped_rebuilt_domain(fake):
    fake.domain.update(image=IMAGE, active=False)
    ret = states.runs_image("ctl01", IMAGE)
    assert ret["result"] is True and ret["changes"]["new"] == {"active": True}
    assert fake.calls == [("start", "ctl01")]


def test_restored_compares_uuid_then_restores(fake):
    ret = states.restored("ctl01", "ctl01/b1")
    assert ret["result"] is True and ret["changes"] == {}
    fake.domain["uuid"] = "u-new"
    states.__opts__["test"] = True
    ret = states.restored("ctl01", "ctl01/b1", stop=True)
    assert ret["result"] is None and ret["comment"] == "Would restore ctl01 from backup ctl01/b1"
    states.__opts__["test"] = False
    ret = states.restored("ctl01", "ctl01/b1", stop=True)
    assert ret["result"] is True and ret["changes"]["old"]["uuid"] == "u-new"
    assert fake.calls == [("restore", "ctl01/b1")]


def test_restored_refuses_a_broken_backup(fake):
    fake.domain["uuid"] = "u-new"
    fake.broken.add("ctl01/b1")
    ret = states.restored("ctl01", "ctl01/b1")
    assert ret["result"] is False and "not usable" in ret["comment"]
    assert fake.calls == []
