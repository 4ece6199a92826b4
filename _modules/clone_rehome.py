"""
Point a rehearsal's cloned databases at its throwaway controller, never at production
(issue 18). Runs on the database minion.

The clones (``<database><suffix>``, made and marked by ``mysql_backup.clone``) still say
where production is: keystone's catalog sends every client of a controller deployed on
them to the production VIP. ``catalog`` rewrites the clone's endpoints to the throwaway
controller's address. It opens a database only when its name ends with the suffix and its
SCHEMA_COMMENT carries ``mysql_backup.clone``'s mark (``leapfrog clone of <name>``):
production's catalog cannot be reached through it, whatever the arguments.

Connection: pillar ``leapfrog:database`` (host, port, socket, user, password); arguments
win. The keystone database's name: ``database``, else pillar ``leapfrog:keystone:database``,
else ``keystone``.
"""
import ipaddress
import re

import salt.utils.data

import leapfrog_errors
import leapfrog_keystone
import leapfrog_mysql
import leapfrog_schema

__virtualname__ = "clone_rehome"

HOST = re.compile(r"\A[A-Za-z0-9]([A-Za-z0-9.-]{0,252})\Z")


def __virtual__():
    if leapfrog_mysql.pymysql is None:
        return False, "clone_rehome needs PyMySQL"
    return __virtualname__


def _pillar(key, default=None):
    value = salt.utils.data.traverse_dict_and_list(__pillar__ or {}, key, None)
    return default if value is None else value


def _host(value, what):
    """A host name or IP address (no scheme, port, path or user)."""
    text = str(value or "")
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        pass
    if not HOST.match(text):
        raise leapfrog_errors.LeapfrogError(
            f"{what} must be a host name or an IP address (no scheme, port or path), got "
            f"{value!r}")
    return text.lower()


def _clone(conn, source, suffix):
    """``<source><suffix>`` when it exists and carries the clone mark of ``source``; else an
    error naming what is wrong and nothing is changed."""
    problem = leapfrog_schema.clone_suffix(suffix, ())
    if problem:
        raise leapfrog_errors.LeapfrogError(problem)
    name = f"{source}{suffix}"
    with conn.cursor() as cur:
        cur.execute("SELECT SCHEMA_COMMENT FROM information_schema.SCHEMATA "
                    "WHERE SCHEMA_NAME = %s", (name,))
        row = cur.fetchone()
    if row is None:
        raise leapfrog_errors.LeapfrogError(
            f"no database {name}: clone {source} first (mysql_backup.clone {source} "
            f"suffix={suffix})")
    if (row[0] or "") != f"{leapfrog_mysql.CLONE_MARK}{source}":
        raise leapfrog_errors.LeapfrogError(
            f"refusing to rewrite {name}: it is not leapfrog's clone of {source} (its "
            f"SCHEMA_COMMENT is {row[0]!r}); nothing was changed")
    return name


def _rehomed(url, old, new):
    """``url`` with its host ``old`` replaced by ``new`` (scheme, port, path kept); None
    when its host is not ``old``."""
    if leapfrog_keystone.host_of(url) != old:
        return None
    return leapfrog_keystone.with_host(url, new)


def catalog(address, vip, suffix="_upgrade", database=None, **connection):
    """
    Rewrite keystone's catalog in the clone ``<keystone database><suffix>``: every endpoint
    whose URL's host is ``vip`` (production's API address) gets ``address`` (the throwaway
    controller's) instead, scheme, port and path kept; other endpoints are left alone. A
    re-run changes nothing more. Refused, changing nothing, unless that database exists
    and carries ``mysql_backup.clone``'s mark of the keystone database. Returns the clone's
    name and per interface the endpoints rewritten and left.

    CLI Example:

    .. code-block:: bash

        salt dbs01 clone_rehome.catalog 10.0.0.41 10.0.0.10 suffix=_upgrade
    """
    new, old = _host(address, "address"), _host(vip, "vip")
    if new == old:
        raise leapfrog_errors.LeapfrogError(
            f"address and vip are both {new}: the clone would still send clients to "
            "production")
    source = database or _pillar("leapfrog:keystone:database") or "keystone"
    params = leapfrog_mysql.connection(connection, _pillar("leapfrog:database", {}),
                                       "clone_rehome")
    rewritten, left = {}, {}
    with leapfrog_mysql.connect(params) as conn:
        name = _clone(conn, source, suffix)
        with conn.cursor() as cur:
            cur.execute(f"SELECT id, interface, url FROM `{name}`.`endpoint` ORDER BY id")
            for endpoint_id, interface, url in cur.fetchall():
                moved = _rehomed(url, old, new)
                counts = left if moved is None else rewritten
                counts[interface] = counts.get(interface, 0) + 1
                if moved is not None:
                    cur.execute(f"UPDATE `{name}`.`endpoint` SET url = %s WHERE id = %s",
                                (moved, endpoint_id))
    return {"database": name, "address": new, "rewritten": rewritten, "left": left}
