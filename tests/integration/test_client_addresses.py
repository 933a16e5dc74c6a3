# SPDX-License-Identifier: Apache-2.0
"""Client addresses in one canonical form: IPv4-mapped IPv6 is IPv4, IPv6 clients count per prefix.

Through the whole app: blocks, limits and the audit trail, on the in-process store and on Redis.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from bastion.db import migrate
from bastion.settings import Settings
from tests.conftest import SettingsFactory
from tests.integration.auth.helpers import assert_error, audit_events, identity_app, identity_settings
from tests.support.clock import FakeClock
from tests.support.lifespan import lifespan_of
from tests.support.ratelimit_app import build

ADMIN = {"X-Test-Principal": "admin"}
PROXY = "10.0.0.1"


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def store(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Settings for the block store: in process, or Redis shared by every instance."""
    if request.param == "memory":
        return {}
    return {"REDIS_URL": request.getfixturevalue("redis_url")}


class Served:
    """The test app with its lifespan running; ``at(ip)`` is a client connecting from ``ip``."""

    def __init__(self, app: FastAPI, asgi: Any) -> None:
        self.app = app
        self.asgi = asgi

    def at(self, ip: str, port: int = 40000) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.asgi, raise_app_exceptions=False, client=(ip, port))
        return httpx.AsyncClient(transport=transport, base_url="http://localhost")


@asynccontextmanager
async def served(settings: Settings, clock: FakeClock) -> AsyncIterator[Served]:
    # Migrated: blocks placed and listed are audited.
    await asyncio.to_thread(migrate.upgrade, settings.database_url.get_secret_value())
    app, asgi = build(settings)
    async with lifespan_of(asgi) as manager:
        app.state.limiter.clock = clock
        yield Served(app, manager.app)


async def test_a_block_of_an_ipv4_address_refuses_its_ipv4_mapped_form(
    make_settings: SettingsFactory, store: dict[str, Any]
) -> None:
    settings = make_settings(TRUSTED_PROXIES=PROXY, **store)
    async with (
        served(settings, FakeClock()) as server,
        server.at("127.0.0.1") as admin,
        server.at("::ffff:203.0.113.7") as mapped,
    ):
        assert (await mapped.get("/test/ping")).status_code == 200
        placed = await admin.post(
            "/api/admin/blocks", headers=ADMIN, json={"kind": "ip", "value": "203.0.113.7"}
        )
        assert placed.status_code == 201, placed.text
        # A dual-stack listener reports the IPv4 client as ::ffff:203.0.113.7.
        assert_error(await mapped.get("/test/ping"), 403, "blocked")
        # Behind a trusted proxy that writes the mapped form into X-Forwarded-For.
        async with server.at(PROXY) as proxy:
            forwarded = {"X-Forwarded-For": "::ffff:203.0.113.7"}
            assert_error(await proxy.get("/test/ping", headers=forwarded), 403, "blocked")
            other = {"X-Forwarded-For": "::ffff:203.0.113.8"}
            assert (await proxy.get("/test/ping", headers=other)).status_code == 200
        # A mapped proxy address is the same trusted proxy.
        async with server.at(f"::ffff:{PROXY}") as mapped_proxy:
            forwarded = {"X-Forwarded-For": "203.0.113.7"}
            assert_error(await mapped_proxy.get("/test/ping", headers=forwarded), 403, "blocked")


async def test_an_ipv4_mapped_block_is_stored_and_matched_as_ipv4(
    make_settings: SettingsFactory, store: dict[str, Any]
) -> None:
    async with served(make_settings(**store), FakeClock()) as server, server.at("127.0.0.1") as admin:
        # A loopback address: refused unless forced (see the lockout tests).
        body = {"kind": "ip", "value": "::ffff:127.0.0.2", "force": True}
        placed = await admin.post("/api/admin/blocks", headers=ADMIN, json=body)
        assert placed.status_code == 201, placed.text
        assert (placed.json()["kind"], placed.json()["value"]) == ("ip", "127.0.0.2")
        items = (await admin.get("/api/admin/blocks", headers=ADMIN)).json()["items"]
        assert [(item["kind"], item["value"]) for item in items] == [("ip", "127.0.0.2")]
        for seen_as in ("127.0.0.2", "::ffff:127.0.0.2"):
            async with server.at(seen_as) as client:
                assert_error(await client.get("/test/ping"), 403, "blocked")
        assert (await admin.get("/test/ping")).status_code == 200
        # Any spelling lifts it.
        assert (await admin.delete("/api/admin/blocks/ip/::ffff:7f00:2", headers=ADMIN)).status_code == 204
        async with server.at("::ffff:127.0.0.2") as client:
            assert (await client.get("/test/ping")).status_code == 200


async def test_ipv6_blocks_are_canonical_and_match_what_they_name(
    make_settings: SettingsFactory, store: dict[str, Any]
) -> None:
    async with served(make_settings(**store), FakeClock()) as server, server.at("127.0.0.1") as admin:
        network = await admin.post(
            "/api/admin/blocks", headers=ADMIN, json={"kind": "cidr", "value": "2001:db8::5/64"}
        )
        assert (network.json()["kind"], network.json()["value"]) == ("cidr", "2001:db8::/64")
        single = await admin.post(
            "/api/admin/blocks", headers=ADMIN, json={"kind": "ip", "value": "2001:DB8:1:0:0:0:0:5"}
        )
        assert (single.json()["kind"], single.json()["value"]) == ("ip", "2001:db8:1::5")
        blocked = ("2001:db8::1", "2001:db8::ffff:1", "2001:db8:1::5")
        allowed = ("2001:db8:0:1::1", "2001:db8:1::6")  # another /64; a neighbour of the address
        for ip in blocked:
            async with server.at(ip) as client:
                assert_error(await client.get("/test/ping"), 403, "blocked")
        for ip in allowed:
            async with server.at(ip) as client:
                assert (await client.get("/test/ping")).status_code == 200, ip
        assert (await admin.delete("/api/admin/blocks/cidr/2001:db8::9/64", headers=ADMIN)).status_code == 204
        assert (await admin.delete("/api/admin/blocks/ip/2001:db8:1::5", headers=ADMIN)).status_code == 204
        for ip in blocked:
            async with server.at(ip) as client:
                assert (await client.get("/test/ping")).status_code == 200


