# SPDX-License-Identifier: Apache-2.0
"""What authentication needs per request, kept in memory: no database on the authenticated path.

An access token is verified once (signature, claims, the session denylist, the user's status,
role and token version) and the result is then kept under a keyed MAC of the WHOLE token (never
a prefix, never the token itself), together with the user's row, which ``/api/auth/me`` and the
next token of the same user read instead of the database.

Kept correct by the shared version counter used for API keys (``bastion.invalidation``): every
change that could refuse a cached credential (a session ended or a token revoked, a user disabled,
erased, given another role or password, every session ended) bumps the ``identity`` version after
the database has it; this instance drops its cache at once, every other instance within
INVALIDATION_POLL_SECONDS (one GET at most that often). Each entry also lives at most
AUTH_CACHE_SECONDS, so what reaches the database by another road (a command on a machine without
REDIS_URL, a worker of the same machine without Redis) applies within that too, and never past the
token's own expiry. AUTH_CACHE_SECONDS=0 turns the cache off (every request verifies in full).

When the version cannot be read (Redis down) the fail mode decides, as for every shared check:
closed answers 503 (a cached credential whose revocation cannot be known is not trusted), open
falls back to this process's counter, which drops the cache once.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from bastion.auth.models import User
from bastion.auth.principal import Principal
from bastion.auth.tokens import AccessClaims
from bastion.invalidation import MemoryVersionCounter, Watched

# Bounded memory: past this many entries a table is emptied and refilled by the next requests
# (an attacker presenting many valid tokens only costs itself full verifications).
MAX_ENTRIES = 50_000

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Entry(Generic[T]):
    value: T
    stored_at: float  # monotonic
    deadline: datetime | None  # wall clock, e.g. the token's expiry


class _Table(Generic[T]):
    """A bounded dict whose entries expire ``ttl`` seconds after they were stored, or at their deadline."""

    def __init__(self, ttl: float, monotonic: Callable[[], float]) -> None:
        self.ttl = ttl
        self.monotonic = monotonic
        self.data: dict[object, _Entry[T]] = {}

    def get(self, key: object, now: datetime) -> T | None:
        entry = self.data.get(key)
        if entry is None:
            return None
        if self.monotonic() - entry.stored_at < self.ttl and (entry.deadline is None or now < entry.deadline):
            return entry.value
        self.data.pop(key, None)
        return None

    def put(self, key: object, value: T, deadline: datetime | None = None) -> None:
        if self.ttl <= 0:
            return
        if len(self.data) >= MAX_ENTRIES:
            self.data.clear()
        self.data[key] = _Entry(value, self.monotonic(), deadline)

    def discard(self, key: object) -> None:
        self.data.pop(key, None)


class AuthCache:
    """Verified credentials (``tokens``) and user rows (``users``), dropped when ``version`` moves."""

    def __init__(
        self,
        version: Watched | None = None,
        *,
        ttl_seconds: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.version = version if version is not None else Watched(MemoryVersionCounter(), interval=0.25)
        self.ttl_seconds = ttl_seconds
        self.tokens: _Table[tuple[Principal, AccessClaims]] = _Table(ttl_seconds, monotonic)
        self.users: _Table[User] = _Table(ttl_seconds, monotonic)
        # Addresses opened from users' sealed columns, by user id and ciphertext.
        self.emails: _Table[str] = _Table(ttl_seconds, monotonic)
        # Verifications in progress, by credential key: requests with the same token that arrive
        # while it is being verified (every client of a busy user the moment its entry expires)
        # wait for that one instead of each reading the database. Emptied on every clear.
        self.flights: dict[object, tuple[int, asyncio.Future[Any]]] = {}
        # Moves on every clear: an entry verified across a clear is not stored (it may be revoked).
        self.generation = 0
        # A per-process key: the cache's keys say nothing about the credentials, even in a dump.
        self._key = secrets.token_bytes(32)

    @property
    def enabled(self) -> bool:
        return self.ttl_seconds > 0

    def credential_key(self, purpose: str, credential: str) -> bytes:
        """The MAC of the whole credential (and what it was presented as) under this process's key."""
        mac = hashlib.blake2b(key=self._key, digest_size=32, person=b"bastion.authc")
        mac.update(purpose.encode())
        mac.update(b"\x00")
        mac.update(credential.encode("utf-8", "surrogatepass"))
        return mac.digest()

    def due(self) -> bool:
        """Whether ``refresh`` would read the shared version now (most requests: no)."""
        return self.enabled and self.version.due()

    async def refresh(self) -> None:
        """Drop everything when the shared version moved (``ServiceUnavailable`` in closed mode)."""
        if self.enabled and self.version.due() and await self.version.changed():
            self.clear()

    def clear(self) -> None:
        self.generation += 1
        self.tokens.data.clear()
        self.users.data.clear()
        self.emails.data.clear()
        self.flights.clear()

    async def shared(self, key: object, verify: Callable[[], Awaitable[T]]) -> T:
        """``verify()``, shared with the requests for the same ``key`` (a credential's, a user's
        row) that come meanwhile: a busy client's requests the moment its entry expires make one
        verification, not one each.

        Only a success is shared, and only with requests that came before any clear (a later one
        starts its own verification); when the first request fails or is cancelled the others
        verify on their own.
        """
        flight = self.flights.get(key)
        if flight is not None and flight[0] == self.generation:
            try:
                return await asyncio.shield(flight[1])
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise
            except Exception:  # noqa: S110 - the first request's failure is its own; verify anew
                pass
            return await verify()
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self.flights[key] = (self.generation, future)
        try:
            result = await verify()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # marked as retrieved: the waiters verify anew, nothing is lost
            raise
        else:
            future.set_result(result)
            return result
        finally:
            if self.flights.get(key, (None, None))[1] is future:
                del self.flights[key]

    async def changed(self) -> None:
        """Something that could refuse a cached credential changed: drop here, tell every instance."""
        self.clear()
        await self.version.bump()
