"""Parse and range-check what an operator types: numbers, yes/no, one of a few words.

Every input of a module, state or runner that is a number or an enum goes through here, so
``timeout=nan``, ``keep=abc`` or ``servers=forse`` get one clear line naming the argument,
the value and what is accepted (a ``LeapfrogError``: Salt shows its text, never a
traceback), instead of a traceback or a silent default.
"""
import math

import leapfrog_errors

_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def _fmt(value):
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _range_text(minimum, maximum):
    if minimum is not None and maximum is not None:
        return f"from {_fmt(minimum)} to {_fmt(maximum)}"
    if minimum is not None:
        return f"{_fmt(minimum)} or more"
    if maximum is not None:
        return f"at most {_fmt(maximum)}"
    return "any finite number"


def number(value, name, minimum=None, maximum=None, integer=False,
           error=leapfrog_errors.LeapfrogError):
    """``value`` as a finite float (an int with ``integer``) within [minimum, maximum]."""
    what = "a whole number" if integer else "a number"
    allowed = _range_text(minimum, maximum)
    if isinstance(value, bool) or value is None or (isinstance(value, str) and not value.strip()):
        raise error(f"{name} must be {what} ({allowed}), got {value!r}")
    try:
        parsed = float(str(value).strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        raise error(f"{name} must be {what} ({allowed}), got {value!r}") from None
    if not math.isfinite(parsed):
        raise error(f"{name} must be {what} ({allowed}), got {value!r} (not finite)")
    if integer:
        if parsed != int(parsed):
            raise error(f"{name} must be {what} ({allowed}), got {value!r}")
        parsed = int(parsed)
    if (minimum is not None and parsed < minimum) or (maximum is not None and parsed > maximum):
        raise error(f"{name} must be {allowed}, got {value!r}")
    return parsed


def seconds(value, name, minimum=0, maximum=7 * 24 * 3600, error=leapfrog_errors.LeapfrogError):
    """A duration in seconds: finite, not negative, a week at most by default."""
    return number(value, f"{name} (seconds)", minimum=minimum, maximum=maximum, error=error)


def boolean(value, name, error=leapfrog_errors.LeapfrogError):
    """True/False from a bool or one of true/false, yes/no, on/off, 1/0."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise error(f"{name} must be true or false, got {value!r}")


def choice(value, name, choices, error=leapfrog_errors.LeapfrogError):
    """``value`` if it is one of ``choices`` exactly (no guessing at a near miss)."""
    if not isinstance(value, str) or value not in choices:
        raise error(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value
