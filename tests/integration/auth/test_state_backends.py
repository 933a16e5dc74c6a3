# SPDX-License-Identifier: Apache-2.0
"""One contract for the denylist and password-attempt stores, run on memory, on the real Redis
and on a Redis Cluster."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.crc import key_slot

from bastion.auth.revocation import MemoryDenylist, RedisDenylist
from bastion.auth.throttle import (
    MemoryAttemptStore,
    PasswordThrottle,
    RedisAttemptStore,
    Refusal,
    ThrottleRules,
    account_key,
)
from bastion.redis_client import connect
from tests.conftest import BACKENDS, backend_redis_url

# Small numbers so the contract shows every rule: delays after 2 failures, a lock at 4 failures
# from at least 2 clients, a client refused after 3 failures over all accounts.
RULES = ThrottleRules(
    window_seconds=100.0,
    delay_after=2,
    delay_seconds=10.0,
    delay_max_seconds=40.0,
    client_max_failures=3,
    account_window_seconds=3600.0,
    lock_failures=4,
    lock_clients=2,
    lock_seconds=60.0,
)
NOW = 1_700_000_000.0


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=BACKENDS)
def backend_url(request: pytest.FixtureRequest) -> str | None:
    """None for the memory backends, else the URL of the run's Redis or Redis Cluster, emptied."""
    return backend_redis_url(request)


@pytest.fixture
async def backends(backend_url: str | None) -> AsyncIterator[dict[str, Any]]:
    if backend_url is None:
        yield {"denylist": MemoryDenylist(), "attempts": MemoryAttemptStore()}
        return
    client = connect(backend_url)
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
    client = connect(backend_url)
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
    assert await store.account_waits("acct:a", "ip:1", NOW) == (0, 0)
    # One client's failures delay that client for that account, doubling up to the cap...
    waits = [(await store.account_failure("acct:a", "ip:1", NOW, RULES)).pair_wait for _ in range(4)]
    assert waits == [0, 10, 20, 40]
    assert await store.account_waits("acct:a", "ip:1", NOW + 5) == (0, 35)
    # ...and nobody else: not another client for the account, not the client for another account.
    assert await store.account_waits("acct:a", "ip:2", NOW) == (0, 0)
    assert await store.account_waits("acct:b", "ip:1", NOW) == (0, 0)
    # Four failures from one client never lock the account; one more from a second client does.
    failure = await store.account_failure("acct:a", "ip:2", NOW, RULES)
    assert failure.locked_for == 60
    assert (await store.account_waits("acct:a", "ip:3", NOW + 1)).account_locked == 59
    assert await store.unlock("acct:a", NOW + 1)
    assert await store.account_waits("acct:a", "ip:3", NOW + 1) == (0, 0)
    assert not await store.unlock("acct:a", NOW + 1)  # nothing in force any more
    # A correct password restarts the counts for the account and that client.
    await store.account_failure("acct:c", "ip:1", NOW, RULES)
    assert (await store.account_failure("acct:c", "ip:1", NOW, RULES)).pair_wait == 10
    await store.account_success("acct:c", "ip:1")
    assert await store.account_waits("acct:c", "ip:1", NOW) == (0, 0)
    assert (await store.account_failure("acct:c", "ip:1", NOW, RULES)).pair_wait == 0
    # A client failing across accounts is refused for the window.
    assert [await store.client_failure("ip:9", NOW, RULES) for _ in range(3)] == [0, 0, 100]
    assert await store.client_wait("ip:9", NOW + 40) == 60
    assert await store.client_wait("ip:8", NOW) == 0


async def test_account_locks_double_within_a_day(backends: dict[str, Any]) -> None:
    store = backends["attempts"]
    locks = []
    for round_ in range(2):
        now = NOW + round_ * 1000
        for n in range(4):
            failure = await store.account_failure("acct:d", f"ip:{n % 2}", now, RULES)
        locks.append(failure.locked_for)
    assert locks == [60, 120]


async def test_attempt_store_is_atomic_under_concurrency(backends: dict[str, Any]) -> None:
    store = backends["attempts"]
    rules = ThrottleRules(lock_failures=50, lock_clients=50, lock_seconds=60.0)
    results = await asyncio.gather(
        *(store.account_failure("acct:burst", f"ip:{n}", NOW, rules) for n in range(50))
    )
    assert sorted(r.locked_for for r in results) == [0.0] * 49 + [60.0]  # exactly one locks


async def test_memory_stores_expire_with_the_clock() -> None:
    clock = FakeMonotonic()
    denylist = MemoryDenylist(clock=clock)
    store = MemoryAttemptStore()
    await denylist.revoke_sessions(["s"], ttl_seconds=30)
    await store.account_failure("acct:k", "ip:1", NOW, RULES)
    assert (await store.account_failure("acct:k", "ip:1", NOW, RULES)).pair_wait == 10
    clock.now += 31
    assert not await denylist.refused("j", "s", 0.0)
    later = NOW + RULES.window_seconds + 11  # the window after the last failure and its wait
    assert (await store.account_failure("acct:k", "ip:1", later, RULES)).pair_wait == 0


