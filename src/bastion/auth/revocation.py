# SPDX-License-Identifier: Apache-2.0
"""The access-token denylist: sessions ended and tokens revoked before they expire.

Access tokens are JWTs checked without a database read; what ends a session early (logout,
logout-all, refresh-token reuse, password change or reset, disable, role change) writes the
session id here, and every request checks its token's jti and session in one round trip
(``EXISTS jti_key session_key``). Entries live exactly as long as a token they refuse could:
ACCESS_TOKEN_MINUTES plus the verification leeway and clock skew (``SKEW_SECONDS``), then they are
forgotten because every such token has expired anyway.

Redis when REDIS_URL is set (shared by every instance, so an ending applies everywhere on the next
request), memory otherwise (this process only). Redis keys carry the session id as their hash tag
(``bastion:auth:deny:{<sid>}:s`` and ``...{<sid>}:j:<jti>``), so the one EXISTS never spans two
Cluster slots.

The memory denylist is bounded (``BoundedTable``: expired entries make room, O(1) amortized per
revocation). When it is full of live entries it must not forget a revocation, nor drop the new one:
it refuses closed instead. Every token issued up to that moment is refused until the revocation it
could not record would have expired; clients refresh (the refresh path reads the database, where
the session is revoked) and get tokens issued after the overflow, which pass.

``Revocations`` is what the identity service uses: the store under the one fail mode
(``bastion.failover``). Closed: a check that cannot reach Redis is ``ServiceUnavailable`` (503),
never an accepted token. Open (development): the in-process denylist answers instead and the
failure is logged as an error and counted.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection
from datetime import datetime, timedelta
from typing import Protocol

from bastion.auth.tokens import LEEWAY_SECONDS, AccessClaims
from bastion.failover import Failover
from bastion.observability.logging import get_logger
from bastion.ratelimit.storage.bounded import BoundedTable
from bastion.redis_client import RedisClient

KEY_PREFIX = "bastion:auth:deny:"
# An access token is accepted up to LEEWAY_SECONDS past its expiry; a further margin covers clock
# skew between instances and a refresh that read its session just before the ending.
SKEW_SECONDS = LEEWAY_SECONDS + 30
DEFAULT_MAX_ENTRIES = 100_000


class Denylist(Protocol):
    """Revoked sessions and access tokens, each remembered for ``ttl_seconds``."""

    async def revoke_sessions(self, session_ids: Collection[str], *, ttl_seconds: int) -> None:
        """Refuse every access token of these sessions for the next ``ttl_seconds`` (>= 1)."""

    async def revoke_token(self, jti: str, session_id: str, *, ttl_seconds: int) -> None:
        """Refuse the access token ``jti`` (of ``session_id``) for the next ``ttl_seconds`` (>= 1)."""

    async def refused(self, jti: str, session_id: str, issued_at: float) -> bool:
        """Whether the token ``jti`` of ``session_id``, issued at ``issued_at`` (epoch), is refused."""

    async def aclose(self) -> None:
        """Release what the store owns."""


def _expiry(until: float) -> float:
    return until


class MemoryDenylist:
    """This process's denylist, bounded to ``max_entries`` (see the module notes on overflow)."""

    def __init__(
        self, *, max_entries: int = DEFAULT_MAX_ENTRIES, clock: Callable[[], float] = time.time
    ) -> None:
        # Epoch seconds, like token issue times, so an overflow can be compared with them.
        self.clock = clock
        self.entries: BoundedTable[float] = BoundedTable(max_entries, _expiry)
        self.overflows = 0
        self._refuse_issued_until = -math.inf  # tokens issued at or before this are refused ...
        self._refuse_until = -math.inf  # ... until then
        self.log = get_logger("bastion.auth.revocation")

    def _add(self, key: str, ttl_seconds: int) -> None:
        now = self.clock()
        until = now + max(1, ttl_seconds)
        current = self.entries.data.get(key)
        if current is not None and current >= until:
            return
        if self.entries.insert(key, until, now):
            return
        # Full of live revocations: refuse closed rather than forget one.
        self.overflows += 1
        self._refuse_issued_until = max(self._refuse_issued_until, now)
        self._refuse_until = max(self._refuse_until, until)
        self.log.error(
            "denylist_full",
            entries=len(self.entries),
            refusing_until=self._refuse_until,
            overflows=self.overflows,
        )

    async def revoke_sessions(self, session_ids: Collection[str], *, ttl_seconds: int) -> None:
        for session_id in session_ids:
            self._add("s:" + session_id, ttl_seconds)

    async def revoke_token(self, jti: str, session_id: str, *, ttl_seconds: int) -> None:
        self._add("j:" + jti, ttl_seconds)

    async def refused(self, jti: str, session_id: str, issued_at: float) -> bool:
        now = self.clock()
        if now < self._refuse_until and issued_at <= self._refuse_issued_until:
            return True
        data = self.entries.data
        for key in ("s:" + session_id, "j:" + jti):
            until = data.get(key)
            if until is not None and until > now:
                return True
        return False

    async def aclose(self) -> None:
        return None


