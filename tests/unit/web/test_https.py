# SPDX-License-Identifier: Apache-2.0
"""HTTPSRedirect on its own: 308 to the same host, path and query over https."""

from __future__ import annotations

from bastion.web import HTTPSRedirect
from tests.unit.web.apps import client_for, responder


async def test_plain_http_is_redirected_with_308() -> None:
    app = HTTPSRedirect(responder())
    async with client_for(app, base_url="http://api.example.org") as http:
        response = await http.post("/api/x%20y/z?a=1&b=%2F", content=b"{}")
    assert response.status_code == 308
    assert response.headers["location"] == "https://api.example.org/api/x%20y/z?a=1&b=%2F"


async def test_port_is_dropped_or_replaced() -> None:
    async with client_for(HTTPSRedirect(responder()), base_url="http://api.example.org:8080") as http:
        assert (await http.get("/")).headers["location"] == "https://api.example.org/"
    async with client_for(HTTPSRedirect(responder(), https_port=8443), base_url="http://h.test:8080") as http:
        assert (await http.get("/p")).headers["location"] == "https://h.test:8443/p"


async def test_double_slash_path_stays_on_our_host() -> None:
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "scheme": "http",
        "method": "GET",
        "path": "//evil.com/x",
        "raw_path": b"//evil.com/x",
        "query_string": b"",
        "headers": [(b"host", b"api.example.org")],
    }
    await HTTPSRedirect(responder())(scope, receive, send)  # type: ignore[arg-type]
    assert dict(sent[0]["headers"])[b"location"] == b"https://api.example.org//evil.com/x"  # type: ignore[call-overload]


async def test_https_and_disabled_pass_through() -> None:
    async with client_for(HTTPSRedirect(responder()), base_url="https://api.example.org") as http:
        assert (await http.get("/")).status_code == 200
    async with client_for(
        HTTPSRedirect(responder(), enabled=False), base_url="http://api.example.org"
    ) as http:
        assert (await http.get("/")).status_code == 200


async def test_malformed_host_is_refused_not_redirected() -> None:
    async with client_for(HTTPSRedirect(responder()), base_url="http://api.example.org") as http:
        response = await http.get("/", headers={"Host": "evil.com/x"})
    assert response.status_code == 400
    assert "location" not in response.headers


async def test_a_loopback_health_probe_is_answered_not_redirected() -> None:
    # The container's own probe (`bastion healthcheck`) has no TLS to go to.
    app = HTTPSRedirect(responder())
    async with client_for(app, base_url="http://localhost", client=("127.0.0.1", 5000)) as local:
        assert (await local.get("/health")).status_code == 200
        assert (await local.head("/health")).status_code == 200
        # Only that read: everything else from loopback is still redirected.
        assert (await local.post("/health")).status_code == 308
        assert (await local.get("/health/ready")).status_code == 308
        assert (await local.get("/api/auth/me")).status_code == 308
    async with client_for(app, base_url="http://localhost", client=("::1", 5000)) as local6:
        assert (await local6.get("/health")).status_code == 200
    async with client_for(app, base_url="http://api.example.org") as remote:
        assert (await remote.get("/health")).status_code == 308


async def test_a_forwarded_health_request_is_judged_by_its_real_client() -> None:
    # Behind a proxy on this machine (TRUSTED_PROXIES=127.0.0.1) ProxyHeaders resolves the client
    # from X-Forwarded-For: a remote client's plain-http /health is redirected.
    from bastion.web import ProxyHeaders

    app = ProxyHeaders(HTTPSRedirect(responder()), trusted_proxies=["127.0.0.1"])
    async with client_for(app, base_url="http://localhost", client=("127.0.0.1", 5000)) as proxied:
        forwarded = await proxied.get("/health", headers={"X-Forwarded-For": "203.0.113.9"})
        assert forwarded.status_code == 308
        assert (await proxied.get("/health")).status_code == 200
