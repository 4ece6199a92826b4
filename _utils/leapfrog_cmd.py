"""The one way leapfrog runs external commands on a minion.

argv lists only (``python_shell=False``), stdin for secrets, and a non-zero exit raised as
``CommandFailed`` carrying the tail of stderr. Callers pass ``__salt__["cmd.run_all"]`` so the
helper stays a plain function usable from any loader module.
"""
import leapfrog_errors

STDERR_TAIL_LINES = 20


def tail(text, lines=STDERR_TAIL_LINES):
    """Return the last ``lines`` lines of ``text`` (for error messages)."""
    return "\n".join((text or "").strip().splitlines()[-lines:])


def run(run_all, argv, ok_codes=(0,), env=None, stdin=None, cwd=None, timeout=None):
    """Run ``argv`` through ``run_all`` (``cmd.run_all``) and return its result dict.

    Raises ``CommandFailed`` when the exit code is not in ``ok_codes``. ``stdin`` is how a
    secret reaches a command: never put one in ``argv`` or ``env`` shown in logs.
    """
    if not isinstance(argv, (list, tuple)) or not argv or not all(isinstance(a, str) for a in argv):
        raise leapfrog_errors.LeapfrogError(f"command must be a list of strings, got {argv!r}")
    result = run_all(
        argv,
        python_shell=False,
        env=env or {},
        stdin=stdin,
        cwd=cwd,
        timeout=timeout,
        output_loglevel="quiet" if stdin else "debug",
        ignore_retcode=True,
    )
    if result["retcode"] not in ok_codes:
        detail = tail(result.get("stderr")) or tail(result.get("stdout")) or "no output"
        raise leapfrog_errors.CommandFailed(
            f"{argv[0]} exited {result['retcode']}: {detail}"
        )
    return result
