"""Salt's schedulers kept out of the way while a run works, as an operator turns puppet off
on every node before an upgrade: a scheduled highstate firing mid-run would redeploy the
release the run has just replaced, or restart what a step has stopped.

At a run's begin every minion of the cluster whose scheduler is on is turned off
(``schedule.disable``, persisted: it stays off across a minion restart) and listed in the
cluster's ``paused_schedules.json`` beside its lock, with the run that paused it; the run's
journal records the same. The end of a run, the stop after its failure and the end of a
rollback turn every listed scheduler back on and empty the list. Only what leapfrog turned
off is turned on again: a scheduler the operator had off stays off. A minion that does not
answer stays listed (the next run's end retries it); a rebuilt node (a new minion, whose
scheduler starts on) is turned off again when its old minion was listed.
"""
import os
import time

import leapfrog_errors
import leapfrog_journal

FILE = "paused_schedules.json"


def _disabled(ret):
    return isinstance(ret, dict) and ret.get("result") is True


class PausedSchedules:
    """The cluster's list of schedulers leapfrog turned off, and the calls that turn them
    off and on. ``call_each(ids, fun)`` runs ``fun`` on minion ids and returns
    ``({id: return}, {id: problem})`` (``leapfrog_minions.call_each`` on the master)."""

    def __init__(self, root, cluster, call_each, clock=time.time):
        self.path = os.path.join(root, cluster, FILE)
        self.call_each = call_each
        self.clock = clock

    def listed(self):
        """{minion id: {run, at}} of the schedulers leapfrog turned off."""
        return dict((leapfrog_journal.read_json(self.path) or {}).get("minions") or {})

    def _write(self, minions):
        leapfrog_journal.write_json(self.path, {"minions": minions})

    def _turn_off(self, ids, run):
        """Disable the scheduler of ``ids``, list each that went off; returns (off, problems)."""
        done, problems = self.call_each(ids, "schedule.disable") if ids else ({}, {})
        off = sorted(mid for mid, ret in done.items() if _disabled(ret))
        problems.update({mid: f"{mid}: schedule.disable said {ret!r}"
                         for mid, ret in done.items() if not _disabled(ret)})
        if off:
            minions = self.listed()
            at = leapfrog_journal.iso(self.clock())
            minions.update({mid: {"run": run, "at": at} for mid in off})
            self._write(minions)
        return off, problems

    def pause(self, ids, run):
        """Turn off the scheduler of every minion of ``ids`` that has it on.

        Returns {"paused": [...], "already_off": [...] (the operator's: left alone),
        "silent": {id: problem}} (not paused: they did not answer)."""
        found, silent = self.call_each(sorted(ids), "schedule.is_enabled")
        listed = self.listed()
        on = sorted(mid for mid, enabled in found.items() if enabled is not False)
        already = sorted(mid for mid, enabled in found.items()
                         if enabled is False and mid not in listed)
        off, problems = self._turn_off(on, run)
        silent.update(problems)
        return {"paused": sorted(set(off) | (set(found) & set(listed))),
                "already_off": already, "silent": silent}

    def pause_rebuilt(self, node, run):
        """Turn off a rebuilt node's new scheduler when its old one was listed; returns
        whether it did."""
        if node not in self.listed():
            return False
        off, problems = self._turn_off([node], run)
        if problems:
            raise leapfrog_errors.LeapfrogError("; ".join(problems.values()))
        return bool(off)

    def resume(self):
        """Turn every listed scheduler back on; returns {"resumed": [...], "silent":
        {id: problem}} (those stay listed)."""
        listed = self.listed()
        if not listed:
            return {"resumed": [], "silent": {}}
        done, silent = self.call_each(sorted(listed), "schedule.enable")
        resumed = sorted(mid for mid, ret in done.items()
                         if isinstance(ret, dict) and ret.get("result") is True)
        silent.update({mid: f"{mid}: schedule.enable said {ret!r}"
                       for mid, ret in done.items() if mid not in resumed})
        self._write({mid: value for mid, value in listed.items() if mid not in resumed})
        return {"resumed": resumed, "silent": silent}
