"""OVN's OVSDB remotes as leapfrog's modules take them (``ovn_nb``, ``ovsdb_backup``): an
argument, else pillar ``leapfrog:ovn:<which>_connection``, checked before any tool runs."""

PORTS = {"nb": 6641, "sb": 6642}


def remote(value, which, error):
    """``value`` checked as the OVN ``which`` (``nb``/``sb``) remote: ``tcp:HOST:PORT``,
    ``ssl:HOST:PORT`` or ``unix:PATH``; else ``error`` naming the pillar key and the
    argument that set it."""
    if not value or not isinstance(value, str):
        raise error(f"no OVN {which.upper()} connection: set the pillar key "
                    f"leapfrog:ovn:{which}_connection (e.g. tcp:192.0.2.10:{PORTS[which]}) "
                    f"or pass {which}_connection")
    if not value.startswith(("tcp:", "ssl:", "unix:")) or any(c.isspace() for c in value):
        raise error(f"{which}_connection {value!r} is not an OVSDB remote: use tcp:HOST:PORT, "
                    "ssl:HOST:PORT or unix:PATH")
    return value
