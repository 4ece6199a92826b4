"""Keystone v3 password sessions for leapfrog's API modules (openstack_verify, nova_service).

One place for: the credentials (pillar ``leapfrog:verify``, arguments win), the keystone v3
password login with ``requests``, the service catalog lookup, and requests that fail with a
short reason naming where and what (never the headers or bodies sent). The password and the
token stay inside: never logged, never returned, never in an error text.

Modules import it as a plain top-level module (``import leapfrog_keystone``), like every
``_utils/leapfrog_*`` helper, so it works synced (``saltutil.sync_all``) and pip-installed.
"""
import logging
import time
import urllib.parse

import salt.utils.data

try:
    import requests

    HAS_REQUESTS = True
except ImportError:  # pragma: no cover - requests is a dependency of leapfrog and of salt
    HAS_REQUESTS = False

log = logging.getLogger(__name__)

PILLAR_KEY = "leapfrog:verify"
# a request whose connection fails before any answer is sent again (idempotent methods)
IDEMPOTENT = ("GET", "HEAD", "PUT", "DELETE")
CONNECT_ATTEMPTS = 3
CONNECT_PAUSE = 1.0
REQUIRED = ("auth_url", "username", "password", "project_name")
# every connection setting a caller may override (pillar leapfrog:verify holds the same keys)
KEYS = REQUIRED + ("user_domain_name", "project_domain_name", "region_name", "interface",
                   "timeout", "verify_tls")


class RequestFailed(Exception):
    """A keystone login or an API request failed; ``args[0]`` is a short reason (never a
    secret), ``args[1]`` optional detail."""


def pillar_settings(pillar):
    """``leapfrog:verify`` from a module's ``__pillar__`` itself: Salt 3008's ``pillar.get``
    hands modules masked values ("**********") unless ``unmask=True``, which Salt 3007 does
    not know."""
    value = salt.utils.data.traverse_dict_and_list(pillar or {}, PILLAR_KEY, None)
    return dict(value) if isinstance(value, dict) else {}


def settings(pillar, overrides, error, who):
    """The connection settings: pillar ``leapfrog:verify`` with the non-None ``overrides``
    over it, defaults filled in. A missing credential raises ``error`` naming the pillar key;
    ``who`` (the module name) starts the message."""
    conf = pillar_settings(pillar)
    conf.update({k: v for k, v in overrides.items() if v is not None})
    missing = [key for key in REQUIRED if not conf.get(key)]
    if missing:
        raise error(
            f"{who} needs {', '.join(missing)}: set them under the pillar key "
            f"{PILLAR_KEY} (or pass them as arguments)")
    conf.setdefault("user_domain_name", "Default")
    conf.setdefault("project_domain_name", "Default")
    conf.setdefault("interface", "public")
    try:
        conf["timeout"] = float(conf.get("timeout") or 10)
    except (TypeError, ValueError):
        raise error(f"timeout must be a number of seconds, got {conf.get('timeout')!r}")
    verify = conf.get("verify_tls", True)
    conf["verify_tls"] = verify if isinstance(verify, str) else bool(verify)
    return conf


def host_of(url):
    """The host of ``url``, lower-case (IPv6 without brackets); "" when it has none."""
    return (urllib.parse.urlsplit(url or "").hostname or "").lower()


def with_host(url, host):
    """``url`` with its host replaced by ``host``: scheme, user, port, path and query kept."""
    parts = urllib.parse.urlsplit(url or "")
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc += f":{parts.port}"
    if "@" in parts.netloc:
        netloc = parts.netloc.rsplit("@", 1)[0] + "@" + netloc
    return parts._replace(netloc=netloc).geturl()


def v3(auth_url):
    url = auth_url.rstrip("/")
    return url if url.endswith("/v3") else url + "/v3"


def join(base, path):
    return base.rstrip("/") + "/" + path.lstrip("/")


def short(exc, url):
    """A short reason for a request failure, never carrying headers or bodies we sent."""
    where = urllib.parse.urlsplit(url).netloc
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return f"connection to {where} timed out"
    if isinstance(exc, requests.exceptions.Timeout):
        return f"{where} did not answer in time"
    if isinstance(exc, requests.exceptions.SSLError):
        return f"TLS error talking to {where}"
    if isinstance(exc, requests.exceptions.ConnectionError):
        text = str(exc)
        if "refused" in text.lower():
            return f"connection refused by {where}"
        return f"cannot connect to {where}"
    return f"{type(exc).__name__} talking to {where}"


