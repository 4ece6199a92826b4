"""One exception hierarchy for leapfrog.

Every error is a ``CommandExecutionError`` so Salt shows its text (not a traceback) when an
execution module or state raises it; runners catch ``LeapfrogError`` and turn it into a
non-zero retcode so an orchestration stops.
"""
from salt.exceptions import CommandExecutionError


class LeapfrogError(CommandExecutionError):
    """Base of every error leapfrog raises on purpose."""


class PillarInvalid(LeapfrogError):
    """The cluster pillar is missing keys or holds wrong values.

    ``problems`` holds one readable line per problem.
    """

    def __init__(self, problems, source=""):
        self.problems = list(problems)
        where = f" ({source})" if source else ""
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid leapfrog pillar{where}: {len(self.problems)} problem(s)\n{lines}")


class ClusterUnknown(LeapfrogError):
    """The cluster named on the command line is not in the master's pillar."""


class CommandFailed(LeapfrogError):
    """An external command exited non-zero; the message carries its stderr tail."""
