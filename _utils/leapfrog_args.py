"""Parse and range-check the numeric, boolean and enum arguments of modules and states.

Values arrive as Python objects (states, the loader) or as strings (``salt-call key=value``).
Each parser returns the clean value or raises ``LeapfrogError`` in one line naming the
argument, the value given and what is accepted: never a traceback, never a silent default.
"""
import math

import leapfrog_errors

_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def _bad(name, value, accepted):
    return leapfrog_errors.LeapfrogError(f"invalid {name}={value!r}: {accepted}")


def integer(name, value, low, high):
    """``value`` as an int in ``[low, high]`` (``"42"`` and ``42.0`` count; bools do not)."""
    accepted = f"a whole number from {low} to {high}"
    if isinstance(value, bool):
        raise _bad(name, value, accepted)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        value = int(value.strip())
    if not isinstance(value, int) or not low <= value <= high:
        raise _bad(name, value, accepted)
    return value


def number(name, value, low, high):
    """``value`` as a finite float in ``[low, high]`` (nan and inf refused)."""
    accepted = f"a number of seconds from {low} to {high}"
    if isinstance(value, bool):
        raise _bad(name, value, accepted)
    try:
        parsed = float(value)
    except (TypeError, ValueError):
        raise _bad(name, value, accepted) from None
    if not math.isfinite(parsed) or not low <= parsed <= high:
        raise _bad(name, value, accepted)
    return parsed


def boolean(name, value):
    """``value`` as a bool: True/False, or true/false/yes/no/on/off/1/0 in any case."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise _bad(name, value, "True or False")


def choice(name, value, choices):
    """``value`` when it is one of ``choices`` (compared as given, case-sensitive)."""
    if not isinstance(value, str) or value not in choices:
        raise _bad(name, value, "one of " + ", ".join(choices))
    return value
