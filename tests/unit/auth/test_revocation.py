# SPDX-License-Identifier: Apache-2.0
"""The in-process denylist is bounded, and when full it refuses closed instead of forgetting;
the denylist follows the one fail mode when its store cannot answer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis

from bastion.auth.revocation import Denylist, MemoryDenylist, RedisDenylist, Revocations
from bastion.auth.tokens import AccessClaims
from bastion.errors import ServiceUnavailable
from bastion.failover import FailMode, Failover
from bastion.ratelimit.storage.redis import fail_fast_client
from tests.support.clock import FakeClock
from tests.support.servers import free_port

TTL = 1800


async def test_expired_entries_make_room_and_the_bound_holds() -> None:
    clock = FakeClock()
    denylist = MemoryDenylist(max_entries=3, clock=clock)
    await denylist.revoke_sessions(["a", "b", "c"], ttl_seconds=60)
    clock.advance(61)  # all three expired: newcomers take their places
    for n in range(10):
        await denylist.revoke_sessions([f"new-{n}"], ttl_seconds=60)
        clock.advance(61)
        assert len(denylist.entries) <= 3
    assert denylist.overflows == 0
    assert not await denylist.refused("j", "a", clock() - 1000)


async def test_a_full_table_never_forgets_a_live_revocation_it_refuses_closed() -> None:
    clock = FakeClock()
    denylist = MemoryDenylist(max_entries=3, clock=clock)
    issued_before = clock() - 10
    await denylist.revoke_sessions(["a", "b", "c"], ttl_seconds=TTL)
    clock.advance(5)
    # No room and nothing expired: "d" cannot be recorded ...
    await denylist.revoke_sessions(["d"], ttl_seconds=TTL)
    assert denylist.overflows == 1 and len(denylist.entries) == 3
    # ... so every token issued until now is refused, the one of "d" included,
    assert await denylist.refused("jti-d", "d", issued_before)
    assert await denylist.refused("jti-x", "unrelated", clock() - 1)
    # and the entries already recorded are all still there.
    for session_id in ("a", "b", "c"):
        assert await denylist.refused("j", session_id, clock() + 100)
    # A token issued after the overflow (a client that refreshed) passes.
    clock.advance(1)
    assert not await denylist.refused("jti-new", "fresh", clock())
    # Once the unrecorded revocation would have expired, old tokens are not refused any more (they
    # have expired anyway), and the expired entries make room again.
    clock.advance(TTL)
    assert not await denylist.refused("jti-x", "unrelated", issued_before)
    await denylist.revoke_sessions(["e"], ttl_seconds=TTL)
    assert denylist.overflows == 1 and await denylist.refused("j", "e", clock())


async def test_revoking_again_never_shortens_an_entry() -> None:
    clock = FakeClock()
    denylist = MemoryDenylist(max_entries=10, clock=clock)
    await denylist.revoke_sessions(["a"], ttl_seconds=TTL)
    await denylist.revoke_sessions(["a"], ttl_seconds=10)
    clock.advance(60)
    assert await denylist.refused("j", "a", clock() - 100)


def claims(now: datetime) -> AccessClaims:
    return AccessClaims(
        subject="u",
        role="user",
        scopes=frozenset(),
        jti="jti-1",
        session_id="sid-1",
        token_version=1,
        issued_at=now,
        expires_at=now + timedelta(minutes=30),
    )


def revocations(mode: FailMode, fallback: MemoryDenylist) -> Revocations:
    # A real client pointed at a port nothing listens on: every call is refused at once.
    unreachable = RedisDenylist(
        fail_fast_client(Redis(host="127.0.0.1", port=free_port()), 0.5), owns_client=True
    )
    failover: Failover[Denylist] = Failover(
        unreachable, fallback, mode=mode, component="auth_denylist", message="unavailable", level="error"
    )
    now = datetime.now(UTC)
    return Revocations(failover, token_lifetime=timedelta(minutes=30), clock=lambda: now)


async def test_closed_mode_never_accepts_a_token_it_cannot_check() -> None:
    guarded = revocations("closed", MemoryDenylist())
    token = claims(datetime.now(UTC))
    for _ in range(2):  # the second is refused without another connection attempt
        with pytest.raises(ServiceUnavailable) as refused:
            await guarded.refused(token)
        assert refused.value.retry_after >= 1
    with pytest.raises(ServiceUnavailable):
        await guarded.end_sessions(["sid-1"])
    assert guarded.failover.stats["storage_failures"] == 1
    assert guarded.failover.stats["refused_unavailable"] == 3
    await guarded.aclose()


async def test_open_mode_answers_from_this_process_and_counts_it() -> None:
    guarded = revocations("open", MemoryDenylist())
    token = claims(datetime.now(UTC))
    assert not await guarded.refused(token)
    # A session this instance ends during the outage is still refused here.
    await guarded.end_sessions(["sid-1"])
    assert await guarded.refused(token)
    assert guarded.failover.stats["storage_failures"] == 1
    assert guarded.failover.stats["fallback_calls"] == 3
    await guarded.aclose()
