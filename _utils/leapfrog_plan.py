"""Upgrade plans: a tree of steps (what, where, expected impact), COU style.

``Step`` is one node of the tree; ``render()`` gives the indented text an operator reads
and ``to_dict()`` the JSON a tool reads. ``strategy()`` decides whether the asked
combination of path, strategy and compute releases is possible (nova refuses a control
plane beside computes that are too old) and, when not, says why and what would work.
``control_plane()`` builds the tree from a recipe (``CONTROL_PLANE``, plain data) and the
cluster's pillar: the orchestrations fill in each stage's real content by editing the
recipe, not the builder.
"""
import copy
import json

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


class Step:
    """One step of a plan: a description, where it acts, its expected impact, children."""

    def __init__(self, description, targets=None, impact=None, children=None, name=None):
        self.description = description
        self.targets = targets
        self.impact = impact
        self.children = list(children or [])
        self.name = name

    def add(self, child):
        self.children.append(child)
        return child

    def line(self):
        text = self.description
        if self.targets:
            text += f" [on {self.targets}]"
        if self.impact:
            text += f" (impact: {self.impact})"
        return text

    def render(self, indent=0, width=4):
        """The tree as indented text, one step per line."""
        lines = [" " * (indent * width) + self.line()]
        for child in self.children:
            lines.append(child.render(indent + 1, width))
        return "\n".join(lines)

    def to_dict(self):
        out = {"description": self.description}
        for key in ("name", "targets", "impact"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        if self.children:
            out["children"] = [c.to_dict() for c in self.children]
        return out

    def to_json(self):
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def names(self):
        """Every named step, depth first (the journal's step names)."""
        found = [self.name] if self.name else []
        for child in self.children:
            found += child.names()
        return found


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


# The control-plane recipe. Each entry: name, description, targets, impact (format strings
# over the context), optional ``when`` (a strategy, or "first" for the first controller),
# ``foreach`` ("hops" or "controllers") and ``children``. Names become journal steps.
CONTROL_PLANE = [
    {"name": "precheck", "description": "Analyse and pre-check (collect every problem)",
     "targets": "all roles", "impact": "none, read-only", "children": [
         {"description": "Minions answer, pillar valid, nova-status upgrade check, DB "
                         "charsets, NULL compute hosts, free space, haproxy health, compute "
                         "service versions"}]},
    {"name": "plan", "description": "Plan: {why}", "impact": "none"},
    {"name": "backup", "description": "Back up and verify before anything changes",
     "impact": "none", "children": [
         {"name": "backup_dbs", "description": "Back up databases {databases} (consistent, "
                                               "checksummed, restore-tested)",
          "targets": "{database}"},
         {"description": "Each controller's VM disk is backed up (offline, verified) "
                         "when its turn comes, right before its rebuild"}]},
    {"name": "approve", "description": "Wait for approval: salt-run leapfrog.approve "
                                       "cluster={cluster} run=<run> (expires after {expiry} s)",
     "impact": "none; expiry aborts cleanly"},
    {"name": "stop_computes", "when": "fast_forward",
     "description": "Stop nova-compute on every compute (disabled with a reason; servers "
                    "keep running)", "targets": "{compute}", "impact": "workloads untouched"},
    {"name": "hop_{to}", "foreach": "hops", "when": "rolling",
     "description": "Control plane {frm} -> {to}", "targets": "{controller}",
     "impact": "one controller at a time out of haproxy; API up", "children": [
         {"name": "ctl_{to}_{node}", "foreach": "controllers",
          "description": "Controller {node}: drain, stop, back up disk, rebuild on {os}, "
                         "accept its pre-generated key, wait for the minion, redeploy "
                         "{redeploy_sls} at {to}", "targets": "{node}",
          "impact": "{node} out of haproxy; the other controllers serve", "children": [
              {"name": "dbsync_{to}", "when": "first",
               "description": "Staged DB syncs {frm} -> {to} (once, on the first "
                              "controller)", "targets": "{node}"},
              {"description": "Start, verify locally, ready in haproxy",
               "targets": "{node}"}]}]},
    {"name": "ctl_{node}", "foreach": "controllers", "when": "fast_forward",
     "description": "Controller {node}: back up its disk (offline), rebuild on {os}, accept "
                    "its pre-generated key, wait for the minion, redeploy {redeploy_sls} at "
                    "{target}, services stopped", "targets": "{node}",
     "impact": "API down once the last controller stops"},
    {"name": "dbsync_{to}", "foreach": "hops", "when": "fast_forward",
     "description": "Staged DB syncs {frm} -> {to} with {to}'s code, online data migrations "
                    "included", "targets": "{first_controller}", "impact": "API down"},
    {"name": "start_control", "when": "fast_forward",
     "description": "Start every controller with nova's [workarounds] "
                    "disable_compute_service_check_for_ffu; UP in haproxy",
     "targets": "{controller}", "impact": "API back; computes still stopped"},
    {"name": "switch_computes", "when": "fast_forward",
     "description": "Switch every compute to {target}: redeploy, wait up with the new service "
                    "version, enable", "targets": "{compute}",
     "impact": "nova-compute restarts; workloads untouched"},
    {"name": "ffu_off", "when": "fast_forward",
     "description": "Remove the FFU workaround: controllers restarted one at a time, out of "
                    "haproxy meanwhile", "targets": "{controller}",
     "impact": "one controller at a time out of haproxy"},
    {"name": "finish", "description": "Finish: online data migrations to completion, "
                                      "contract, unpin", "targets": "{controller}",
     "impact": "none"},
    {"name": "verify", "description": "Verify through the VIP {vip}", "impact": "none"},
    {"name": "report", "description": "Report: steps, timings, backups, revisions, API "
                                      "availability", "impact": "none"},
]


def _fmt(text, context):
    return text.format(**context) if text else text


def _build(entries, context):
    steps = []
    for entry in entries:
        when = entry.get("when")
        if when in leapfrog_schema.STRATEGIES and when != context["strategy"]:
            continue
        if when == "first" and not context.get("first", False):
            continue
        if entry.get("foreach") == "hops":
            items = [dict(context, frm=old, to=new, first=False)
                     for old, new in context["hops"]]
        elif entry.get("foreach") == "controllers":
            items = [dict(context, node=node, first=i == 0, **context["vm_nodes"].get(node, {}))
                     for i, node in enumerate(context["controllers"])]
        else:
            items = [context]
        for item in items:
            steps.append(Step(_fmt(entry["description"], item),
                              targets=_fmt(entry.get("targets"), item),
                              impact=_fmt(entry.get("impact"), item),
                              name=_fmt(entry.get("name"), item),
                              children=_build(entry.get("children", []), item)))
    return steps


def control_plane(cluster, config, decision, recipe=None):
    """The control-plane plan of ``cluster`` (validated ``config``) as a ``Step`` tree."""
    roles, vms = config["roles"], config["vms"]
    hops = decision["hops"]
    target = hops[-1][1] if hops else decision.get("control", config["releases"]["current"])
    context = {
        "cluster": cluster, "strategy": decision["strategy"], "why": decision["why"],
        "hops": hops, "target": target, "controllers": sorted(vms["nodes"]),
        "vm_nodes": vms["nodes"], "os": f"{vms['os']['os']} {vms['os']['oscodename']}",
        "redeploy_sls": vms["redeploy_sls"], "databases": ", ".join(
            config["database"]["databases"]), "expiry": config["approval"]["expiry"],
        "vip": config["haproxy"]["vip"], **roles,
        "first_controller": (sorted(vms["nodes"]) or ["-"])[0],
    }
    start = hops[0][0] if hops else target
    path = " -> ".join([start] + [h[1] for h in hops])
    root = Step(f"Upgrade the control plane of {cluster}: {path} ({decision['strategy']})",
                children=_build(copy.deepcopy(recipe or CONTROL_PLANE), context))
    if not hops:
        root.children = [Step(f"Nothing to do: the control plane already runs {target}")]
    return root