def error_text(response):
    """The API's own error message, shortened (OpenStack APIs put it in JSON)."""
    try:
        body = response.json()
    except ValueError:
        return (response.text or "").strip().splitlines()[0][:120] if response.text else ""
    if isinstance(body, dict):
        for value in body.values():
            if isinstance(value, dict) and "message" in value:
                return str(value["message"])[:120]
        if "message" in body:
            return str(body["message"])[:120]
    return ""


class Session:
    """A keystone-authenticated session: the token stays inside, never returned or logged.

    ``headers`` are sent with every API request (e.g. ``OpenStack-API-Version``).
    """

    def __init__(self, conf, agent="leapfrog", headers=None):
        self.conf = conf
        self.agent = agent
        self.http = requests.Session()
        self.http.verify = conf["verify_tls"]
        self.http.headers["User-Agent"] = agent
        self.http.headers.update(headers or {})
        self.catalog = []
        self._token = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.http.close()
        self._token = None

    def authenticate(self):
        conf = self.conf
        url = v3(conf["auth_url"]) + "/auth/tokens"
        body = {"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": conf["username"], "domain": {"name": conf["user_domain_name"]},
                "password": conf["password"]}}},
            "scope": {"project": {"name": conf["project_name"],
                                  "domain": {"name": conf["project_domain_name"]}}},
        }}
        log.debug("keystone: POST %s as %s", url, conf["username"])
        try:
            response = self.http.post(url, json=body, timeout=conf["timeout"])
        except requests.exceptions.RequestException as exc:
            raise RequestFailed(f"keystone: {short(exc, url)}") from None
        if response.status_code == 401:
            raise RequestFailed(f"keystone refused the credentials of {conf['username']} "
                                f"(HTTP 401): wrong user, password or project")
        if response.status_code != 201:
            detail = error_text(response)
            raise RequestFailed(f"keystone: HTTP {response.status_code} from POST {url}"
                                f"{': ' + detail if detail else ''}")
        token = response.headers.get("X-Subject-Token")
        if not token:
            raise RequestFailed("keystone answered without an X-Subject-Token header")
        try:
            self.catalog = response.json()["token"].get("catalog") or []
        except (ValueError, KeyError, AttributeError):
            raise RequestFailed("keystone's token answer is not the JSON of a v3 token")
        self._token = token
        self.http.headers["X-Auth-Token"] = token

    def endpoint(self, types):
        """Return ``(service_type, url)`` for the first of ``types`` in the catalog.

        ``None`` when none of the types is in the catalog; raises when the service is there
        without an endpoint of the configured interface/region.
        """
        interface, region = self.conf["interface"], self.conf.get("region_name")
        for wanted in types:
            for service in self.catalog:
                if service.get("type") != wanted:
                    continue
                for endpoint in service.get("endpoints") or []:
                    if endpoint.get("interface") != interface:
                        continue
                    if region and region not in (endpoint.get("region_id"), endpoint.get("region")):
                        continue
                    return wanted, endpoint["url"].rstrip("/")
                raise RequestFailed(
                    f"the catalog has a {wanted} service but no {interface} endpoint"
                    + (f" in region {region}" if region else ""))
        return None

    def request(self, method, url, params=None, json=None, expect=(200,)):
        """Send one request; return its decoded JSON (``None`` for an empty answer to a
        PUT/POST/DELETE). Any
        other status than ``expect`` raises ``RequestFailed`` with the API's message."""
        path = urllib.parse.urlsplit(url).path
        for attempt in range(1, CONNECT_ATTEMPTS + 1):
            try:
                response = self.http.request(method, url, params=params, json=json,
                                             timeout=self.conf["timeout"])
                break
            except requests.exceptions.RequestException as exc:
                # a connection dropped before any answer (a proxy closing a pooled
                # connection, a backend restarting): retried, the request never arrived
                retry = (isinstance(exc, requests.exceptions.ConnectionError)
                         and not isinstance(exc, requests.exceptions.Timeout)
                         and method in IDEMPOTENT and attempt < CONNECT_ATTEMPTS)
                if not retry:
                    raise RequestFailed(short(exc, url)) from None
                log.info("%s: %s %s: %s; retrying", self.agent, method, path, short(exc, url))
                time.sleep(CONNECT_PAUSE * attempt)
        log.debug("%s: %s %s -> %s", self.agent, method, url, response.status_code)
        if response.status_code not in expect:
            detail = error_text(response)
            raise RequestFailed(f"HTTP {response.status_code} from {method} {path}"
                                + (f": {detail}" if detail else ""))
        if not response.content and method != "GET":
            return None
        try:
            return response.json()
        except ValueError:
            raise RequestFailed(f"{method} {path} did not answer JSON")

    def get(self, url, params=None, expect=(200,)):
        return self.request("GET", url, params=params, expect=expect)
