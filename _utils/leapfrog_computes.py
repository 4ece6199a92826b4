"""Computes switched, stopped and prestaged from the master (the data plane and a
fast-forward's compute steps), through the compute API on the first controller and Salt
jobs on the computes; the runner's ``switch_compute(s)``, ``stop_compute``,
``unpin_compute_rpc``, ``prestage_computes`` and ``compute_changes`` are thin calls of
these. Every call is timed per phase (``Phases``); a failure names the host and phase.
"""
import concurrent.futures
import contextvars
import datetime
import time

import leapfrog_errors
import leapfrog_minions
import leapfrog_parse
import leapfrog_plan
import leapfrog_schema


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")


# server statuses that may vanish from a host's list without being lost
GONE = ("DELETED", "SOFT_DELETED")
# a server being built when the switch began may end ACTIVE, ERROR, rescheduled or deleted
# by its user: only servers at rest are compared before and after
IN_FLIGHT = (*GONE, "BUILD")


class Phases:
    """Timed calls of one compute's switch or stop: ``phases`` maps each phase to seconds."""

    def __init__(self, opts, timeout):
        self.opts, self.timeout = opts, timeout
        self.phases = {}

    def __call__(self, name, target, func, kwargs=None):
        begun = time.monotonic()
        out = leapfrog_minions.call(self.opts, target, func, kwargs, timeout=self.timeout)
        self.phases[name] = round(time.monotonic() - begun, 2)
        return next(iter(out.values()))


def compute_sls(config):
    sls = config["data_plane"]["redeploy_sls"]
    if not sls:
        raise leapfrog_errors.LeapfrogError(
            "data_plane:redeploy_sls is not set: name the SLS that switches a compute to "
            "a release (see pillar_examples/cluster.sls)")
    return sls


def quiesce(phase, api, host, reason, timeout):
    """Disable ``host``'s nova-compute (with ``reason``) and wait until nothing runs on it."""
    phase("disable", api, "nova_service.disable", {"host": host, "reason": reason})
    phase("idle", api, "nova_service.wait_idle", {"host": host, "timeout": timeout})


