# SPDX-License-Identifier: Apache-2.0
"""The admin blocklist: addresses, networks, API keys and users; expiry; audit; shared through Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import SettingsFactory, serve_app
from tests.integration.auth.helpers import (
    assert_error,
    audit_events,
    bearer,
    identity_app,
    identity_settings,
    make_admin,
    user_session,
)
from tests.integration.keys.helpers import create_key, key_header
from tests.support.clock import FakeClock


@asynccontextmanager
async def client_at(app: FastAPI, ip: str) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=(ip, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
        yield http


async def test_addresses_and_networks_are_blocked_until_expiry_or_lifted(
    make_settings: SettingsFactory,
) -> None:
    async with identity_app(identity_settings(make_settings)) as (app, http):
        clock = FakeClock()
        app.state.limiter.clock = clock
        _, admin_tokens = await make_admin(app, http, "admin@example.com")
        admin = bearer(admin_tokens["access_token"])
        placed = await http.post(
            "/api/admin/blocklist",
            json={"kind": "cidr", "value": "203.0.113.0/24", "seconds": 60},
            headers=admin,
        )
        assert placed.status_code == 201 and placed.json()["value"] == "203.0.113.0/24"
        await http.post("/api/admin/blocklist", json={"kind": "ip", "value": "198.51.100.9"}, headers=admin)
        async with (
            client_at(app, "203.0.113.77") as inside,
            client_at(app, "198.51.100.9") as single,
            client_at(app, "192.0.2.1") as outside,
        ):
            for blocked in (inside, single):
                assert_error(await blocked.get("/api/auth/me"), 403, "blocked")
                assert_error(await blocked.post("/api/auth/login", json={}), 403, "blocked")
            assert_error(await outside.get("/api/auth/me"), 401)
            # Health probes stay reachable, as before.
            assert (await inside.get("/health")).status_code == 200

            clock.advance(61)
            assert_error(await inside.get("/api/auth/me"), 401)
            assert_error(await single.get("/api/auth/me"), 403, "blocked")

            # No expiry: blocked until lifted; lifted by the network's address and prefix.
            await http.post(
                "/api/admin/blocklist",
                json={"kind": "cidr", "value": "203.0.113.0/24", "seconds": None},
                headers=admin,
            )
            assert_error(await inside.get("/api/auth/me"), 403, "blocked")
            items = (await http.get("/api/admin/blocklist", headers=admin)).json()["items"]
            assert {(item["kind"], item["value"]) for item in items} == {
                ("cidr", "203.0.113.0/24"),
                ("ip", "198.51.100.9"),
            }
            assert (await http.get("/api/admin/blocks", headers=admin)).json()["items"] == items
            assert (
                await http.delete("/api/admin/blocklist/cidr/203.0.113.0/24", headers=admin)
            ).status_code == 204
            assert_error(await inside.get("/api/auth/me"), 401)
            assert_error(await http.delete("/api/admin/blocklist/cidr/203.0.113.0/24", headers=admin), 404)
            assert (await http.delete("/api/admin/blocks/ip/198.51.100.9", headers=admin)).status_code == 204
            assert_error(await single.get("/api/auth/me"), 401)

        placed_events = await audit_events(app, "client_blocked")
        lifted_events = await audit_events(app, "client_unblocked")
        assert {event.target_type for event in placed_events} == {"cidr", "ip"}
        assert all(event.actor_type == "admin" for event in placed_events + lifted_events)
        assert len(lifted_events) == 2


async def test_blocked_keys_and_users_are_refused_before_any_route_work(
    make_settings: SettingsFactory,
) -> None:
    async with identity_app(identity_settings(make_settings)) as (app, http):
        clock = FakeClock(start=time.time())
        app.state.limiter.clock = clock
        user_id, tokens = await user_session(http, "owner@example.com")
        user = bearer(tokens["access_token"])
        key = (await create_key(http, tokens["access_token"]))["key"]
        key_id = key.split("_")[1]
        _, admin_tokens = await make_admin(app, http, "admin@example.com")
        admin = bearer(admin_tokens["access_token"])

        await http.post("/api/admin/blocklist", json={"kind": "key", "value": key_id}, headers=admin)
        assert_error(await http.get("/api/sessions", headers=key_header(key)), 403, "blocked")
        # Even on routes that need no authentication, and with a user's token alongside.
        assert_error(await http.get("/api/auth/me", headers={**user, "X-API-Key": key}), 403, "blocked")
        assert (await http.get("/api/sessions", headers=user)).status_code == 200
        await http.delete(f"/api/admin/blocklist/key/{key_id}", headers=admin)
        assert (await http.get("/api/sessions", headers=key_header(key))).status_code == 200

        await http.post(
            "/api/admin/blocklist", json={"kind": "user", "value": user_id, "seconds": 600}, headers=admin
        )
        assert_error(await http.get("/api/sessions", headers=user), 403, "blocked")
        # The user's keys are the user's too.
        assert_error(await http.get("/api/sessions", headers=key_header(key)), 403, "blocked")
        assert (await http.get("/api/admin/blocklist", headers=admin)).status_code == 200
        # Blocks end by themselves.
        clock.advance(601)
        assert (await http.get("/api/sessions", headers=user)).status_code == 200
        assert (await http.get("/api/sessions", headers=key_header(key))).status_code == 200
        events = await audit_events(app, "client_blocked")
        assert [(event.target_type, event.target_id) for event in events] == [
            ("key", key_id),
            ("user", user_id),
        ]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/admin/blocklist", {"kind": "cidr", "value": "10.0.0.0/33"}),
        ("POST", "/api/admin/blocklist", {"kind": "cidr", "value": "not-a-network"}),
        ("POST", "/api/admin/blocklist", {"kind": "cidr", "value": "10.0.0.0/8/8"}),
        ("POST", "/api/admin/blocklist", {"kind": "key", "value": "a/b"}),
        ("POST", "/api/admin/blocklist", {"kind": "host", "value": "example.com"}),
        ("POST", "/api/admin/blocklist", {"kind": "ip", "value": "10.0.0.0/8"}),
        ("POST", "/api/admin/blocklist", {"kind": "ip", "value": "2001:db8::/64"}),  # a cidr block
        ("DELETE", "/api/admin/blocklist/ip/10.0.0.0/8", None),
        ("POST", "/api/admin/blocklist", {"kind": "user", "value": "u1", "seconds": 0}),
        ("POST", "/api/admin/blocklist", {"kind": "user", "value": "u1", "seconds": 10**9}),
        ("DELETE", "/api/admin/blocklist/cidr/10.0.0.0/999", None),
        ("DELETE", "/api/admin/blocklist/cidr/not-an-address/8", None),
        ("DELETE", "/api/admin/blocklist/cidr/10.0.0.0/x", None),
    ],
)
async def test_hostile_blocklist_input_gets_422(
    make_settings: SettingsFactory, method: str, path: str, body: dict[str, object] | None
) -> None:
    async with identity_app(identity_settings(make_settings)) as (app, http):
        _, admin_tokens = await make_admin(app, http, "admin@example.com")
        response = await http.request(method, path, json=body, headers=bearer(admin_tokens["access_token"]))
        assert_error(response, 422)


async def test_a_single_address_network_is_an_address_block(make_settings: SettingsFactory) -> None:
    async with identity_app(identity_settings(make_settings)) as (app, http):
        _, admin_tokens = await make_admin(app, http, "admin@example.com")
        admin = bearer(admin_tokens["access_token"])
        placed = await http.post(
            "/api/admin/blocklist", json={"kind": "cidr", "value": "2001:db8::1/128"}, headers=admin
        )
        assert placed.json()["kind"] == "ip" and placed.json()["value"] == "2001:db8::1"
        wide = await http.post(
            "/api/admin/blocklist", json={"kind": "cidr", "value": "2001:db8:1::5/48"}, headers=admin
        )
        assert wide.json()["value"] == "2001:db8:1::/48"
        async with client_at(app, "2001:db8:1:ffff::9") as inside:
            assert_error(await inside.get("/api/auth/me"), 403, "blocked")


async def test_network_blocks_reach_every_instance_through_redis(
    make_settings: SettingsFactory, each_redis_url: str
) -> None:
    settings = identity_settings(make_settings, REDIS_URL=each_redis_url)
    async with (
        identity_app(settings) as (first, http),
        serve_app(settings, client=("203.0.113.50", 1)) as (_, other),
    ):
        _, admin_tokens = await make_admin(first, http, "admin@example.com")
        admin = bearer(admin_tokens["access_token"])
        assert_error(await other.get("/api/auth/me"), 401)  # the second instance has loaded its (empty) list
        await http.post(
            "/api/admin/blocklist", json={"kind": "cidr", "value": "203.0.113.0/24"}, headers=admin
        )
        for _ in range(100):
            if (await other.get("/api/auth/me")).status_code == 403:
                break
            await asyncio.sleep(0.02)
        assert_error(await other.get("/api/auth/me"), 403, "blocked")
        await http.delete("/api/admin/blocklist/cidr/203.0.113.0/24", headers=admin)
        for _ in range(100):
            if (await other.get("/api/auth/me")).status_code == 401:
                break
            await asyncio.sleep(0.02)
        assert_error(await other.get("/api/auth/me"), 401)


@pytest.mark.parametrize(
    ("kind", "value", "risks"),
    [
        ("cidr", "0.0.0.0/0", {"too_wide", "loopback", "own_address", "trusted_proxy"}),
        ("cidr", "::/0", {"too_wide", "loopback"}),
        ("cidr", "2001:db8::/31", {"too_wide"}),
        ("ip", "127.0.0.1", {"loopback"}),
        ("ip", "::ffff:127.0.0.2", {"loopback"}),
        ("ip", "::ffff:198.51.100.4", {"own_address"}),
        ("cidr", "198.51.100.0/24", {"own_address"}),
        ("ip", "10.0.0.7", {"trusted_proxy"}),
    ],
)
async def test_blocks_that_could_lock_out_the_administrators_need_force(
    make_settings: SettingsFactory, kind: str, value: str, risks: set[str]
) -> None:
    settings = identity_settings(make_settings, TRUSTED_PROXIES="10.0.0.0/24")
    async with identity_app(settings) as (app, http):
        _, admin_tokens = await make_admin(app, http, "admin@example.com")
        admin = bearer(admin_tokens["access_token"])
        async with client_at(app, "198.51.100.4") as remote:
            refused = await remote.post(
                "/api/admin/blocklist", json={"kind": kind, "value": value}, headers=admin
            )
            detail = assert_error(refused, 409, "block_refused")
            assert set(detail["risks"]) == risks
            assert '"force": true' in detail["message"]
            # Nothing was placed: the administrator still gets in.
            assert (await remote.get("/api/admin/blocklist", headers=admin)).json()["items"] == []
            forced = await remote.post(
                "/api/admin/blocklist", json={"kind": kind, "value": value, "force": True}, headers=admin
            )
            assert forced.status_code == 201, forced.text
        events = await audit_events(app, "client_blocked")
        assert [(event.result, event.actor_type) for event in events] == [
            ("failure", "admin"),
            ("success", "admin"),
        ]
        assert set(events[0].details["refused"]) == risks and "forced" not in events[0].details
        assert set(events[1].details["forced"]) == risks and "refused" not in events[1].details
        assert events[0].request_id == detail["request_id"] and events[1].request_id
        assert events[0].actor_id == events[1].actor_id is not None


async def test_an_administrator_cannot_block_their_own_account_unforced(
    make_settings: SettingsFactory,
) -> None:
    async with identity_app(identity_settings(make_settings)) as (app, http):
        admin_id, admin_tokens = await make_admin(app, http, "admin@example.com")
        admin = bearer(admin_tokens["access_token"])
        own = {"kind": "user", "value": admin_id}
        detail = assert_error(
            await http.post("/api/admin/blocklist", json=own, headers=admin), 409, "block_refused"
        )
        assert detail["risks"] == ["own_identity"]
        assert (await http.get("/api/admin/blocklist", headers=admin)).status_code == 200
        # Forced, it takes effect at once: the admin locked themselves out, as they insisted.
        placed = await http.post("/api/admin/blocklist", json={**own, "force": True}, headers=admin)
        assert placed.status_code == 201
        assert_error(await http.get("/api/admin/blocklist", headers=admin), 403, "blocked")


async def test_a_forced_block_of_everything_shuts_out_the_admin_too(make_settings: SettingsFactory) -> None:
    async with identity_app(identity_settings(make_settings)) as (app, http):
        _, admin_tokens = await make_admin(app, http, "admin@example.com")
        admin = bearer(admin_tokens["access_token"])
        wide = {"kind": "cidr", "value": "0.0.0.0/0", "force": True}
        assert (await http.post("/api/admin/blocklist", json=wide, headers=admin)).status_code == 201
        assert_error(await http.get("/api/admin/blocklist", headers=admin), 403, "blocked")
        # What `bastion blocks lift cidr 0.0.0.0/0` does (tested against Redis in test_blocks_cli).
        assert await app.state.blocklist.unblock("cidr:0.0.0.0/0", actor="cli", request_id="cli")
        assert (await http.get("/api/admin/blocklist", headers=admin)).status_code == 200


async def refused_within(seconds: float, request: Any) -> httpx.Response:
    deadline = time.monotonic() + seconds
    while True:
        response = await request()
        if response.status_code == 403 or time.monotonic() > deadline:
            return response
        await asyncio.sleep(0.02)


async def test_a_key_or_user_block_is_answered_from_memory_and_applies_at_once(
    make_settings: SettingsFactory,
) -> None:
    async with identity_app(identity_settings(make_settings)) as (app, http):
        user_id, tokens = await user_session(http, "remembered@example.com")
        key = (await create_key(http, tokens["access_token"]))["key"]
        key_id = key.split("_")[1]
        limiter = app.state.limiter
        asked: list[tuple[str, ...]] = []
        original = limiter.blocked_any

        async def counted(identities: Any) -> Any:
            asked.append(tuple(identities))
            return await original(identities)

        limiter.blocked_any = counted
        for _ in range(10):
            assert (await http.get("/api/sessions", headers=key_header(key))).status_code == 200
        assert len(asked) <= 1  # the first request asked the store; the others were answered here

        # An automatic block (placed by the limiter itself, as violations and failed keys do).
        await limiter.block(f"key:{key_id}", seconds=60, reason="violations")
        assert_error(await http.get("/api/sessions", headers=key_header(key)), 403, "blocked")
        await limiter.unblock(f"key:{key_id}")
        assert (await http.get("/api/sessions", headers=key_header(key))).status_code == 200

        # A block written to the store by another road (no notice): seen within a second.
        user = bearer(tokens["access_token"])
        assert (await http.get("/api/sessions", headers=user)).status_code == 200
        now = limiter.clock()
        await limiter.storage.block(f"user:{user_id}", now, now + 60, "manual")
        answer = await refused_within(2.0, lambda: http.get("/api/sessions", headers=user))
        assert_error(answer, 403, "blocked")


@pytest.mark.redis
async def test_a_key_block_reaches_every_instance_within_a_second(
    make_settings: SettingsFactory, redis_url: str
) -> None:
    settings = identity_settings(make_settings, REDIS_URL=redis_url)
    async with identity_app(settings) as (first, http), serve_app(settings) as (second, other):
        _, tokens = await user_session(http, "shared@example.com")
        key = (await create_key(http, tokens["access_token"]))["key"]
        key_id = key.split("_")[1]
        for client in (http, other, http, other):  # each instance has its answer in memory
            assert (await client.get("/api/sessions", headers=key_header(key))).status_code == 200
        await first.state.limiter.block(f"key:{key_id}", seconds=60, reason="violations")
        answer = await refused_within(1.0, lambda: other.get("/api/sessions", headers=key_header(key)))
        assert_error(answer, 403, "blocked")
        await first.state.limiter.unblock(f"key:{key_id}")
        for _ in range(100):
            if (await other.get("/api/sessions", headers=key_header(key))).status_code == 200:
                break
            await asyncio.sleep(0.02)
        assert (await other.get("/api/sessions", headers=key_header(key))).status_code == 200
        assert second.state.blocklist is not first.state.blocklist
