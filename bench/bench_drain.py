"""Benchmark: requests lost when an API server restarts behind haproxy, with and without drain.

    python bench/bench_drain.py [--cycles 3] [--clients 8] [--gap 3] [--servers 2] [--keepalive]

Starts a private haproxy 2.6 (lab.haproxy) with three API frontends (keystone, nova,
placement) and stand-in API servers (lab.http_backend, 50 ms per request), keeps the
availability probe (leapfrog_probe) loading all three frontends, and restarts one server per
cycle: first ``--cycles`` times the way leapfrog does it (haproxy_admin.drain -> stop ->
``--gap`` seconds down -> start -> haproxy_admin.ready), then as many times without drain
(stop -> gap -> start -> wait for the health check). Prints requests, failures, longest
outage and drain/ready seconds per cycle, and the totals side by side. Loopback only; every
process it starts is stopped by its PID at the end.
"""
import argparse
import importlib.util
import os
import shutil
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(REPO, "_utils"), REPO]

import leapfrog_probe  # noqa: E402
from lab.haproxy import HAProxy  # noqa: E402
from lab.http_backend import HTTPBackend  # noqa: E402

APIS = ("keystone", "nova", "placement")


def load_haproxy_admin():
    path = os.path.join(REPO, "_modules", "haproxy_admin.py")
    spec = importlib.util.spec_from_file_location("bench_haproxy_admin", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def wait_up(admin, socket, server, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = admin.server_status(server, socket=socket)
        if all(r["status"] == "UP" for r in found.values()):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{server} not UP after {timeout}s")


def cycle(admin, proxy, backend, drain, args):
    urls = [proxy.frontend_url(api) + "/" for api in APIS]
    timings = {}
    with leapfrog_probe.Probe(urls, concurrency=args.clients, duration=120,
                              interval=args.interval, timeout=10,
                              keepalive=args.keepalive) as probe:
        time.sleep(1.0)
        if drain:
            started = time.monotonic()
            admin.drain(backend.name, socket=proxy.admin_socket, timeout=30)
            timings["drain"] = time.monotonic() - started
        backend.stop()
        time.sleep(args.gap)
        backend.start()
        started = time.monotonic()
        if drain:
            admin.ready(backend.name, socket=proxy.admin_socket, timeout=30)
        else:
            wait_up(admin, proxy.admin_socket, backend.name)
        timings["back"] = time.monotonic() - started
        time.sleep(1.0)
    summary = probe.summary()
    summary.update(timings)
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cycles", type=int, default=3, help="cycles of each kind")
    parser.add_argument("--clients", type=int, default=8, help="concurrent probe clients")
    parser.add_argument("--interval", type=float, default=0.02,
                        help="pause of each client between requests, seconds")
    parser.add_argument("--gap", type=float, default=3.0, help="seconds a server stays down")
    parser.add_argument("--servers", type=int, default=2, help="API servers per backend")
    parser.add_argument("--delay", type=float, default=0.05, help="seconds per request")
    parser.add_argument("--keepalive", action="store_true",
                        help="probe clients keep their connections open")
    args = parser.parse_args(argv)

    admin = load_haproxy_admin()
    run_dir = tempfile.mkdtemp(prefix="lfbd-", dir="/tmp")
    backends = [HTTPBackend(f"{run_dir}/srv", f"ctl{i + 1:02d}", ports=len(APIS), delay=args.delay)
                for i in range(args.servers)]
    frontends = {api: {"bind": "127.0.0.1:0",
                       "servers": {b.name: b.addresses[index] for b in backends}}
                 for index, api in enumerate(APIS)}
    proxy = HAProxy(f"{run_dir}/hx", frontends)
    rows = []
    try:
        for backend in backends:
            backend.start()
        proxy.start()
        for backend in backends:
            wait_up(admin, proxy.admin_socket, backend.name)
        print(f"haproxy {proxy.pid}, {len(backends)} servers x {len(APIS)} backends, "
              f"{args.clients} clients, {args.gap:g}s down per restart")
        print(f"{'cycle':<16}{'requests':>9}{'failed':>8}{'outage s':>10}{'drain s':>9}"
              f"{'back s':>8}  statuses")
        for drain in (True, False):
            for index in range(args.cycles):
                backend = backends[index % len(backends)]
                out = cycle(admin, proxy, backend, drain, args)
                rows.append((drain, out))
                label = f"{'drain' if drain else 'no drain'} {backend.name}"
                print(f"{label:<16}{out['requests']:>9}{out['failures']:>8}"
                      f"{out['longest_outage']:>10.3f}"
                      f"{out.get('drain', 0):>9.3f}{out['back']:>8.3f}  {out['statuses']}",
                      flush=True)
    finally:
        proxy.stop()
        for backend in backends:
            backend.stop()
        shutil.rmtree(run_dir, ignore_errors=True)

    def total(drain, key):
        return sum(out[key] for d, out in rows if d is drain)

    with_req, with_fail = total(True, "requests"), total(True, "failures")
    without_req, without_fail = total(False, "requests"), total(False, "failures")
    print()
    print(f"with drain:    {with_fail} of {with_req} requests lost "
          f"({100.0 * with_fail / max(with_req, 1):.2f}%), longest outage "
          f"{max((o['longest_outage'] for d, o in rows if d), default=0):.3f}s")
    print(f"without drain: {without_fail} of {without_req} requests lost "
          f"({100.0 * without_fail / max(without_req, 1):.2f}%), longest outage "
          f"{max((o['longest_outage'] for d, o in rows if not d), default=0):.3f}s")
    per_cycle = without_fail / max(args.cycles, 1)
    outage = sum(o["longest_outage"] for d, o in rows if not d) / max(args.cycles, 1)
    print(f"per restart, drain saves {per_cycle:.1f} failed requests and a {outage:.1f}s outage")


if __name__ == "__main__":
    main()