class Switch:
    """One batch's switch (see the runner's ``switch_computes``): per host its phases and outcome;
    each phase runs for the batch's hosts side by side."""

    def __init__(self, opts, cluster, config, release, policy, reason, timeout):
        leapfrog_parse.choice(release, "release", leapfrog_schema.RELEASES)
        policy = leapfrog_parse.choice(policy, "servers", leapfrog_schema.SERVER_POLICIES)
        timeout = leapfrog_parse.seconds(timeout, "timeout", minimum=1)
        self.opts, self.cluster, self.release, self.policy = opts, cluster, release, policy
        self.reason, self.timeout = reason, timeout
        self.api = f"L@{leapfrog_minions.first(opts, config, 'controller')}"
        self.api_calls = config["data_plane"]["api_calls"]
        self.phases, self.before, self.moved, self.results = {}, {}, {}, {}

    def _each(self, hosts, work, parallel=True):
        """Run ``work(host, phase)`` for each host still going, the hosts side by side (each
        call its own Salt job; at most ``data_plane:api_calls`` at once) unless ``parallel``
        is False; a failure ends that host."""
        def one(host):
            try:
                work(host, self.phases[host])
            except leapfrog_errors.LeapfrogError as exc:
                self.results[host] = {"host": host, "error": str(exc),
                                      "phases": self.phases[host].phases}

        going = [h for h in hosts if h not in self.results]
        if not parallel or len(going) < 2:
            for host in going:
                one(host)
            return
        with concurrent.futures.ThreadPoolExecutor(min(self.api_calls, len(going))) as pool:
            # each thread in a copy of this one's context: Salt's loader dunders live there
            done = [pool.submit(contextvars.copy_context().run, one, host) for host in going]
            for future in done:
                future.result()

    def _check(self, host, phase):
        service = phase("version", self.api, "nova_service.list", {"host": host})[0]
        current = service["version"]
        if current is not None and leapfrog_plan.release_of(current) == self.release:
            self.results[host] = {"host": host, "skipped": True, "reason": (
                f"{host} already runs {self.release} (service version {current})")}
            if service.get("status") == "disabled" and \
                    service.get("disabled_reason") == self.reason:
                # switched by an attempt that died before its enable: finish that
                phase("enable", self.api, "nova_service.enable",
                      {"host": host, "reason": self.reason})
                self.results[host]["reason"] += "; enabled again (an earlier attempt " \
                                                "stopped before enabling it)"
            return
        self.before[host] = {s["id"]: s["status"] for s in phase(
            "servers", self.api, "nova_service.servers", {"host": host})}
        if self.before[host] and self.policy == "skip":
            self.results[host] = {"host": host, "skipped": True, "reason": (
                f"{len(self.before[host])} server(s) on {host} and data_plane:servers is "
                "skip (run with servers=force to switch it anyway)")}

    def _disable(self, host, phase):
        phase("disable", self.api, "nova_service.disable", {"host": host, "reason": self.reason})

    def _empty(self, host, phase):
        phase("idle", self.api, "nova_service.wait_idle", {"host": host, "timeout": self.timeout})
        self.moved[host] = []
        if self.before[host] and self.policy == "migrate":  # disabled: nothing comes back
            self.moved[host] = phase("migrate", self.api, "nova_service.migrate_away",
                                     {"host": host, "timeout": self.timeout})["migrated"]
            self.before[host] = {}

    def _redeploy(self, hosts, sls):
        begun = time.monotonic()
        _, problems = apply_together(
            self.opts, "L@" + ",".join(hosts), sls,
            {"leapfrog": {"release": self.release, "services": "running"}}, self.timeout)
        for host in hosts:
            self.phases[host].phases["redeploy"] = round(time.monotonic() - begun, 2)
            if host in problems:
                self.results[host] = {"host": host, "error": problems[host],
                                      "phases": self.phases[host].phases}

    def _finish(self, host, phase, since):
        phase("up", self.api, "nova_service.wait_up",
              {"host": host, "version": self.release, "since": since, "timeout": self.timeout})
        phase("enable", self.api, "nova_service.enable", {"host": host, "reason": self.reason})
        after = {s["id"]: s["status"] for s in phase("servers_after", self.api,
                                                     "nova_service.servers", {"host": host})}
        # servers at rest before must be there after as they were; a server in flight
        # (being built or deleted when the switch began) may have ended either way, and a
        # server its user deleted during the switch is not lost (nova lists it deleted)
        in_flight = {i for i, s in self.before[host].items() if s in IN_FLIGHT}
        if any(i not in after for i in self.before[host]):
            in_flight |= {s["id"] for s in phase(
                "servers_deleted", self.api, "nova_service.servers",
                {"host": host, "deleted": True, "changes_since": self.started})}
        before = {i: s for i, s in self.before[host].items() if i not in in_flight}
        if {i: s for i, s in after.items()
                if i not in in_flight and (i in before or s not in GONE)} != before:
            raise leapfrog_errors.LeapfrogError(
                f"servers on {host} changed during its switch: before {self.before[host]}, "
                f"after {after}")

    def run(self, hosts, sls):
        began = time.monotonic()
        self.started = datetime.datetime.now(datetime.timezone.utc).strftime(
            "%Y-%m-%dT%H:%M:%SZ")
        self.phases = {host: Phases(self.opts, self.timeout) for host in hosts}
        self._each(hosts, self._check)
        self._each(hosts, self._disable)  # every host first: none is a migration's target
        # live migrations one host after another (the scheduler places each on what is left)
        self._each(hosts, self._empty, parallel=self.policy != "migrate")
        going = [h for h in hosts if h not in self.results]
        if going:
            since = utc_now()
            self._redeploy(going, sls)
            self._each(hosts, lambda host, phase: self._finish(host, phase, since))
        seconds = round(time.monotonic() - began, 2)
        for host in (h for h in hosts if h not in self.results):
            self.results[host] = {
                "host": host, "cluster": self.cluster, "release": self.release,
                "servers": len(self.before[host]),
                "migrated": self.moved[host], "phases": self.phases[host].phases,
                "seconds": seconds}
        return {host: self.results[host] for host in hosts}


