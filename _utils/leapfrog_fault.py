"""Fault injection at step boundaries: a TEST-ONLY switch.

Any journaled step (see ``leapfrog_journal``) can be made to fail or stall at its start or
end without editing code, so a fault matrix can cover every step of an orchestration.

Two sources, merged (both optional):

* the cluster pillar (or a runner's ``pillar=`` override)::

      leapfrog:
        clusters:
          lab:
            testing:
              fail_at: backup_dbs          # a step name, "name:end", or a list of them
              stall_at: rebuild_ctl02      # same syntax; the step sleeps at that boundary
              stall_seconds: 3600          # optional, default 3600

* environment variables of the process that runs the runner (``salt-run``):
  ``LEAPFROG_FAIL_AT``, ``LEAPFROG_STALL_AT`` (comma separated, same syntax) and
  ``LEAPFROG_STALL_SECONDS``.

``name`` (or ``name:start``) acts before the step's work, ``name:end`` after its work is
done but before the journal records it done (a crash between work and bookkeeping).
Never set these on a production cluster.
"""
import os
import time

import leapfrog_errors

BOUNDARIES = ("start", "end")
DEFAULT_STALL = 3600
# the note a stalled step gets in its journal record (a fault matrix strikes once it is there)
STALL_NOTE = "stalled at its {boundary} by the test-only fault switch"


class InjectedFault(leapfrog_errors.LeapfrogError):
    """Raised by a step that the test-only fault switch told to fail."""


def _points(value):
    if not value:
        return set()
    if isinstance(value, str):
        value = value.split(",")
    points = set()
    for item in value:
        item = str(item).strip()
        if not item:
            continue
        name, _, where = item.partition(":")
        where = where or "start"
        if where not in BOUNDARIES:
            raise leapfrog_errors.LeapfrogError(
                f"fault switch: {item!r}: boundary must be one of {', '.join(BOUNDARIES)}")
        points.add((name, where))
    return points


class Faults:
    """The fault points of one run: ``check(step, boundary)`` fails or stalls there."""

    def __init__(self, fail_at=None, stall_at=None, stall_seconds=DEFAULT_STALL,
                 sleep=time.sleep):
        self.fail_at = _points(fail_at)
        self.stall_at = _points(stall_at)
        self.stall_seconds = float(stall_seconds)
        self.sleep = sleep

    @classmethod
    def from_config(cls, config=None, environ=None, sleep=time.sleep):
        """Build from a cluster config's ``testing`` mapping and the environment."""
        testing = dict((config or {}).get("testing") or {})
        environ = os.environ if environ is None else environ
        fail = _points(testing.get("fail_at")) | _points(environ.get("LEAPFROG_FAIL_AT"))
        stall = _points(testing.get("stall_at")) | _points(environ.get("LEAPFROG_STALL_AT"))
        seconds = environ.get("LEAPFROG_STALL_SECONDS") or testing.get("stall_seconds") \
            or DEFAULT_STALL
        faults = cls(sleep=sleep, stall_seconds=seconds)
        faults.fail_at, faults.stall_at = fail, stall
        return faults

    def __bool__(self):
        return bool(self.fail_at or self.stall_at)

    def describe(self):
        """Readable list of the armed fault points (for logs and the journal)."""
        out = [f"fail at {n}:{w}" for n, w in sorted(self.fail_at)]
        out += [f"stall {self.stall_seconds:g} s at {n}:{w}" for n, w in sorted(self.stall_at)]
        return out

    def stalls(self, step, boundary="start"):
        """True when ``step`` is set to stall at ``boundary``."""
        return (step, boundary) in self.stall_at

    def check(self, step, boundary="start"):
        """Stall and/or fail if ``step`` has a fault point at ``boundary``."""
        if (step, boundary) in self.stall_at:
            self.sleep(self.stall_seconds)
        if (step, boundary) in self.fail_at:
            raise InjectedFault(
                f"step {step}: failure injected at its {boundary} by the test-only fault "
                "switch (testing:fail_at / LEAPFROG_FAIL_AT)")
