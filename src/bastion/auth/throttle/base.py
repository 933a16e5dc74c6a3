# SPDX-License-Identifier: Apache-2.0
"""What the password throttle stores, and the rules it applies: the contract every store keeps.

Three kinds of state, each keyed on a hash (no address or email is ever stored):

* **pair** (account, client): failed checks of one account's password from one client address.
  From ``delay_after`` failures on, every further attempt from that client for that account must
  wait ``delay_seconds``, doubled per further failure, at most ``delay_max_seconds``. The owner
  elsewhere is not affected.
* **account**: consecutive failures (all clients, reset by a correct password) and the distinct
  clients they came from. Only ``lock_failures`` of them from at least ``lock_clients`` clients
  lock the account, for ``lock_seconds`` doubled per further lock within a day (at most a day),
  until it expires, a password reset completes, or an administrator unlocks it.
* **client**: failures from one client address over all accounts (password spraying):
  ``client_max_failures`` within ``window_seconds`` refuse the client for ``window_seconds``.

Every method of a store is one atomic step (one Lua round trip on Redis) over keys of one
Cluster slot; ``now`` comes from the caller's injected clock, so tests move time.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple, Protocol

LEVEL_TTL_SECONDS = 24 * 3600.0
MAX_LOCK_SECONDS = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class ThrottleRules:
    window_seconds: float = 900.0
    delay_after: int = 3
    delay_seconds: float = 2.0
    delay_max_seconds: float = 900.0
    client_max_failures: int = 30
    account_window_seconds: float = 24 * 3600.0
    lock_failures: int = 100
    lock_clients: int = 10
    lock_seconds: float = 900.0

    def pair_wait(self, failures: int) -> float:
        """How long a client waits after its ``failures``-th failure for one account."""
        if failures < self.delay_after:
            return 0.0
        doubled = self.delay_seconds * 2.0 ** min(failures - self.delay_after, 62)
        return float(min(doubled, self.delay_max_seconds))

    def lock_for(self, level: int) -> float:
        """The length of an account's ``level``-th lock within a day."""
        return float(min(self.lock_seconds * 2.0 ** min(level - 1, 62), MAX_LOCK_SECONDS))


class Waits(NamedTuple):
    """Seconds left (0: none) before a password check may run for an (account, client)."""

    account_locked: float
    pair_delayed: float


class Failure(NamedTuple):
    """What one counted failure changed: the pair's new wait and, when it locked, the lock."""

    pair_wait: float
    locked_for: float


class AttemptStore(Protocol):
    async def account_waits(self, account: str, client: str, now: float) -> Waits:
        """The account's lock and the (account, client) pair's delay still running at ``now``.

        A bounded store that is full and cannot make room reports a pair delay for a newcomer
        instead of forgetting another identity's running state.
        """

    async def account_failure(self, account: str, client: str, now: float, rules: ThrottleRules) -> Failure:
        """Count a failure for the pair and the account; lock the account past the threshold."""

    async def account_success(self, account: str, client: str) -> None:
        """A correct password: the account's consecutive failures and this pair's are forgotten.

        A lock is not lifted by this (the check refuses while it runs); see ``unlock``.
        """

    async def unlock(self, account: str, now: float) -> bool:
        """Lift the account's lock and forget its failures; True when a lock was in force."""

    async def client_wait(self, client: str, now: float) -> float:
        """Seconds the client address stays refused (0 when it is not)."""

    async def client_failure(self, client: str, now: float, rules: ThrottleRules) -> float:
        """Count a failure for the client address; the seconds it was just refused for (0 if not)."""


def _digest(prefix: str, value: str) -> str:
    return prefix + hashlib.sha256(value.encode()).hexdigest()[:32]


def account_key(email: str) -> str:
    """The key of an account: the hash of its normalized email, whether or not it exists."""
    return _digest("acct:", email.strip().lower())


def client_key(ip: str | None) -> str:
    return _digest("ip:", ip or "unknown")


class Refusal(StrEnum):
    """Why a password check was refused before it ran (the audit reason)."""

    CLIENT_BLOCKED = "client_blocked"
    ACCOUNT_LOCKED = "account_locked"
    THROTTLED = "throttled"
