"""The strategy of a control-plane run: ``strategy()`` decides whether the asked
combination of path, strategy and compute releases is possible (nova refuses a control
plane beside computes that are too old) and, when not, says why and what would work. The
plan built from that decision is ``leapfrog_builders``'s; nova's service versions per
release (``NOVA``, ``release_of``) live here too.
"""

import leapfrog_errors
import leapfrog_schema

# Release -> code name, for messages.
NAMES = {"2023.1": "Antelope", "2023.2": "Bobcat", "2024.1": "Caracal",
         "2024.2": "Dalmatian", "2025.1": "Epoxy", "2025.2": "Flamingo",
         "2026.1": "Gazpacho", "2026.2": "Hibiscus"}
KNOWN = ["2023.1", "2023.2"] + leapfrog_schema.RELEASES

# nova/objects/service.py per release: (SERVICE_VERSION, oldest compute release accepted).
# Measured in FACTS.md for 2024.1 (67, Antelope), 2025.1 (68, Caracal), 2026.1 (72, Epoxy);
# the .2 releases follow the SLURP rule (oldest = the previous .1), version not recorded.
NOVA = {
    "2023.1": (66, None),  # Antelope: only as the oldest compute 2024.1 accepts
    "2024.1": (67, "2023.1"),
    "2024.2": (None, "2024.1"),
    "2025.1": (68, "2024.1"),
    "2025.2": (None, "2025.1"),
    "2026.1": (72, "2025.1"),
    "2026.2": (None, "2026.1"),
}


def release_of(version):
    """The release whose nova-compute/conductor writes service version ``version``: the
    newest release leapfrog knows whose SERVICE_VERSION is not above it (None if older than
    all)."""
    found = None
    for release in KNOWN:
        known = NOVA.get(release, (None, None))[0]
        if known is not None and known <= int(version):
            found = release
    return found


def label(release):
    return f"{release} ({NAMES[release]})" if release in NAMES else str(release)


class Impossible(leapfrog_errors.LeapfrogError):
    """The asked strategy cannot work with the releases found; says why and what can."""

    def __init__(self, reason, alternatives):
        self.reason = reason
        self.alternatives = list(alternatives)
        lines = "\n".join(f"  - {a}" for a in self.alternatives)
        super().__init__(f"{reason}\nValid alternatives:\n{lines}")


def _index(release):
    return KNOWN.index(release)


def strategy(path, chosen, control, computes, to=None):
    """Check the control-plane run asked for and return its decision.

    ``path`` lists every release (pillar ``releases:path``), ``chosen`` is ``rolling`` or
    ``fast_forward``, ``control`` the control plane's release now, ``computes`` maps each
    compute to its release, ``to`` the control plane's release at the end of this run
    (default: the end of the path). Returns ``{"strategy", "hops", "computes_to",
    "why"}`` or raises ``Impossible`` with the reason and the valid alternatives.
    """
    if chosen not in leapfrog_schema.STRATEGIES:
        raise leapfrog_errors.LeapfrogError(
            f"strategy {chosen!r}: use one of {', '.join(leapfrog_schema.STRATEGIES)}")
    to = to or path[-1]
    problems = []
    if control not in path:
        problems.append(f"the control plane runs {control}, which is not on the path "
                        f"{' -> '.join(path)}")
    if to not in path:
        problems.append(f"to={to} is not on the path {' -> '.join(path)}")
    unknown = sorted(n for n, r in computes.items() if r not in KNOWN)
    if unknown:
        problems.append("compute release unknown for " + ", ".join(
            f"{n} ({computes[n]!r})" for n in unknown) + f"; known: {', '.join(KNOWN)}")
    if problems:
        raise leapfrog_errors.LeapfrogError("; ".join(problems))
    if path.index(to) < path.index(control):
        raise leapfrog_errors.LeapfrogError(
            f"to={to} is behind the control plane's release {control}: leapfrog does not "
            "downgrade (use orch.rollback_control_plane with a run's backups)")
    newer = sorted(n for n, r in computes.items() if _index(r) > _index(control))
    if newer:
        raise leapfrog_errors.LeapfrogError(
            f"compute(s) {', '.join(newer)} run a newer release than the control plane "
            f"({control}): nova does not support that; check the inventory")
    hops = list(zip(path[path.index(control):path.index(to)],
                    path[path.index(control) + 1:path.index(to) + 1]))
    oldest = min((computes[n] for n in computes), key=_index, default=None)
    if chosen == "fast_forward":
        return {"strategy": chosen, "hops": hops, "computes_to": to, "control": control,
                "why": ("fast_forward: nova-compute is stopped on every compute (servers "
                        "keep running), the control plane goes "
                        f"{' -> '.join([control] + [h[1] for h in hops])} through the staged "
                        "syncs with [workarounds] disable_compute_service_check_for_ffu, then "
                        f"every compute switches to {to}; the API is closed meanwhile")}
    for old, new in hops:
        version, needs = NOVA[new]
        too_old = sorted(n for n, r in computes.items() if _index(r) < _index(needs))
        if not too_old:
            continue
        reachable = old
        alternatives = []
        if reachable != control:
            alternatives.append(
                f"rolling, one hop now: to={reachable} (control plane "
                f"{control} -> {reachable}), then orch.upgrade_data_plane to take the "
                f"computes to {reachable}, then the control plane to {to}")
        else:
            alternatives.append(
                f"upgrade the computes to {needs} or newer first (orch.upgrade_data_plane), "
                f"then the rolling hop {old} -> {new}")
        alternatives.append(
            f"strategy fast_forward (pillar releases:strategy: fast_forward): stop "
            f"nova-compute everywhere (servers keep running), control plane straight to "
            f"{to} with the FFU workaround, computes switched to {to}; API closed meanwhile")
        shown = ", ".join(f"{n} ({computes[n]})" for n in too_old[:5])
        more = f" and {len(too_old) - 5} more" if len(too_old) > 5 else ""
        vtext = f", service version {version}" if version else ""
        raise Impossible(
            f"rolling control-plane hop {old} -> {new} is impossible: nova {new} "
            f"({NAMES[new]}{vtext}) refuses computes older than {label(needs)}; found "
            f"{shown}{more}. The computes must reach {needs} before this hop",
            alternatives)
    why = "rolling: the API stays up; " + (
        f"the computes ({label(oldest)} and newer) are accepted by every hop's control "
        "plane" if oldest else "no compute found to constrain the hops")
    return {"strategy": chosen, "hops": hops, "computes_to": None, "control": control,
            "why": why}
