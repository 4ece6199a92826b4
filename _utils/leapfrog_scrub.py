"""Remove secrets from anything leapfrog writes, returns or fires.

Step results can carry secrets without anyone meaning to: a state's diff of a config file
(``connection = mysql+pymysql://nova:PASSWORD@...``), a keystone token in an error, a PEM
private key in a seed. ``scrub`` walks a result (dicts, lists, strings) and masks:

- the value (a string or number) of any key that names a secret (password, passwd, secret,
  token, private key, pem, credential, auth key ...); a mapping or list under such a key is
  walked, so structured results (a table named ``console_auth_tokens`` in a schema
  fingerprint) read back as they were;
- in strings: ``user:password@`` in URLs, ``password = ...`` / ``token: ...`` style
  assignments, ``X-Auth-Token`` headers and whole PEM private-key blocks.

The journal, the reports, the events and the runner's returns all pass through it.
"""
import re

MASK = "******"
_SECRET_WORDS = {"password", "passwd", "secret", "token", "pem", "sealed", "credential",
                 "credentials", "apikey"}
_SECRET_PAIRS = ("private_key", "auth_key", "api_key")
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s'\"]+:)[^@\s'\"]+(?=@)")
_ASSIGNMENT = re.compile(
    r"(?P<head>\b[\w.-]*(?:password|passwd|secret|token|auth_key|api_key)[\w.-]*"
    r"[\"']?\s*[:=]\s*[\"']?)(?P<value>[^\s\"',;}]+)", re.I)
_OPTION = re.compile(r"(?P<head>(?<![\w-])--?[\w-]*(?:password|passwd|token|secret)[\w-]*\s+)"
                     r"(?!-)\S+", re.I)
_HEADER = re.compile(r"(?P<head>X-(?:Auth|Subject)-Token[\"']?\s*[:=]\s*[\"']?)[^\s\"',;}]+",
                     re.I)
_PEM = re.compile(r"-----BEGIN ([A-Z0-9 ]*PRIVATE KEY)-----.*?(-----END \1-----|\Z)", re.S)


def scrub_text(text):
    """``text`` with passwords, tokens and private keys masked."""
    if not isinstance(text, str) or not text:
        return text
    text = _PEM.sub(lambda m: f"-----BEGIN {m.group(1)}----- {MASK} -----END {m.group(1)}-----",
                    text)
    text = _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, text)
    text = _HEADER.sub(lambda m: m.group("head") + MASK, text)
    text = _ASSIGNMENT.sub(lambda m: m.group("head") + MASK, text)
    return _OPTION.sub(lambda m: m.group("head") + MASK, text)


def secret_key(key):
    """True when a mapping key names a secret (its value is masked whole): one of its words
    (split at ``_ - .``) is password, secret, token, pem ..., or it holds ``private_key``,
    ``auth_key`` or ``api_key``. ``console_auth_tokens`` (a table) is not one."""
    if not isinstance(key, str):
        return False
    lowered = key.lower()
    words = set(re.split(r"[_.\-]+", lowered))
    return bool(words & _SECRET_WORDS) or any(pair in lowered.replace("-", "_")
                                              for pair in _SECRET_PAIRS)


def scrub(value):
    """A copy of ``value`` (JSON-like data) with every secret masked."""
    if isinstance(value, dict):
        return {key: (MASK if secret_key(key) and item not in (None, "", False, True)
                      and not isinstance(item, (dict, list)) else scrub(item))
                for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(item) for item in value]
    if isinstance(value, str):
        return scrub_text(value)
    return value
