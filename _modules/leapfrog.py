"""What a node of an OpenStack cluster is, as leapfrog sees it.

The ``leapfrog`` runner collects this from every node of a cluster to build the inventory.
"""

import salt.utils.data

__virtualname__ = "leapfrog"

VERSION = "0.1.0"

# Pillar keys that say a node carries an OpenStack/infra role, as cluster models
# (reclass/MCP-style pillar) write them; ``version`` under them is the release.
ROLE_KEYS = (
    "nova:controller",
    "nova:compute",
    "keystone:server",
    "glance:server",
    "placement:server",
    "mysql:server",
    "haproxy:proxy",
    "libvirt:server",
    "rabbitmq:server",
)


def __virtual__():
    return __virtualname__


def version():
    """
    Return the version of leapfrog's modules on this minion.

    CLI Example:

    .. code-block:: bash

        salt '*' leapfrog.version
    """
    return VERSION


def node_info():
    """
    Describe this node: its roles (grain and pillar), OS and the OpenStack release its
    pillar declares.

    CLI Example:

    .. code-block:: bash

        salt -C 'I@nova:compute' leapfrog.node_info
    """
    services = {}
    for key in ROLE_KEYS:
        # __pillar__, not pillar.get: Salt 3008 masks pillar.get values inside modules.
        value = salt.utils.data.traverse_dict_and_list(__pillar__, key, None)
        if value is not None:
            services[key] = value.get("version") if isinstance(value, dict) else None
    releases = sorted({v for v in services.values() if v})
    return {
        "id": __grains__.get("id"),
        "roles": list(__grains__.get("roles") or []),
        "os": __grains__.get("os"),
        "oscodename": __grains__.get("oscodename"),
        "services": sorted(services),
        "release": releases[0] if len(releases) == 1 else (releases or None),
        "leapfrog": VERSION,
    }
