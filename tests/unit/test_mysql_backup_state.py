"""mysql_backup states: compare, return early, test=True says "Would", act, re-check."""
import pytest

import leapfrog_errors
from tests.loader import load

state = load("states", "mysql_backup")

BACKUP = {"id": "20261122T000000.000Z-run1", "label": "run1", "databases": ["nova", "nova_api"],
          "created": "2026-11-22T00:00:00+00:00", "path": "/b/20261122T000000.000Z-run1"}


class Fake:
    """The execution module, as __salt__ functions recording their calls."""

    def __init__(self):
        self.backups = []
        self.corrupt = set()
        self.dbs = {"nova": {"t": {"rows": 1, "checksum": 9}}}
        self.calls = []

    def list(self, backup_dir=None):
        return list(self.backups)

    def verify(self, backup_id, backup_dir=None):
        self.calls.append(("verify", backup_id))
        if backup_id in self.corrupt:
            raise leapfrog_errors.LeapfrogError(f"backup {backup_id} is corrupt: nova.sql.zst")
        return {"id": backup_id, "valid": True, "databases": {"nova": {}, "nova_api": {}}}

    def backup(self, databases=None, backup_dir=None, label=None, compression=None, **conn):
        self.calls.append(("backup", databases, label))
        new = dict(BACKUP, id=f"20261122T010000.000Z-{label}", label=label)
        self.backups.append(new)
        return {**new, "databases": {db: {"sha256": "ab", "rows": 3} for db in databases}}

    def exists(self, names, **conn):
        return {n: n in self.dbs for n in names}

    def checksums(self, names, **conn):
        return {n: self.dbs[n] for n in names}

    def clone(self, names, suffix="_upgrade", force=False, **conn):
        self.calls.append(("clone", names, suffix, force))
        for name in names:
            self.dbs[name + suffix] = dict(self.dbs[name])
        return {n: {"target": n + suffix, "tables": 1, "rows": 1, "identical": True,
                    "differences": []} for n in names}

    def drop_clone(self, names, suffix="_upgrade", **conn):
        self.calls.append(("drop_clone", names, suffix))
        for name in names:
            self.dbs.pop(name + suffix, None)
        return {}


@pytest.fixture
def fake():
    return Fake()


@pytest.fixture
def configure_loader_modules(fake):
    funcs = {f"mysql_backup.{n}": getattr(fake, n)
             for n in ("list", "verify", "backup", "exists", "checksums", "clone", "drop_clone")}
    return {state: {"__salt__": funcs, "__opts__": {"test": False},
                    "__pillar__": {"leapfrog": {"database": {"databases": ["nova", "nova_api"]}}}}}


def test_present_with_a_verified_backup_changes_nothing(fake):
    fake.backups.append(BACKUP)
    ret = state.present("run1")
    assert ret["result"] is True and ret["changes"] == {}
    assert ret["comment"] == ("Backup 20261122T000000.000Z-run1 of nova, nova_api is present "
                              "and verified")
    assert not [c for c in fake.calls if c[0] == "backup"]


def test_present_test_mode_says_would_and_does_nothing(fake, monkeypatch):
    monkeypatch.setitem(state.__opts__, "test", True)
    ret = state.present("run2", databases=["nova"])
    assert ret["result"] is None
    assert ret["comment"] == "Would back up nova with label run2"
    assert ret["changes"]["new"] == {"label": "run2", "databases": ["nova"]}
    assert fake.calls == []


def test_present_takes_and_verifies_a_backup(fake):
    ret = state.present("run2")
    assert ret["result"] is True
    assert ("backup", ["nova", "nova_api"], "run2") in fake.calls
    assert ("verify", "20261122T010000.000Z-run2") in fake.calls
    assert ret["changes"]["old"] is None
    assert ret["changes"]["new"]["id"] == "20261122T010000.000Z-run2"
    assert state.present("run2")["changes"] == {}


def test_present_replaces_a_corrupt_backup(fake):
    fake.backups.append(BACKUP)
    fake.corrupt.add(BACKUP["id"])
    ret = state.present("run1")
    assert ret["result"] is True and ret["changes"]["new"]["id"].endswith("-run1")
    assert "is corrupt" in ret["comment"]


def test_present_ignores_an_old_backup_with_max_age(fake):
    fake.backups.append(BACKUP)
    ret = state.present("run1", max_age=60)
    assert ret["changes"]["new"]["id"] == "20261122T010000.000Z-run1"


def test_present_failure_is_result_false_with_the_error(fake, monkeypatch):
    def broken(**kwargs):
        raise leapfrog_errors.LeapfrogError("not enough free space in /b for a backup of nova")

    monkeypatch.setitem(state.__salt__, "mysql_backup.backup", broken)
    ret = state.present("run3")
    assert ret["result"] is False
    assert ret["comment"] == "not enough free space in /b for a backup of nova"


def test_cloned_creates_then_is_idempotent(fake):
    ret = state.cloned("nova")
    assert ret["result"] is True
    assert ret["changes"]["new"] == {"clone": "nova_upgrade", "tables": 1, "rows": 1}
    assert ret["comment"] == "Created nova_upgrade as a clone of nova (1 rows)"
    again = state.cloned("nova")
    assert again["changes"] == {} and again["comment"] == "nova_upgrade is an identical clone of nova"


def test_cloned_test_mode(fake, monkeypatch):
    monkeypatch.setitem(state.__opts__, "test", True)
    ret = state.cloned("nova")
    assert ret["result"] is None and ret["comment"] == "Would create nova_upgrade as a clone of nova"
    assert "nova_upgrade" not in fake.dbs


def test_cloned_refuses_a_differing_clone_without_force(fake):
    fake.dbs["nova_upgrade"] = {"t": {"rows": 5, "checksum": 1}}
    ret = state.cloned("nova")
    assert ret["result"] is False
    assert ret["comment"] == ("nova_upgrade exists and differs from nova in 1 table(s) (t): set "
                              "force: True to re-clone it")
    ret = state.cloned("nova", force=True)
    assert ret["result"] is True and ("clone", ["nova"], "_upgrade", True) in fake.calls
    assert ret["comment"].startswith("Replaced nova_upgrade")


def test_clone_absent(fake, monkeypatch):
    assert state.clone_absent("nova")["comment"] == "nova_upgrade is already absent"
    fake.dbs["nova_upgrade"] = {}
    monkeypatch.setitem(state.__opts__, "test", True)
    ret = state.clone_absent("nova")
    assert ret["result"] is None and ret["comment"] == "Would drop nova_upgrade"
    monkeypatch.setitem(state.__opts__, "test", False)
    ret = state.clone_absent("nova")
    assert ret["changes"] == {"old": "nova_upgrade", "new": None}
    assert "nova" in fake.dbs and "nova_upgrade" not in fake.dbs
