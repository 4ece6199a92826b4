"""How leapfrog's DB modules reach a MariaDB server: connection arguments merged over pillar
``leapfrog:database``, PyMySQL connections whose failures are one-line errors naming the fix
(never the password), and a 0600 client option file that carries the password to the CLIs
(``--defaults-extra-file``), removed afterwards."""
import contextlib
import os
import shutil
import tempfile

import leapfrog_errors
import leapfrog_parse

try:
    import pymysql
except ImportError:  # pragma: no cover - the modules' __virtual__ report it
    pymysql = None

CONNECTION_KEYS = ("host", "port", "socket", "user", "password")
# the SCHEMA_COMMENT of a rehearsal's clone, before its source's name (mysql_backup.clone
# writes it, clone_rehome opens only a database that carries it)
CLONE_MARK = "leapfrog clone of "


class DatabaseUnreachable(leapfrog_errors.LeapfrogError):
    """The server does not answer (refused, timeout, no socket)."""


class AccessDenied(leapfrog_errors.LeapfrogError):
    """The server refused the user or password."""


class UnknownDatabase(leapfrog_errors.LeapfrogError):
    """A database named in the call does not exist (on the server or in the backup)."""


def connection(kwargs, pillar, module, pillar_key="leapfrog:database"):
    """Merge the connection arguments in ``kwargs`` over ``pillar`` (the dict at
    ``pillar_key``); refuse unknown arguments and values with control characters."""
    extra = sorted(k for k in kwargs if not k.startswith("__") and k not in CONNECTION_KEYS)
    if extra:
        raise leapfrog_errors.LeapfrogError(
            f"{module}: unknown argument(s) {', '.join(extra)}; connection arguments are "
            f"{', '.join(CONNECTION_KEYS)}"
        )
    pillar = pillar or {}
    params = {}
    for key in CONNECTION_KEYS:
        value = kwargs.get(key)
        params[key] = value if value not in (None, "") else pillar.get(key)
    port = 3306 if params["port"] in (None, "") else params["port"]
    params["port"] = leapfrog_parse.number(port, "port", minimum=1, maximum=65535, integer=True)
    for key, default in (("host", "localhost"), ("user", "root"), ("socket", ""),
                         ("password", "")):
        value = params[key]
        params[key] = default if value in (None, "") else str(value)
        if any(ord(char) < 32 for char in params[key]):
            shown = "the password" if key == "password" else repr(params[key])
            raise leapfrog_errors.LeapfrogError(
                f"invalid {key}: {shown} holds a line break or control character; fix "
                f"{pillar_key}:{key} (or the {key}= argument)")
    return params


def where(params):
    """``socket PATH`` or ``HOST:PORT``, for messages."""
    if params["socket"]:
        return f"socket {params['socket']}"
    return f"{params['host']}:{params['port']}"


def scrub(text, params):
    """``text`` on one line with the password replaced by ******."""
    text = str(text)
    if params.get("password"):
        text = text.replace(params["password"], "******")
    return " ".join(text.split())


def connect(params, database=None, pillar_key="leapfrog:database", **extra):
    """Open a PyMySQL connection (autocommit); failures become one-line errors without the
    password, naming the pillar keys to fix."""
    kwargs = {"user": params["user"], "password": params["password"], "database": database,
              "autocommit": True, "charset": "utf8mb4", "connect_timeout": 10, **extra}
    if params["socket"]:
        kwargs["unix_socket"] = params["socket"]
    else:
        kwargs["host"] = params["host"]
        kwargs["port"] = params["port"]
    fix = f"start it or fix {pillar_key} host/port/socket"
    try:
        return pymysql.connect(**kwargs)
    except pymysql.OperationalError as exc:
        code = exc.args[0] if exc.args else None
        if code in (1045, 1044, 1698):
            raise AccessDenied(
                f"MariaDB at {where(params)} refused user '{params['user']}' (wrong user or "
                f"password; the password is not shown): fix {pillar_key}:user/password"
            ) from None
        if code == 1049:
            raise UnknownDatabase(
                f"unknown database '{database}' on {where(params)}: check the name"
            ) from None
        reason = scrub(exc.args[1] if len(exc.args) > 1 else exc, params)
        raise DatabaseUnreachable(
            f"MariaDB at {where(params)} is unreachable ({reason}): {fix}") from None
    except (OSError, pymysql.MySQLError) as exc:
        raise DatabaseUnreachable(
            f"MariaDB at {where(params)} is unreachable ({scrub(exc, params)}): {fix}"
        ) from None


def _option_value(value):
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


@contextlib.contextmanager
def defaults_file(params):
    """A 0600 client option file with the credentials (``--defaults-extra-file``), removed
    on exit."""
    folder = tempfile.mkdtemp(prefix="leapfrog-mysql-")
    path = os.path.join(folder, "client.cnf")
    lines = ["[client]", f"user = {_option_value(params['user'])}",
             f"password = {_option_value(params['password'])}"]
    if params["socket"]:
        lines += ["host = localhost", f"socket = {_option_value(params['socket'])}",
                  "protocol = SOCKET"]
    else:
        lines += [f"host = {_option_value(params['host'])}", f"port = {params['port']}",
                  "protocol = TCP"]
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)
