"""The lab cluster's shape: nodes, roles, loopback addresses and grains.

One definition used by the lab starters, the demo and the integration tests, so all of
them describe the same cluster the lab pillar (lab/pillar) targets.
"""
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PILLAR_ROOT = os.path.join(REPO, "lab", "pillar")
MASTER_ID = "cfg01"
MASTER_ADDRESS = "127.0.1.10"
VIP = "127.0.1.100"
OLD_OS = {"os": "Debian", "oscodename": "bookworm", "osrelease": "12"}
NEW_OS = {"os": "Debian", "oscodename": "trixie", "osrelease": "13"}

# node id prefix -> (grain role, first address's last octet)
_ROLES = {
    "kvm": ("kvm", 11),
    "dbs": ("dbs", 12),
    "prx": ("prx", 13),
    "ctl": ("ctl", 21),
    "cmp": ("cmp", 31),
}


class Node:
    """A lab node: its minion id, loopback address and grains."""

    def __init__(self, node_id, role, address, os_grains=None):
        self.id = node_id
        self.role = role
        self.address = address
        self.os_grains = dict(os_grains or OLD_OS)

    def grains(self):
        """Grains the node's minion config carries (role and OS release)."""
        return {"roles": [self.role], "lab_address": self.address, **self.os_grains}

    def __repr__(self):
        return f"Node({self.id!r}, {self.address})"


def nodes(controllers=3, computes=2, databases=1):
    """Return the lab's nodes in start order (infrastructure first); ``databases``: 3 for a
    Galera cluster (dbs01..03)."""
    counts = {"kvm": 1, "dbs": databases, "prx": 1, "ctl": controllers, "cmp": computes}
    out = []
    for prefix, (role, octet) in _ROLES.items():
        for index in range(1, counts[prefix] + 1):
            out.append(Node(f"{prefix}{index:02d}", role, f"127.0.1.{octet + index - 1}"))
    return out
