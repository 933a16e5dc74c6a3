# SPDX-License-Identifier: Apache-2.0
"""The RateLimit middleware on its own, as a library user adopts it in any ASGI app."""

from __future__ import annotations

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from bastion.auth.principal import AuthMethod, Principal, Role
from bastion.ratelimit.algorithm import Rate
from bastion.ratelimit.policies import Policy, PolicyRule
from bastion.ratelimit.policies import Scope as IdentityScope
from bastion.ratelimit.service import RateLimiter
from bastion.ratelimit.storage import MemoryStorage
from bastion.web.ratelimit import RateLimit
from tests.support.clock import FakeClock


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello")


def limiter(clock: FakeClock) -> RateLimiter:
    rule = PolicyRule(Policy.GLOBAL, Rate.parse("2/minute"), IdentityScope.CLIENT)
    return RateLimiter(storage=MemoryStorage(), policies={Policy.GLOBAL: rule}, clock=clock)


def client(app: ASGIApp) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=("203.0.113.5", 1234))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def test_any_asgi_app_can_adopt_the_limit() -> None:
    clock = FakeClock()
    app = Starlette(routes=[Route("/", hello), Route("/health", hello)])
    wrapped = RateLimit(app, limiter=limiter(clock), license_url="https://example.org/license")
    async with client(wrapped) as http:
        statuses = [(await http.get("/")).status_code for _ in range(3)]
        refused = await http.get("/")
        assert [(await http.get("/health")).status_code for _ in range(5)] == [200] * 5
    assert statuses == [200, 200, 429]
    body = refused.json()["detail"]
    assert body["error"] == "rate_limited"
    assert body["license"] == "https://example.org/license"
    assert body["request_id"] is None  # no request context layer in this app
    assert refused.headers["retry-after"] == str(body["retry_after"])


async def test_without_a_limiter_requests_are_refused_not_unlimited() -> None:
    app = Starlette(routes=[Route("/", hello)])
    async with client(RateLimit(app)) as http:
        response = await http.get("/")
    assert response.status_code == 503
    assert response.json()["detail"]["error"] == "service_unavailable"


async def test_an_authenticated_client_from_a_blocked_address_is_refused() -> None:
    clock = FakeClock()
    limits = limiter(clock)
    principal = Principal(subject="k1", role=Role.USER, method=AuthMethod.API_KEY, api_key_id="k1")

    async def authenticated(scope: Scope, receive: Receive, send: Send) -> None:
        # Authentication that runs as a layer before the limit.
        if scope["type"] == "http":
            scope["state"] = {"principal": principal}
        await inner(scope, receive, send)

    inner = RateLimit(Starlette(routes=[Route("/", hello)]), limiter=limits)
    async with client(authenticated) as http:
        # The limit counts against the key, not the address...
        assert [(await http.get("/")).status_code for _ in range(3)] == [200, 200, 429]
        # ...and the address's own block still applies to the key's requests.
        clock.advance(60.0)  # the key's bucket is full again
        await limits.block("ip:203.0.113.5", seconds=60)
        response = await http.get("/")
    assert response.status_code == 403
    assert response.json()["detail"]["error"] == "blocked"