async def test_throttle_delays_the_client_not_the_owner_and_locks_only_from_many() -> None:
    clock = FakeMonotonic()
    throttle = PasswordThrottle(store=MemoryAttemptStore(), rules=RULES, clock=clock)
    assert (await throttle.check("a@example.com", "10.0.0.1")).allowed
    await throttle.failure("a@example.com", "10.0.0.1")
    await throttle.failure("a@example.com", "10.0.0.1")
    verdict = await throttle.check("a@example.com", "10.0.0.1")
    assert (verdict.allowed, verdict.refusal, verdict.retry_after) == (False, Refusal.THROTTLED, 10)
    assert (await throttle.check("a@example.com", "10.0.0.2")).allowed  # the owner, elsewhere
    clock.now += 10
    assert (await throttle.check("a@example.com", "10.0.0.1")).allowed
    await throttle.failure("a@example.com", "10.0.0.2")
    outcome = await throttle.failure("a@example.com", "10.0.0.2")
    assert outcome.locked_for == 60  # four failures, two clients
    locked = await throttle.check("a@example.com", "10.0.0.3")
    assert (locked.allowed, locked.refusal) == (False, Refusal.ACCOUNT_LOCKED)
    assert await throttle.unlock("a@example.com")
    assert (await throttle.check("a@example.com", "10.0.0.3")).allowed
    assert (await throttle.check("a@example.com", "10.0.0.2")).refusal is Refusal.THROTTLED
    assert (await throttle.failure("b@example.com", "10.0.0.1")).client_blocked_for == 100
    blocked = await throttle.check("c@example.com", "10.0.0.1")  # 3 failures over all accounts
    assert (blocked.refusal, blocked.retry_after) == (Refusal.CLIENT_BLOCKED, 100)
    assert account_key("a@example.com") != account_key("b@example.com")
    assert account_key("A@Example.com ") == account_key("a@example.com")
    assert "a@example.com" not in account_key("a@example.com")


async def test_memory_store_stays_bounded_under_100000_identities() -> None:
    clock = FakeMonotonic()
    store = MemoryAttemptStore(max_keys=5000)
    rules = ThrottleRules(window_seconds=60.0, account_window_seconds=600.0)
    throttle = PasswordThrottle(store=store, rules=rules, clock=clock)
    refused = largest = 0
    for n in range(100_000):
        clock.now += 0.5
        email, ip = f"user{n}@example.com", f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"
        if not (await throttle.check(email, ip)).allowed:
            refused += 1
            continue
        await throttle.failure(email, ip)
        largest = max(largest, len(store))
    assert largest <= 5000
    # 3 entries per failure, each recovering within 600 s: about 1200 s x 2/s x 3 live at once;
    # the rest found room by replacing recovered entries.
    assert refused < 100_000 // 2


async def test_full_memory_store_refuses_newcomers_rather_than_forget_a_lock() -> None:
    clock = FakeMonotonic()
    store = MemoryAttemptStore(max_keys=200, sweep_batch=1000)
    rules = ThrottleRules(delay_after=1, delay_seconds=600.0, delay_max_seconds=600.0)
    throttle = PasswordThrottle(store=store, rules=rules, clock=clock)
    await throttle.failure("victim@example.com", "192.0.2.1")
    for n in range(150):  # fill the table with running delays
        await throttle.failure(f"spam{n}@example.com", f"198.51.100.{n}")
    assert len(store) <= 200
    newcomer = await throttle.check("new@example.com", "203.0.113.1")
    assert not newcomer.allowed and newcomer.refusal is Refusal.THROTTLED and newcomer.retry_after >= 1
    held = await throttle.check("victim@example.com", "192.0.2.1")
    assert not held.allowed and held.retry_after > 500  # the running delay was kept
    clock.now += 600 + rules.window_seconds + 1  # everything has recovered
    assert (await throttle.check("new@example.com", "203.0.113.1")).allowed


async def test_app_keeps_revocations_and_lockouts_in_redis(make_settings: Any, each_redis_url: str) -> None:
    redis_url = each_redis_url
    from tests.integration.auth.helpers import (
        PASSWORD,
        assert_error,
        bearer,
        identity_app,
        identity_settings,
        user_session,
    )

    settings = identity_settings(
        make_settings, REDIS_URL=redis_url, LOGIN_LOCK_FAILURES=2, LOGIN_LOCK_CLIENTS=1
    )
    async with identity_app(settings) as (_app, http):
        _, tokens = await user_session(http, "shared@example.com")
        assert (
            await http.post("/api/auth/logout", headers=bearer(tokens["access_token"]))
        ).status_code == 204
        for _ in range(2):
            await http.post(
                "/api/auth/login", json={"email": "shared@example.com", "password": "Wrong-pass-1!"}
            )
    client = connect(redis_url)
    try:
        # SCAN, not KEYS: a Cluster client asks every master (KEYS would ask one node).
        keys = {key.decode() async for key in client.scan_iter("bastion:auth:*")}
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
        assert_error(locked, 429, "rate_limited")
