"""leapfrog_keystone.Session.request: a connection dropped before any answer is sent again
for idempotent methods (a proxy closing a pooled connection, a backend restarting), never
for POST, and the error names the endpoint, not what was sent."""
import pytest
import requests

import leapfrog_keystone


class Answer:
    status_code = 200
    content = b'{"ok": true}'

    def json(self):
        return {"ok": True}


@pytest.fixture
def session(monkeypatch):
    monkeypatch.setattr(leapfrog_keystone, "CONNECT_PAUSE", 0)
    found = leapfrog_keystone.Session({"verify_tls": True, "timeout": 5})
    found.sent = []

    def request(method, url, **kwargs):
        found.sent.append(method)
        if len(found.sent) <= found.drops:
            raise requests.exceptions.ConnectionError(
                "('Connection aborted.', RemoteDisconnected('Remote end closed connection'))")
        return Answer()

    monkeypatch.setattr(found.http, "request", request)
    return found


def test_a_dropped_connection_is_retried_for_a_get(session):
    session.drops = 2
    assert session.request("GET", "http://127.0.1.100:8774/v2.1/os-services") == {"ok": True}
    assert session.sent == ["GET", "GET", "GET"]


def test_it_gives_up_after_three_attempts_naming_the_endpoint(session):
    session.drops = 5
    with pytest.raises(leapfrog_keystone.RequestFailed, match="cannot connect to 127.0.1.100:8774"):
        session.request("PUT", "http://127.0.1.100:8774/v2.1/os-services/x", json={"a": 1})
    assert session.sent == ["PUT"] * 3


def test_a_post_is_never_sent_twice(session):
    session.drops = 1
    with pytest.raises(leapfrog_keystone.RequestFailed):
        session.request("POST", "http://127.0.1.100:5000/v3/auth/tokens", json={"secret": "x"})
    assert session.sent == ["POST"]
