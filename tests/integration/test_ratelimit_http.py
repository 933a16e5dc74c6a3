# SPDX-License-Identifier: Apache-2.0
"""Limits as a client sees them: headers, 429/403 in the error shape, identities, escalation, blocks."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import select

from bastion.audit.models import AuditRecord
from bastion.db import migrate
from tests.conftest import SettingsFactory
from tests.integration.ratelimit_serving import serve_limited
from tests.support.clock import FakeClock

ADMIN = {"X-Test-Principal": "admin"}


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    detail: dict[str, object] = response.json()["detail"]
    assert detail["error"] == code
    assert detail["request_id"] == response.headers["x-request-id"]
    return detail


# -- the global per-client limit ---------------------------------------------------------------


async def test_global_limit_counts_down_then_answers_429(make_settings: SettingsFactory) -> None:
    clock = FakeClock()
    async with serve_limited(make_settings(RATE_LIMIT_PER_MINUTE=3), clock) as (_app, http):
        responses = [await http.get("/test/ping") for _ in range(3)]
        assert [r.status_code for r in responses] == [200, 200, 200]
        assert [r.headers["x-ratelimit-remaining"] for r in responses] == ["2", "1", "0"]
        assert {r.headers["x-ratelimit-limit"] for r in responses} == {"3"}
        assert responses[2].headers["x-ratelimit-reset"] == "60"
        refused = await http.get("/test/ping")
        detail = assert_error(refused, 429, "rate_limited")
        assert detail["retry_after"] == 20
        assert refused.headers["retry-after"] == "20"
        assert refused.headers["x-ratelimit-remaining"] == "0"
        assert refused.headers["x-ratelimit-limit"] == "3"
        # Probes are not limited.
        assert (await http.get("/health")).status_code == 200
        clock.advance(20)
        assert (await http.get("/test/ping")).status_code == 200


async def test_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored(
    make_settings: SettingsFactory,
) -> None:
    async with serve_limited(make_settings(RATE_LIMIT_PER_MINUTE=3), FakeClock()) as (_app, http):
        statuses = [
            (await http.get("/test/ping", headers={"X-Forwarded-For": f"198.51.100.{i}"})).status_code
            for i in range(5)
        ]
    assert statuses == [200, 200, 200, 429, 429]


async def test_forwarded_for_from_a_trusted_proxy_names_the_client(make_settings: SettingsFactory) -> None:
    settings = make_settings(RATE_LIMIT_PER_MINUTE=2, TRUSTED_PROXIES="127.0.0.1/32")
    async with serve_limited(settings, FakeClock()) as (_app, http):
        for i in range(4):  # four clients behind the proxy, two requests each: nobody is limited
            for _ in range(2):
                r = await http.get("/test/ping", headers={"X-Forwarded-For": f"203.0.113.{i}"})
                assert r.status_code == 200
        # A client prepending a forged hop is still limited as itself.
        forged = [
            await http.get("/test/ping", headers={"X-Forwarded-For": f"10.9.9.{i}, 203.0.113.0"})
            for i in range(2)
        ]
    assert [r.status_code for r in forged] == [429, 429]


async def test_the_proxy_layers_resolved_address_is_used_when_present(make_settings: SettingsFactory) -> None:
    """Behind a trusted proxy, each forwarded client has its own allowance (ProxyHeaders resolves it)."""
    clock = FakeClock()
    settings = make_settings(RATE_LIMIT_PER_MINUTE=1, TRUSTED_PROXIES="127.0.0.1")
    async with serve_limited(settings, clock) as (_app, http):
        first = {"X-Forwarded-For": "192.0.2.1"}
        assert (await http.get("/test/ping", headers=first)).status_code == 200
        assert (await http.get("/test/ping", headers={"X-Forwarded-For": "192.0.2.2"})).status_code == 200
        assert (await http.get("/test/ping", headers=first)).status_code == 429


# -- route policies --------------------------------------------------------------------------


async def test_a_route_policy_sets_its_own_headers_and_limit(make_settings: SettingsFactory) -> None:
    async with serve_limited(make_settings(), FakeClock()) as (_app, http):
        responses = [await http.get("/test/login-like") for _ in range(3)]
        assert [r.status_code for r in responses] == [200, 200, 200]
        assert responses[0].headers["x-ratelimit-limit"] == "5"
        assert [r.headers["x-ratelimit-remaining"] for r in responses] == ["2", "1", "0"]
        refused = await http.get("/test/login-like")
        assert assert_error(refused, 429, "rate_limited")["retry_after"] == 12
        assert refused.headers["retry-after"] == "12"
        assert refused.headers["x-ratelimit-limit"] == "5"


async def test_per_user_limits_follow_the_principal_not_the_address(make_settings: SettingsFactory) -> None:
    settings = make_settings(RATE_LIMIT_MESSAGES="2/minute;burst=2")
    async with serve_limited(settings, FakeClock()) as (_app, http):
        alice = {"X-Test-Principal": "user:alice"}
        bob = {"X-Test-Principal": "user:bob"}
        assert [(await http.get("/test/messages", headers=alice)).status_code for _ in range(3)] == [
            200,
            200,
            429,
        ]
        assert (await http.get("/test/messages", headers=bob)).status_code == 200


async def test_repeat_offenders_are_told_to_wait_longer(make_settings: SettingsFactory) -> None:
    clock = FakeClock()
    async with serve_limited(make_settings(), clock) as (_app, http):
        for _ in range(3):
            await http.get("/test/login-like")
        waits = []
        for _ in range(3):
            refused = await http.get("/test/login-like")
            waits.append(int(refused.headers["retry-after"]))
            clock.advance(waits[-1])
            while (await http.get("/test/login-like")).status_code == 200:
                pass
        assert waits == [12, 24, 48]


# -- blocks ----------------------------------------------------------------------------------


async def test_persistent_violations_block_the_client_audited_and_liftable(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings(RATE_LIMIT_PER_MINUTE=2, RATE_LIMIT_BLOCK_VIOLATIONS=5)
    await asyncio.to_thread(migrate.upgrade, settings.database_url.get_secret_value())
    clock = FakeClock()
    async with serve_limited(settings, clock) as (app, http):
        statuses = [(await http.get("/test/ping")).status_code for _ in range(7)]
        assert statuses == [200, 200, 429, 429, 429, 429, 403]
        blocked = await http.get("/test/login-like")
        assert_error(blocked, 403, "blocked")
        # Admins come from another address: they see the block and lift it.
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=http._transport.app, client=("192.0.2.200", 1)),  # type: ignore[attr-defined]
            base_url="http://localhost",
        ) as admin:
            listed = (await admin.get("/api/admin/blocks", headers=ADMIN)).json()["items"]
            assert [(b["kind"], b["value"], b["reason"]) for b in listed] == [
                ("ip", "127.0.0.1", "violations")
            ]
            assert (await admin.delete("/api/admin/blocks/ip/127.0.0.1", headers=ADMIN)).status_code == 204
            clock.advance(900)  # the escalated penalty runs out too
            assert (await admin.get("/api/admin/blocks", headers=ADMIN)).json() == {"items": []}
        assert (await http.get("/test/ping")).status_code == 200
        async with app.state.sessionmaker() as session:
            records = (await session.scalars(select(AuditRecord).order_by(AuditRecord.timestamp))).all()
    # The first 429 of the minute is audited once; the block and its lifting are audited each.
    assert [r.details["policy"] for r in records if r.event_type == "rate_limit_exceeded"] == ["global"]
    events = [r for r in records if r.event_type in ("client_blocked", "client_unblocked")]
    assert [(e.event_type, e.target_type, e.target_id, e.actor_id) for e in events] == [
        ("client_blocked", "ip", "127.0.0.1", None),
        ("client_unblocked", "ip", "127.0.0.1", "admin-1"),
    ]
    assert events[0].details["reason"] == "violations"


async def test_route_policy_violations_block_the_client_audited_with_the_request(
    make_settings: SettingsFactory,
) -> None:
    # The route dependency decides in process too: the block it places is still audited.
    settings = make_settings(RATE_LIMIT_PER_MINUTE=1000, RATE_LIMIT_BLOCK_VIOLATIONS=3)
    await asyncio.to_thread(migrate.upgrade, settings.database_url.get_secret_value())
    async with serve_limited(settings, FakeClock()) as (app, http):
        responses = [await http.get("/test/login-like") for _ in range(6)]
        assert [r.status_code for r in responses] == [200, 200, 200, 429, 429, 403]
        assert_error(responses[5], 403, "blocked")
        assert (await http.get("/test/ping")).status_code == 403  # the block covers every route
        async with app.state.sessionmaker() as session:
            records = (await session.scalars(select(AuditRecord).order_by(AuditRecord.timestamp))).all()
    [violation] = [r for r in records if r.event_type == "rate_limit_exceeded"]
    assert violation.request_id == responses[3].headers["x-request-id"] and violation.status_code == 429
    events = [r for r in records if r.event_type == "client_blocked"]
    assert [(e.event_type, e.target_type, e.target_id, e.request_id) for e in events] == [
        ("client_blocked", "ip", "127.0.0.1", responses[5].headers["x-request-id"])
    ]
    assert events[0].details["reason"] == "violations"


async def test_failed_authentications_block_the_address_until_lifted(make_settings: SettingsFactory) -> None:
    settings = make_settings(RATE_LIMIT_BLOCK_AUTH_FAILURES=3)
    async with serve_limited(settings, FakeClock()) as (_app, http):
        statuses = [(await http.post("/test/failed-login")).status_code for _ in range(4)]
        assert statuses == [401, 401, 401, 403]
        assert_error(await http.get("/test/ping"), 403, "blocked")
        # Probes stay reachable for a blocked load balancer or monitor.
        assert (await http.get("/health")).status_code == 200
        # A block is answered before any other work, an admin's request from that address included.
        lift = await http.delete("/api/admin/blocks/ip/127.0.0.1", headers=ADMIN)
        assert_error(lift, 403, "blocked")


async def test_blocks_lift_through_the_admin_api(make_settings: SettingsFactory) -> None:
    settings = make_settings(RATE_LIMIT_BLOCK_AUTH_FAILURES=2)
    clock = FakeClock()
    async with serve_limited(settings, clock, client=("198.51.100.20", 1000)) as (app, http):
        for _ in range(2):
            await http.post("/test/failed-login")
        assert_error(await http.get("/test/ping"), 403, "blocked")
        await app.state.limiter.unblock("ip:198.51.100.20", actor="admin-1")
        assert (await http.get("/test/ping")).status_code == 200


async def test_voice_uploads_hold_a_concurrent_slot_per_key(make_settings: SettingsFactory) -> None:
    settings = make_settings(RATE_LIMIT_VOICE_CONCURRENT=1)
    key = {"X-Test-Principal": "key:k-voice"}
    async with serve_limited(settings, FakeClock()) as (_app, http):
        release = asyncio.Event()

        async def slow_body():  # type: ignore[no-untyped-def]
            yield b"a" * 10
            await release.wait()
            yield b"b" * 10

        upload = asyncio.create_task(http.post("/test/voice", content=slow_body(), headers=key))
        for _ in range(100):
            if (await http.get("/test/voice/in-flight", headers=key)).json()["in_flight"] == 1:
                break
            await asyncio.sleep(0.01)
        busy = await http.post("/test/voice", content=b"x", headers=key)
        assert busy.status_code == 429
        assert busy.json()["detail"]["error"] == "rate_limited"
        other = await http.post("/test/voice", content=b"x", headers={"X-Test-Principal": "key:other"})
        assert other.status_code == 200
        release.set()
        assert (await upload).json() == {"bytes": 20}
        assert (await http.get("/test/voice/in-flight", headers=key)).json() == {"in_flight": 0}
        assert (await http.post("/test/voice", content=b"x", headers=key)).status_code == 200


async def test_failed_key_authentications_block_the_key_and_the_address(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings(RATE_LIMIT_BLOCK_AUTH_FAILURES=3)
    clock = FakeClock()
    async with serve_limited(settings, clock, client=("198.51.100.30", 1)) as (app, http):
        assert [(await http.post("/test/bad-key/k-bad")).status_code for _ in range(3)] == [401, 401, 401]
        identities = sorted(b.identity for b in await app.state.limiter.list_blocks())
        assert identities == ["ip:198.51.100.30", "key:k-bad"]
        await app.state.limiter.unblock("ip:198.51.100.30")
        # The key stays blocked wherever it is used, also when authentication is a dependency that
        # runs after the middleware; other keys and users are unaffected.
        refused = await http.get("/test/keyed", headers={"X-Test-Auth": "key:k-bad"})
        assert refused.status_code == 403 and refused.json()["detail"]["error"] == "blocked"
        assert (await http.get("/test/keyed", headers={"X-Test-Auth": "key:k-good"})).status_code == 200
        assert (await http.get("/test/keyed", headers={"X-Test-Auth": "user:u1"})).status_code == 200
        assert (await http.get("/test/keyed")).status_code == 200


async def test_password_resets_are_limited_per_address_and_per_email(make_settings: SettingsFactory) -> None:
    settings = make_settings(RATE_LIMIT_PASSWORD_RESET="3/minute")
    async with serve_limited(settings, FakeClock(), client=("192.0.2.50", 1)) as (_app, http):
        victim = [
            await http.post("/test/password-reset", json={"email": "Victim@Example.org"}) for _ in range(3)
        ]
        assert [r.status_code for r in victim] == [202, 202, 202]
        # The same address cannot move on to other emails: its own limit is spent.
        assert (await http.post("/test/password-reset", json={"email": "x@example.org"})).status_code == 429
    # From many addresses, one email still gets no more than its own limit.
    async with serve_limited(settings, FakeClock()) as (_app, http):
        statuses = []
        for i in range(5):
            transport = httpx.ASGITransport(app=http._transport.app, client=(f"198.51.100.{i}", 1))  # type: ignore[attr-defined]
            async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as other:
                r = await other.post("/test/password-reset", json={"email": "victim@example.org "})
                statuses.append(r.status_code)
        assert statuses == [202, 202, 202, 429, 429]
        assert r.headers["x-ratelimit-limit"] == "3"