class RedisDenylist:
    """The shared denylist: one SET per entry (with its expiry), one EXISTS per check."""

    def __init__(self, redis: RedisClient, *, prefix: str = KEY_PREFIX, owns_client: bool = False) -> None:
        self.redis = redis
        self.prefix = prefix
        self.owns_client = owns_client

    def session_key(self, session_id: str) -> str:
        return f"{self.prefix}{{{session_id}}}:s"

    def token_key(self, jti: str, session_id: str) -> str:
        return f"{self.prefix}{{{session_id}}}:j:{jti}"

    async def revoke_sessions(self, session_ids: Collection[str], *, ttl_seconds: int) -> None:
        if not session_ids:
            return
        # Not a transaction: the keys live in different Cluster slots; each SET stands alone.
        async with self.redis.pipeline(transaction=False) as pipe:
            for session_id in session_ids:
                pipe.set(self.session_key(session_id), b"1", ex=max(1, ttl_seconds))
            await pipe.execute()

    async def revoke_token(self, jti: str, session_id: str, *, ttl_seconds: int) -> None:
        await self.redis.set(self.token_key(jti, session_id), b"1", ex=max(1, ttl_seconds))

    async def refused(self, jti: str, session_id: str, issued_at: float) -> bool:
        found = await self.redis.exists(self.token_key(jti, session_id), self.session_key(session_id))
        return int(found) > 0

    async def aclose(self) -> None:
        if self.owns_client:
            await self.redis.aclose()


class Revocations:
    """The denylist as the identity service uses it: lifetimes from the token lifetime, fail mode."""

    def __init__(
        self, failover: Failover[Denylist], *, token_lifetime: timedelta, clock: Callable[[], datetime]
    ) -> None:
        self.failover = failover
        self.session_ttl = int(token_lifetime.total_seconds()) + SKEW_SECONDS
        self.clock = clock

    async def refused(self, claims: AccessClaims) -> bool:
        """Whether the token's session ended or the token was revoked (``ServiceUnavailable`` when
        that cannot be known and the fail mode is closed)."""
        jti, session_id, issued_at = claims.jti, claims.session_id, claims.issued_at.timestamp()
        return await self.failover.run(lambda store: store.refused(jti, session_id, issued_at))

    async def end_sessions(self, session_ids: Collection[str]) -> None:
        """Refuse every access token of these sessions, on every instance."""
        ids = sorted(set(session_ids))
        if ids:
            ttl = self.session_ttl
            await self.failover.run(lambda store: store.revoke_sessions(ids, ttl_seconds=ttl))

    async def revoke(self, claims: AccessClaims) -> None:
        """Refuse one access token until it would have expired."""
        ttl = int((claims.expires_at - self.clock()).total_seconds()) + SKEW_SECONDS
        jti, session_id = claims.jti, claims.session_id
        await self.failover.run(lambda store: store.revoke_token(jti, session_id, ttl_seconds=max(ttl, 1)))

    async def aclose(self) -> None:
        await self.failover.primary.aclose()
        if self.failover.fallback is not self.failover.primary:
            await self.failover.fallback.aclose()
