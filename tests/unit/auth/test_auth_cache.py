# SPDX-License-Identifier: Apache-2.0
"""The authentication cache: what it keeps, for how long, and what makes it forget."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from bastion.auth.cache import MAX_ENTRIES, AuthCache
from bastion.auth.principal import AuthMethod, Principal, Role
from bastion.auth.tokens import AccessClaims
from bastion.errors import ServiceUnavailable
from bastion.invalidation import MemoryVersionCounter, Watched

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def entry() -> tuple[Principal, AccessClaims]:
    principal = Principal(
        subject="u1", role=Role.USER, method=AuthMethod.JWT, scopes=frozenset(), user_id="u1"
    )
    claims = AccessClaims(
        subject="u1",
        role="user",
        scopes=frozenset(),
        jti="j1",
        session_id="s1",
        token_version=0,
        issued_at=NOW,
        expires_at=NOW + timedelta(minutes=15),
    )
    return principal, claims


def test_an_entry_lives_at_most_the_ttl_and_never_past_its_deadline() -> None:
    clock = Clock()
    cache = AuthCache(ttl_seconds=1.0, monotonic=clock)
    value = entry()
    cache.tokens.put(b"k", value, deadline=NOW + timedelta(seconds=30))
    assert cache.tokens.get(b"k", NOW) == value
    clock.now += 0.99
    assert cache.tokens.get(b"k", NOW) == value
    clock.now += 0.02
    assert cache.tokens.get(b"k", NOW) is None and b"k" not in cache.tokens.data

    cache.tokens.put(b"k", value, deadline=NOW + timedelta(seconds=30))
    assert cache.tokens.get(b"k", NOW + timedelta(seconds=30)) is None  # the token expired


def test_a_zero_ttl_keeps_nothing() -> None:
    cache = AuthCache(ttl_seconds=0)
    cache.tokens.put(b"k", entry())
    assert not cache.enabled and cache.tokens.get(b"k", NOW) is None


def test_keys_are_macs_of_the_whole_credential_and_of_how_it_was_presented() -> None:
    cache = AuthCache()
    token = "eyJhbGciOiJFZERTQSJ9.payload.signature"  # pragma: allowlist secret
    key = cache.credential_key("jwt", token)
    assert key == cache.credential_key("jwt", token)
    assert key != cache.credential_key("jwt", token[:-1] + "X")  # one character differs
    assert key != cache.credential_key("jwt", token[:-1])  # a prefix is another credential
    assert key != cache.credential_key("cookie", token)
    assert token.encode() not in key
    # Another process (another key) files the same token elsewhere.
    assert key != AuthCache().credential_key("jwt", token)


async def test_a_moved_shared_version_drops_everything() -> None:
    counter = MemoryVersionCounter()
    cache = AuthCache(Watched(counter, interval=0.0), ttl_seconds=60)
    await cache.refresh()
    cache.tokens.put(b"k", entry())
    await cache.refresh()
    assert cache.tokens.get(b"k", NOW) is not None
    await counter.bump()  # another instance changed something
    await cache.refresh()
    assert cache.tokens.data == {} and cache.users.data == {}


async def test_a_change_here_drops_the_cache_and_moves_the_shared_version() -> None:
    counter = MemoryVersionCounter()
    cache = AuthCache(Watched(counter, interval=0.0), ttl_seconds=60)
    cache.tokens.put(b"k", entry())
    generation = cache.generation
    await cache.changed()
    assert cache.tokens.data == {} and counter.value == 1
    # Whatever was being verified while it happened must not be stored: the generation moved.
    assert cache.generation != generation


async def test_an_unreadable_version_is_an_outage_not_a_stale_answer() -> None:
    class Down:
        async def get(self) -> int:
            raise ServiceUnavailable("down", retry_after=1)

        async def bump(self) -> int:
            raise ServiceUnavailable("down", retry_after=1)

    cache = AuthCache(Watched(Down(), interval=0.0), ttl_seconds=60)
    cache.tokens.put(b"k", entry())
    with pytest.raises(ServiceUnavailable):
        await cache.refresh()


def test_memory_is_bounded() -> None:
    cache = AuthCache(ttl_seconds=60)
    value = entry()
    for index in range(MAX_ENTRIES + 5):
        cache.tokens.put(index.to_bytes(4, "big"), value)
    assert len(cache.tokens.data) <= MAX_ENTRIES


# -- one verification per credential at a time ------------------------------------------------


class Verification:
    """A verification that waits for ``release`` and counts how often it ran."""

    def __init__(self, result: tuple[Principal, AccessClaims] | Exception) -> None:
        self.result = result
        self.runs = 0
        self.release = asyncio.Event()

    async def __call__(self) -> tuple[Principal, AccessClaims]:
        self.runs += 1
        await self.release.wait()
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


async def _first_and_waiting(
    cache: AuthCache, first_verification: Verification
) -> tuple[
    asyncio.Task[tuple[Principal, AccessClaims]], asyncio.Task[tuple[Principal, AccessClaims]], Verification
]:
    """A first request verifying ``b"k"`` (held until released), and a second one waiting for it
    whose own verification, should it run, answers at once."""
    first = asyncio.create_task(cache.shared(b"k", first_verification))
    await asyncio.sleep(0)
    own = Verification(entry())
    own.release.set()
    second = asyncio.create_task(cache.shared(b"k", own))
    await asyncio.sleep(0)
    return first, second, own


async def test_requests_for_a_token_being_verified_wait_for_that_verification() -> None:
    cache = AuthCache()
    verify = Verification(entry())
    waiting = [asyncio.create_task(cache.shared(b"k", verify)) for _ in range(20)]
    await asyncio.sleep(0)
    verify.release.set()
    assert [await task for task in waiting] == [entry()] * 20
    assert verify.runs == 1 and cache.flights == {}


async def test_a_failed_verification_is_not_shared_the_others_verify_anew() -> None:
    cache = AuthCache()
    failing = Verification(ValueError("refused"))
    first, second, own = await _first_and_waiting(cache, failing)
    failing.release.set()
    with pytest.raises(ValueError, match="refused"):
        await first
    assert await second == entry() and own.runs == 1
    assert cache.flights == {}


async def test_a_cancelled_first_request_does_not_cancel_the_others() -> None:
    cache = AuthCache()
    first, second, own = await _first_and_waiting(cache, Verification(entry()))
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await second == entry() and own.runs == 1
    # A waiter that is itself cancelled stops.
    third = asyncio.create_task(cache.shared(b"k2", Verification(entry())))
    await asyncio.sleep(0)
    fourth = asyncio.create_task(cache.shared(b"k2", Verification(entry())))
    await asyncio.sleep(0)
    fourth.cancel()
    with pytest.raises(asyncio.CancelledError):
        await fourth
    third.cancel()


async def test_a_request_after_a_clear_does_not_join_a_verification_begun_before_it() -> None:
    cache = AuthCache()
    before = Verification(entry())
    first = asyncio.create_task(cache.shared(b"k", before))
    await asyncio.sleep(0)
    cache.clear()  # a revocation landed meanwhile
    after = Verification(entry())
    after.release.set()
    assert await cache.shared(b"k", after) == entry()
    assert after.runs == 1
    before.release.set()
    assert await first == entry()
    assert cache.flights == {}
