# SPDX-License-Identifier: Apache-2.0
"""TrustedHosts on its own: exact names, safe wildcards, ports ignored, everything else 400."""

from __future__ import annotations

import pytest

from bastion.web import TrustedHosts
from bastion.web.hosts import _ANSWERS_KEPT, host_name
from tests.unit.web.apps import client_for, responder


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Example.ORG", "example.org"),
        ("example.org:8443", "example.org"),
        ("example.org.", "example.org"),
        ("127.0.0.1:8000", "127.0.0.1"),
        ("[::1]:8000", "[::1]"),
        ("[::1]", "[::1]"),
        ("", None),
        ("example.org:", None),
        ("example.org:80:80", None),
        ("example.org:abc", None),
        ("exa mple.org", None),
        ("example.org/evil", None),
        ("evil.com@example.org", None),
        ("example.org\r\nX: y", None),
        ("-bad.example.org", None),
        ("a..b", None),
        ("[::1", None),
        ("[zz::1]", None),
        ("x" * 64 + ".org", None),
    ],
)
def test_host_name(raw: str, expected: str | None) -> None:
    assert host_name(raw) == expected


def hosts(*allowed: str) -> TrustedHosts:
    return TrustedHosts(responder(), allowed_hosts=allowed)


@pytest.mark.parametrize("host", ["api.example.org", "API.example.org:443", "localhost:8000", "[::1]:9"])
async def test_allowed_hosts_pass(host: str) -> None:
    async with client_for(hosts("api.example.org", "localhost", "[::1]")) as http:
        response = await http.get("/", headers={"Host": host})
    assert response.status_code == 200


@pytest.mark.parametrize(
    "host",
    ["evil.com", "api.example.org.evil.com", "evilapi.example.org", "127.0.0.1", "", "api.example.org:x"],
)
async def test_other_hosts_get_400_with_the_error_shape(host: str) -> None:
    async with client_for(hosts("api.example.org", "localhost")) as http:
        response = await http.get("/", headers={"Host": host})
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert response.json()["detail"]["error"] == "invalid_host"


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("a.example.org", 200),
        ("a.b.example.org:8443", 200),
        ("example.org", 400),
        ("evilexample.org", 400),
        ("a.example.org.evil.com", 400),
        (".example.org", 400),
    ],
)
async def test_wildcard_matches_subdomains_only(host: str, status: int) -> None:
    async with client_for(hosts("*.example.org")) as http:
        response = await http.get("/", headers={"Host": host})
    assert response.status_code == status


async def test_star_allows_any_well_formed_host_only() -> None:
    async with client_for(hosts("*")) as http:
        assert (await http.get("/", headers={"Host": "anything.test"})).status_code == 200
        assert (await http.get("/", headers={"Host": "bad host"})).status_code == 400


async def test_missing_or_duplicate_host_is_refused() -> None:
    app = hosts("localhost")

    async def call(headers: list[tuple[bytes, bytes]]) -> int:
        sent: list[dict[str, object]] = []

        async def receive() -> dict[str, object]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, object]) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "GET", "path": "/", "headers": headers, "state": {}}
        await app(scope, receive, send)  # type: ignore[arg-type]
        return int(sent[0]["status"])  # type: ignore[call-overload]

    assert await call([]) == 400
    assert await call([(b"host", b"localhost"), (b"host", b"evil.com")]) == 400
    assert await call([(b"host", b"localhost")]) == 200


@pytest.mark.parametrize("entry", ["exa*mple.org", "*", "*.", "**.example.org", "bad host"])
def test_bad_entries_are_refused_at_construction(entry: str) -> None:
    if entry == "*":
        TrustedHosts(responder(), allowed_hosts=[entry])  # allowed outside production
        return
    with pytest.raises(ValueError):
        TrustedHosts(responder(), allowed_hosts=[entry])


def test_answers_kept_per_host_value_stay_bounded_and_right_under_a_flood_of_names() -> None:
    """A client sending ever new Host values only churns the kept answers: each is still decided."""
    hosts = TrustedHosts(None, allowed_hosts=["api.example.org", "*.example.net"])  # type: ignore[arg-type]
    for n in range(3 * _ANSWERS_KEPT):
        assert not hosts.allows(f"evil-{n}.example.com")
        assert hosts.allows(f"n{n}.example.net")
        assert len(hosts._answers) <= _ANSWERS_KEPT
    assert hosts.allows("API.example.org:443") and not hosts.allows("example.net")
    assert not hosts.allows("api.example.org\x00") and not hosts.allows(None)
