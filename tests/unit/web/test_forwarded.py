# SPDX-License-Identifier: Apache-2.0
"""ProxyHeaders on its own: forwarded headers believed from trusted proxies only."""

from __future__ import annotations

import io
import json

import pytest

from bastion.observability.logging import configure_logging, flush_lines
from bastion.web import ProxyHeaders, RequestContext
from tests.conftest import SettingsFactory
from tests.unit.web.apps import client_for, responder

SPOOF = {"X-Forwarded-For": "203.0.113.99", "X-Forwarded-Proto": "https"}


async def test_untrusted_peer_cannot_claim_an_address_or_https() -> None:
    app = ProxyHeaders(responder(), trusted_proxies=["10.0.0.0/8"])
    async with client_for(app, base_url="http://testserver", client=("198.51.100.7", 5000)) as http:
        seen = (await http.get("/", headers=SPOOF)).json()
    assert seen["scheme"] == "http"
    assert seen["client"] == ["198.51.100.7", 5000]
    assert seen["client_ip"] == "198.51.100.7"


async def test_no_trusted_proxies_means_nothing_forwarded_is_believed() -> None:
    app = ProxyHeaders(responder())
    async with client_for(app, base_url="http://testserver", client=("127.0.0.1", 5000)) as http:
        seen = (await http.get("/", headers=SPOOF)).json()
    assert seen["scheme"] == "http"
    assert seen["client_ip"] == "127.0.0.1"


async def test_trusted_proxy_is_believed() -> None:
    app = ProxyHeaders(responder(), trusted_proxies=["10.0.0.0/8"])
    async with client_for(app, base_url="http://testserver", client=("10.1.2.3", 5000)) as http:
        seen = (await http.get("/", headers=SPOOF)).json()
    assert seen["scheme"] == "https"
    assert seen["client"] == ["203.0.113.99", 0]
    assert seen["client_ip"] == "203.0.113.99"
    assert seen["peer"] == ["10.1.2.3", 5000]


async def test_client_prepended_hops_are_not_believed() -> None:
    app = ProxyHeaders(responder(), trusted_proxies=["10.0.0.0/8"])
    headers = {"X-Forwarded-For": "127.0.0.1, 198.51.100.20, 10.9.9.9"}
    async with client_for(app, base_url="http://testserver", client=("10.1.2.3", 5000)) as http:
        seen = (await http.get("/", headers=headers)).json()
    assert seen["client_ip"] == "198.51.100.20"


@pytest.mark.parametrize(
    ("proto", "scheme"),
    [
        ("https", "https"),
        ("HTTPS", "https"),
        ("http", "http"),
        ("http, https", "https"),
        ("javascript", "http"),
    ],
)
async def test_forwarded_proto_values(proto: str, scheme: str) -> None:
    app = ProxyHeaders(responder(), trusted_proxies=["127.0.0.1"])
    async with client_for(app, base_url="http://testserver", client=("127.0.0.1", 1)) as http:
        seen = (await http.get("/", headers={"X-Forwarded-Proto": proto})).json()
    assert seen["scheme"] == scheme


async def test_malformed_forwarded_for_falls_back_to_the_peer() -> None:
    app = ProxyHeaders(responder(), trusted_proxies=["127.0.0.1"])
    async with client_for(app, base_url="http://testserver", client=("127.0.0.1", 1)) as http:
        seen = (await http.get("/", headers={"X-Forwarded-For": "not-an-ip"})).json()
    assert seen["client_ip"] == "127.0.0.1"


async def test_unix_socket_peer_counts_as_loopback() -> None:
    app = ProxyHeaders(responder(), trusted_proxies=["127.0.0.1"])
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "scheme": "http",
        "method": "GET",
        "path": "/",
        "client": None,
        "server": ("/run/bastion.sock", None),
        "headers": [(b"x-forwarded-for", b"203.0.113.5"), (b"x-forwarded-proto", b"https")],
    }
    await app(scope, receive, send)  # type: ignore[arg-type]
    assert scope["client"] == ("203.0.113.5", 0)
    assert scope["scheme"] == "https"


async def test_an_ipv4_mapped_peer_is_seen_as_ipv4_everywhere() -> None:
    app = ProxyHeaders(responder())
    async with client_for(app, base_url="http://testserver", client=("::ffff:203.0.113.7", 5000)) as http:
        seen = (await http.get("/")).json()
    # scope["client"] is what the access log and request.client read.
    assert seen["client"] == ["203.0.113.7", 5000]
    assert seen["client_ip"] == "203.0.113.7"
    assert seen["peer"] == ["203.0.113.7", 5000]


async def test_a_mapped_trusted_proxy_and_a_mapped_forwarded_client_are_ipv4() -> None:
    app = ProxyHeaders(responder(), trusted_proxies=["10.0.0.0/8"])
    headers = {"X-Forwarded-For": "::ffff:198.51.100.20"}
    async with client_for(app, base_url="http://testserver", client=("::ffff:10.1.2.3", 5000)) as http:
        seen = (await http.get("/", headers=headers)).json()
    assert seen["client_ip"] == "198.51.100.20"
    assert seen["client"] == ["198.51.100.20", 0]
    assert seen["peer"] == ["10.1.2.3", 5000]


async def test_ipv6_peers_are_written_one_way() -> None:
    app = ProxyHeaders(responder())
    async with client_for(app, base_url="http://testserver", client=("2001:DB8:0:0::1", 5000)) as http:
        seen = (await http.get("/")).json()
    assert seen["client_ip"] == "2001:db8::1"


async def test_the_access_log_records_the_ipv4_form(make_settings: SettingsFactory) -> None:
    stream = io.StringIO()
    configure_logging(make_settings(), stream=stream)
    app = RequestContext(ProxyHeaders(responder()))
    async with client_for(app, base_url="http://testserver", client=("::ffff:203.0.113.7", 5000)) as http:
        await http.get("/")
    flush_lines()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["client"] for line in lines if line["event"] == "request"] == ["203.0.113.7"]
