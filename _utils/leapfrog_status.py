"""The ``<service>-status upgrade check`` tools (oslo.upgradecheck: nova-status,
neutron-status, cinder-status): their table parsed into checks, their exit code into an
outcome (0 Success, 1 Warning, 2 Failure; anything else: the tool crashed).

    >>> outcome(1, "| Check: Policy File  |\\n| Result: Warning |\\n| Details: None |")["warnings"]
    ['Policy File']
"""
import re

RESULTS = {0: "Success", 1: "Warning", 2: "Failure"}


_HEADER = re.compile(r"^\|\s*Check:\s*(.+?)\s*\|\s*$")
_FIELD = re.compile(r"^\|\s*(Result|Details):\s*(.*?)\s*\|\s*$")
_MORE = re.compile(r"^\|\s{2,}(.*?)\s*\|\s*$")


def parse(text):
    """Parse a ``*-status upgrade check`` table into ``[{name, result, details}]``."""
    checks, current, field = [], None, None
    for line in text.splitlines():
        line = line.rstrip()
        head = _HEADER.match(line)
        if head:
            current = {"name": head.group(1), "result": None, "details": ""}
            checks.append(current)
            field = None
            continue
        if current is None:
            continue
        match = _FIELD.match(line)
        if match:
            field = match.group(1).lower()
            current[field] = match.group(2)
            continue
        more = _MORE.match(line)
        if more and field == "details" and more.group(1):
            # PrettyTable wraps long words (URLs) too: no space where a word was cut
            text, cont = current["details"], more.group(1)
            glue = "" if text.endswith(("-", "/")) or cont.startswith((".", "/")) else " "
            current["details"] = (text + glue + cont).strip()
    for check in checks:
        check["details"] = check["details"] or None
    return checks


def outcome(retcode, stdout):
    """``{"code", "result", "checks", "failed", "warnings"}`` of one run (``retcode`` in
    ``RESULTS``: the caller raises on any other)."""
    checks = parse(stdout)
    return {"code": retcode, "result": RESULTS[retcode], "checks": checks,
            "failed": [c["name"] for c in checks if c["result"] == "Failure"],
            "warnings": [c["name"] for c in checks if c["result"] == "Warning"]}
