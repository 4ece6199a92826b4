"""Keep Salt's own "unclosed ... call ``destroy()``" warnings out of an operator's output.

Salt 3008 logs a WARNING when a client object it created itself is garbage-collected
without ``destroy()`` (``saltutil.runner``, which every ``salt.runner`` state and an
orchestration's render call, never closes its RunnerClient, MasterMinion or MasterEvent);
its finalizer then closes the object, so nothing leaks. leapfrog's own code closes what it
opens (context managers); this filter drops only those messages, on the loggers that emit
them, so ``salt-run state.orch`` prints the run's progress and not a screen of them.
"""
import logging

LOGGERS = ("salt.runner", "salt.minion", "salt.utils.event", "salt.wheel", "salt.client",
           "salt.utils.resource_warnings")


class _Unclosed(logging.Filter):
    def filter(self, record):
        message = record.getMessage()
        return not (message.startswith("unclosed ") and "destroy()" in message)


FILTER = _Unclosed()


def install():
    """Add the filter to Salt's loggers (once per process)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if FILTER not in logger.filters:
            logger.addFilter(FILTER)