def apply_together(opts, target, mods, pillar, timeout, test=False):
    """``state.apply mods`` with ``pillar`` on the minions of ``target`` at once (one Salt
    job): ``({host: [a line per state that changed, or would with test]}, {host:
    problem})``."""
    answers, problems = leapfrog_minions.call_each(
        opts, target, "state.apply",
        {"mods": mods, "pillar": pillar, **({"test": True} if test else {})}, timeout=timeout)
    changed = {}
    for host, states in sorted(answers.items()):
        moved = sorted((s for s in states.values() if isinstance(s, dict)
                        and (s.get("changes") or (test and s.get("result") is None))),
                       key=lambda s: s.get("__run_num__", 0))
        changed[host] = [would_change(s) for s in moved]
    return changed, problems


def would_change(state):
    """One line for a state that changes (or, with ``test=True``, would change) something:
    its id, its comment and a file's diff when it shows one."""
    line = f"{state.get('__id__', '?')}: {state.get('comment', '')}".strip()
    diff = (state.get("changes") or {}).get("diff")
    return f"{line}\n{diff}" if diff else line


def stop(opts, config, host, release, reason, phase):
    """A fast-forward's first step on a compute: disabled (with ``reason``), idle, then
    ``data_plane:redeploy_sls`` with its release now and services stopped; its servers
    keep running. ``release_before`` is what a rollback starts it with again."""
    started = time.monotonic()
    sls = compute_sls(config)
    api = f"L@{leapfrog_minions.first(opts, config, 'controller')}"
    servers = phase("servers", api, "nova_service.servers", {"host": host})
    quiesce(phase, api, host, reason or "leapfrog: nova-compute stopped for an upgrade",
            phase.timeout)
    phase("stop", f"L@{host}", "state.apply",
          {"mods": sls, "pillar": {"leapfrog": {"release": release, "services": "stopped"}}})
    return {"host": host, "release_before": release, "servers": len(servers),
            "phases": phase.phases, "seconds": round(time.monotonic() - started, 2)}


def unpin(opts, config, release, phase):
    """The controllers' nova restarted without the compute RPC cap, one at a time (out of
    haproxy meanwhile when there are several); skipped, naming them, while a compute runs
    an older release."""
    started = time.monotonic()
    first = leapfrog_minions.first(opts, config, "controller")
    facts = phase("releases", f"L@{first}", "nova_service.releases")
    older = {h: r for h, r in facts["computes"].items() if r != release}
    if older:
        return {"unpinned": False, "skipped": (
            "compute(s) " + ", ".join(f"{h} ({r})" for h, r in sorted(older.items()))
            + f" do not run {release}: the controllers keep [upgrade_levels] compute = "
            "auto until they do (re-run the data plane for them)")}
    controllers = leapfrog_minions.rolled_controllers(opts, config)
    out_of_rotation = len(controllers) > 1
    haproxy = config["roles"]["haproxy"]
    for node in controllers:
        if out_of_rotation:
            phase(f"{node}_drain", haproxy, "haproxy_admin.drain", {"server": node})
        phase(f"{node}_restart", f"L@{node}", "state.apply", {
            "mods": config["vms"]["redeploy_sls"], "pillar": {"leapfrog": {
                "release": release, "services": "running", "compute_rpc": None}}})
        phase(f"{node}_ready", haproxy, "haproxy_admin.ready", {"server": node})
    return {"unpinned": True, "controllers": controllers, "phases": phase.phases,
            "seconds": round(time.monotonic() - started, 2)}