# Two /64s of one /48, three addresses each.
LOGIN_ADDRESSES = [f"2001:db8:1:{subnet}::{host}" for subnet in ("a", "b") for host in (1, 2, 3)]


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        # Default /64: each /64 has one budget (burst 3) that all its addresses spend.
        (None, [401] * 6 + [429] * 6),
        # /48: both /64s are one client.
        (48, [401] * 3 + [429] * 9),
        # /128: every address is its own client, with a budget of its own.
        (128, [401] * 12),
    ],
)
async def test_addresses_of_one_ipv6_prefix_share_one_login_budget(
    make_settings: SettingsFactory, prefix: int | None, expected: list[int]
) -> None:
    overrides: dict[str, Any] = {"RATE_LIMIT_LOGIN": "5/minute;burst=3"}
    if prefix is not None:
        overrides["RATE_LIMIT_IPV6_PREFIX"] = prefix
    async with identity_app(identity_settings(make_settings, **overrides)) as (app, _http):
        app.state.limiter.clock = FakeClock()
        statuses: list[int] = []
        for ip in LOGIN_ADDRESSES * 2:
            transport = httpx.ASGITransport(app=app, client=(ip, 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
                response = await client.post(
                    "/api/auth/login", json={"email": "nobody@example.com", "password": "wrong-password-1"}
                )
            statuses.append(response.status_code)
        assert statuses == expected


async def test_automatic_blocks_on_an_ipv6_client_cover_its_prefix(
    make_settings: SettingsFactory, store: dict[str, Any]
) -> None:
    settings = make_settings(RATE_LIMIT_BLOCK_AUTH_FAILURES=3, **store)
    async with served(settings, FakeClock()) as server:
        async with server.at("2001:db8:1:2::1") as first, server.at("2001:db8:1:2::99") as second:
            for client in (first, second, first):
                assert_error(await client.post("/test/failed-login"), 401)
            # The block is on the /64: the client cannot step to another address of it.
            async with server.at("2001:db8:1:2:ffff::7") as third:
                assert_error(await third.get("/test/ping"), 403, "blocked")
        async with server.at("2001:db8:1:3::1") as elsewhere:
            assert (await elsewhere.get("/test/ping")).status_code == 200
        async with server.at("127.0.0.1") as admin:
            items = (await admin.get("/api/admin/blocks", headers=ADMIN)).json()["items"]
            assert [(item["kind"], item["value"], item["reason"]) for item in items] == [
                ("ip", "2001:db8:1:2::/64", "auth_failures")
            ]
            lifted = await admin.delete("/api/admin/blocks/ip/2001:db8:1:2::/64", headers=ADMIN)
            assert lifted.status_code == 204, lifted.text
        async with server.at("2001:db8:1:2::1") as first:
            assert (await first.get("/test/ping")).status_code == 200


async def test_audit_records_carry_the_ipv4_form(make_settings: SettingsFactory) -> None:
    settings = identity_settings(make_settings)
    async with identity_app(settings, client=("::ffff:203.0.113.7", 40000)) as (app, http):
        failed = await http.post(
            "/api/auth/login", json={"email": "nobody@example.com", "password": "wrong-1234"}
        )
        assert_error(failed, 401)
        events = await audit_events(app, "auth_failure")
        assert [event.ip_address for event in events] == ["203.0.113.7"]


async def test_a_trusted_proxy_forwarding_a_mapped_address_audits_the_ipv4_form(
    make_settings: SettingsFactory,
) -> None:
    settings = identity_settings(make_settings, TRUSTED_PROXIES=PROXY)
    async with identity_app(settings, client=(PROXY, 40000)) as (app, http):
        failed = await http.post(
            "/api/auth/login",
            json={"email": "nobody@example.com", "password": "wrong-1234"},
            headers={"X-Forwarded-For": "::ffff:198.51.100.4"},
        )
        assert_error(failed, 401)
        assert [event.ip_address for event in await audit_events(app, "auth_failure")] == ["198.51.100.4"]


async def test_one_ipv6_prefix_is_one_client_to_the_password_throttle(make_settings: SettingsFactory) -> None:
    """Stepping through the addresses of one /64 does not buy fresh password guesses."""
    settings = identity_settings(make_settings, LOGIN_DELAY_AFTER_FAILURES=3)
    async with identity_app(settings) as (app, _http):

        async def guess(ip: str) -> int:
            transport = httpx.ASGITransport(app=app, client=(ip, 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
                response = await client.post(
                    "/api/auth/login", json={"email": "victim@example.com", "password": "wrong-password-1"}
                )
            return response.status_code

        one_prefix = [*LOGIN_ADDRESSES[:3], "2001:db8:1:a::ffff", "2001:db8:1:a:abcd::1"]
        assert [await guess(ip) for ip in one_prefix] == [401, 401, 401, 429, 429]
        # Another network is another client: its own first guesses are evaluated.
        assert await guess("2001:db8:9::1") == 401
