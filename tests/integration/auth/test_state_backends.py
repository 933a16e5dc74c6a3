# SPDX-License-Identifier: Apache-2.0
"""One contract for the denylist and login-attempt stores, run on memory and on the real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.crc import key_slot

from bastion.auth.revocation import MemoryDenylist, RedisDenylist
from bastion.auth.throttle import (
    LoginThrottle,
    MemoryAttemptStore,
    RedisAttemptStore,
    account_key,
)


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def backend_url(request: pytest.FixtureRequest) -> str | None:
    """None for the memory backends, else the URL of the run's Redis."""
    return None if request.param == "memory" else str(request.getfixturevalue("redis_server"))


@pytest.fixture
async def backends(backend_url: str | None) -> AsyncIterator[dict[str, Any]]:
    if backend_url is None:
        yield {"denylist": MemoryDenylist(), "attempts": MemoryAttemptStore()}
        return
    client = Redis.from_url(backend_url)
    await client.flushdb()
    try:
        yield {"denylist": RedisDenylist(client), "attempts": RedisAttemptStore(client)}
    finally:
        await client.aclose()


async def test_denylist_contract(backends: dict[str, Any]) -> None:
    denylist = backends["denylist"]
    assert not await denylist.refused("jti-1", "sid-1", 0.0)
    await denylist.revoke_token("jti-1", "sid-1", ttl_seconds=60)
    assert await denylist.refused("jti-1", "sid-1", 0.0)
    assert not await denylist.refused("jti-2", "sid-1", 0.0)  # one token, not its session
    await denylist.revoke_sessions(["sid-2", "sid-3"], ttl_seconds=60)
    for session_id in ("sid-2", "sid-3"):
        # Every token of an ended session, whatever its jti.
        assert await denylist.refused("any-jti", session_id, 0.0)
        assert await denylist.refused("jti-1", session_id, 0.0)
    assert not await denylist.refused("jti-9", "sid-4", 0.0)
    await denylist.revoke_sessions([], ttl_seconds=60)  # nothing to end is not an error
    await denylist.revoke_token("jti-short", "sid-5", ttl_seconds=1)
    assert await denylist.refused("jti-short", "sid-5", 0.0)


async def test_session_denylist_entries_expire_with_the_token_lifetime(
    backends: dict[str, Any], backend_url: str | None
) -> None:
    denylist = backends["denylist"]
    await denylist.revoke_sessions(["sid-1"], ttl_seconds=1860)
    await denylist.revoke_token("jti-1", "sid-1", ttl_seconds=90)
    if backend_url is None:
        table = denylist.entries.data
        assert table["s:sid-1"] - denylist.clock() == pytest.approx(1860, abs=1)
        assert table["j:jti-1"] - denylist.clock() == pytest.approx(90, abs=1)
        return
    client = Redis.from_url(backend_url)
    try:
        session_key, token_key = denylist.session_key("sid-1"), denylist.token_key("jti-1", "sid-1")
        assert 1850 <= await client.ttl(session_key) <= 1860
        assert 80 <= await client.ttl(token_key) <= 90
        # One EXISTS covers both keys, so they must live in one Redis Cluster slot.
        assert key_slot(session_key.encode()) == key_slot(token_key.encode())
    finally:
        await client.aclose()


async def test_attempt_store_contract(backends: dict[str, Any]) -> None:
    store = backends["attempts"]
    counts = [await store.add_failure("k", window_seconds=60) for _ in range(3)]
    assert counts == [1, 2, 3]
    await store.clear("k")
    assert await store.add_failure("k", window_seconds=60) == 1
    assert await store.locked_for("k") == 0
    first = await store.lock("k", base_seconds=60)
    assert first == 60 and 0 < await store.locked_for("k") <= 60
    assert await store.add_failure("k", window_seconds=60) == 1  # a lockout resets the count
    second = await store.lock("k", base_seconds=60)
    third = await store.lock("k", base_seconds=60)
    assert (second, third) == (120, 240)  # each lockout doubles
    assert await store.locked_for("other") == 0


async def test_attempt_store_is_atomic_under_concurrency(backends: dict[str, Any]) -> None:
    store = backends["attempts"]
    results = await asyncio.gather(*(store.add_failure("burst", window_seconds=60) for _ in range(50)))
    assert sorted(results) == list(range(1, 51))


async def test_memory_stores_expire_with_the_clock() -> None:
    clock = FakeMonotonic()
    denylist = MemoryDenylist(clock=clock)
    store = MemoryAttemptStore(clock=clock)
    await denylist.revoke_sessions(["s"], ttl_seconds=30)
    await store.add_failure("k", window_seconds=60)
    await store.lock("k", base_seconds=60)
    clock.now += 61
    assert not await denylist.refused("j", "s", 0.0)
    assert await store.locked_for("k") == 0
    assert await store.add_failure("k", window_seconds=60) == 1  # the window started again


async def test_throttle_locks_accounts_and_blocks_addresses() -> None:
    clock = FakeMonotonic()
    throttle = LoginThrottle(
        store=MemoryAttemptStore(clock=clock),
        max_failures=3,
        ip_max_failures=5,
        window_seconds=900,
        lockout_seconds=60,
    )
    assert (await throttle.check("a@example.com", "10.0.0.1")).allowed
    assert [await throttle.failure("a@example.com", "10.0.0.1") for _ in range(3)] == [0, 0, 60]
    verdict = await throttle.check("a@example.com", "10.0.0.2")
    assert not verdict.allowed and not verdict.ip_blocked and verdict.retry_after == 60
    clock.now += 61
    assert (await throttle.check("a@example.com", "10.0.0.2")).allowed
    assert [await throttle.failure("a@example.com", "10.0.0.3") for _ in range(3)][-1] == 120  # grows
    for n in range(2):
        await throttle.failure(f"spray{n}@example.com", "10.0.0.1")
    blocked = await throttle.check("fresh@example.com", "10.0.0.1")
    assert not blocked.allowed and blocked.ip_blocked
    assert account_key("a@example.com") != account_key("b@example.com")
    assert "a@example.com" not in account_key("a@example.com")


@pytest.mark.redis
async def test_app_keeps_revocations_and_lockouts_in_redis(make_settings: Any, redis_url: str) -> None:
    from tests.integration.auth.helpers import (
        PASSWORD,
        assert_error,
        bearer,
        identity_app,
        identity_settings,
        user_session,
    )

    settings = identity_settings(make_settings, REDIS_URL=redis_url, LOGIN_MAX_FAILURES=2)
    async with identity_app(settings) as (_app, http):
        _, tokens = await user_session(http, "shared@example.com")
        assert (
            await http.post("/api/auth/logout", headers=bearer(tokens["access_token"]))
        ).status_code == 204
        for _ in range(2):
            await http.post(
                "/api/auth/login", json={"email": "shared@example.com", "password": "Wrong-pass-1!"}
            )
    client = Redis.from_url(redis_url)
    try:
        keys = {key.decode() for key in await client.keys("bastion:auth:*")}
    finally:
        await client.aclose()
    assert any(key.startswith("bastion:auth:deny:") for key in keys)
    assert any(key.endswith(":lock") for key in keys)
    # A second instance sharing the Redis sees both: the token stays revoked, the account locked.
    async with identity_app(settings, migrate_first=False) as (_app, http):
        assert_error(await http.get("/api/auth/me", headers=bearer(tokens["access_token"])), 401)
        locked = await http.post(
            "/api/auth/login", json={"email": "shared@example.com", "password": PASSWORD}
        )
        assert_error(locked, 401)
