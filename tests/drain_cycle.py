"""One maintenance cycle of a server behind haproxy under continuous load through it, with
or without haproxy_admin's drain: what the drain tests measure, on stand-in backends
(test_probe_drain) and on the lab cloud's real APIs (test_lab_network_volume)."""
import time

import leapfrog_probe


def wait_up(haproxy_admin, server, timeout, poll):
    """Haproxy's status of ``server`` in each backend once all are UP; fail after
    ``timeout`` seconds naming them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        statuses = {be: r["status"] for be, r in haproxy_admin.server_status(server).items()}
        if all(s == "UP" for s in statuses.values()):
            return statuses
        time.sleep(poll)
    raise AssertionError(f"{server} not back UP in haproxy: {statuses}")


def restart_under_load(haproxy_admin, urls, load, server, restart, drain, settle,
                       up_timeout, poll, label=""):
    """``restart()`` ``server`` while a probe loads ``urls``; drained first and set ready
    after when ``drain``, else waited UP. ``settle`` seconds of load before and after.
    Returns (the backends the drain took it out of, or None; the probe's summary)."""
    drained = None
    with leapfrog_probe.Probe(urls, **load) as probe:
        time.sleep(settle)
        if drain:
            drained = sorted(haproxy_admin.drain(server)["backends"])
        restart()
        if drain:
            haproxy_admin.ready(server)
        else:
            wait_up(haproxy_admin, server, up_timeout, poll)
        time.sleep(settle)
    summary = probe.summary()
    print(f"\n{label}{'with' if drain else 'WITHOUT'} drain: {summary['requests']} requests, "
          f"{summary['failures']} failed, longest outage {summary['longest_outage']} s, "
          f"statuses {summary['statuses']}, errors {summary['errors']}")
    return drained, summary
