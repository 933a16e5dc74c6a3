# SPDX-License-Identifier: Apache-2.0
"""The protocol every limiter storage implements: atomic primitives, one call per decision.

Each method is one atomic operation: a single Lua script (one EVALSHA round trip) in Redis, and a
plain dict operation with no ``await`` between its read and its write in memory. Asyncio runs one
coroutine at a time on a loop, and a coroutine is only ever suspended at an ``await``, so a method
that never awaits while it reads and writes the dict cannot interleave with another: no lock is
needed (and a lock would only add an await). Callers pass ``now`` from their injected clock.

Keys are built from an *identity* (``ip:203.0.113.9``, ``key:<id>``, ``user:<id>``, ``email:<hash>``,
``global``) and a name. Everything one atomic call touches shares a Redis Cluster hash tag.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from bastion.ratelimit.algorithm import Decision
from bastion.ratelimit.escalation import Escalation


@dataclass(frozen=True, slots=True)
class Block:
    """A temporary block on an identity (``kind:value``)."""

    identity: str
    until: float
    reason: str
    created_at: float

    @property
    def kind(self) -> str:
        return self.identity.partition(":")[0]

    @property
    def value(self) -> str:
        return self.identity.partition(":")[2]


@dataclass(frozen=True, slots=True)
class SlotResult:
    """The answer of ``acquire_slots``: whether the member holds a slot, and each key's count."""

    acquired: bool
    counts: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class BudgetResult:
    """The answer of ``reserve_budget``: whether the amount is held, and what is left unheld."""

    allowed: bool
    remaining: int


@dataclass(frozen=True, slots=True)
class BudgetSettlement:
    """The answer of ``settle_budget``: what this settlement charged, then the budget's totals."""

    charged: int
    used: int
    reserved: int


@dataclass(frozen=True, slots=True)
class LimitCall:
    """One rate decision of an ``admit``: ``cost`` from ``identity``'s bucket of one policy."""

    identity: str
    bucket: str
    interval: float
    tolerance: float
    cost: int = 1


@dataclass(frozen=True, slots=True)
class BudgetCall:
    """The budget reservation of an ``admit``; ``key`` carries its owner identity's hash tag."""

    key: str
    amount: int
    limit: int
    expires_at: float


@dataclass(frozen=True, slots=True)
class SlotRenewal:
    """The slot renewal of an ``admit`` (``renew_slots``'s arguments)."""

    keys: tuple[str, ...]
    member: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class Admission:
    """The answer of ``admit``.

    ``decisions`` follow the calls' order; None for a call left undecided because an earlier call
    of the same identity refused. ``budget`` is None when none was asked, and not granted when a
    limit refused (nothing is then held). ``renewed`` is None when no renewal was asked.
    """

    decisions: tuple[Decision | None, ...]
    budget: BudgetResult | None
    renewed: bool | None

    @property
    def refused(self) -> int | None:
        """The index of the first call that did not admit, if any."""
        for index, decision in enumerate(self.decisions):
            if decision is not None and not decision.allowed:
                return index
        return None


@dataclass(frozen=True, slots=True)
class ScriptCall:
    """One script to run by EVALSHA: its source (for its SHA1 and for NOSCRIPT), keys, arguments."""

    source: str
    keys: tuple[str, ...]
    args: tuple[Any, ...]

    @property
    def sha(self) -> str:
        return hashlib.sha1(self.source.encode(), usedforsecurity=False).hexdigest()


@dataclass(slots=True)
class Rider:
    """A script of another component sent in the same round trip as a storage call (e.g. the
    anomaly detector's token count with the budget's settlement); ``done`` gets its reply, or
    the exception it met, once it ran. ``ran`` tells the component whether to make its own call."""

    call: ScriptCall
    done: Callable[[Any], None]
    ran: bool = False


@dataclass(frozen=True, slots=True)
class BucketState:
    """One policy's bucket for one identity: its theoretical arrival time and escalated penalty."""

    tat: float
    penalty_until: float


@dataclass(frozen=True, slots=True)
class IdentityState:
    """What the limiter holds on one identity, as of ``now`` (``inspect``).

    ``buckets`` names only the buckets not yet full again (a full bucket holds no state);
    ``violations`` and ``auth_failures`` count within their live windows (0 once lapsed).
    """

    buckets: dict[str, BucketState]
    violations: int
    auth_failures: int
    block: Block | None


class LimiterStorage(Protocol):
    """Atomic primitives for rate limits, escalation, blocks, leases, slots and budgets."""

    name: str

    async def decide(
        self,
        identity: str,
        bucket: str,
        now: float,
        interval: float,
        tolerance: float,
        cost: int,
        escalation: Escalation,
    ) -> Decision:
        """Check the identity's block, then take ``cost`` from its bucket, escalating on denial.

        Outcome BLOCKED when a block is in force (``retry_after`` = seconds left), NEWLY_BLOCKED when
        this denial crossed the violation threshold, LIMITED with the (possibly escalated) wait, or
        ALLOWED with the remaining burst. State expires by itself once the bucket is full again.
        """
        ...

    async def record_auth_failure(self, identity: str, now: float, escalation: Escalation) -> bool:
        """Count a failed authentication; True when this failure placed a block."""
        ...

    async def block(self, identity: str, now: float, until: float, reason: str) -> Block:
        """Place (or extend) a block on an identity."""
        ...

    async def unblock(self, identity: str) -> bool:
        """Lift a block; False when there was none."""
        ...

    async def blocked(self, identity: str, now: float) -> Block | None:
        """The block in force on an identity, if any."""
        ...

    async def blocked_any(self, identities: Sequence[str], now: float) -> Block | None:
        """The first block in force on any of ``identities``, looked up together (one round trip)."""
        ...

    async def list_blocks(self, now: float, limit: int, kind: str | None = None) -> list[Block]:
        """Blocks in force, soonest to expire first, at most ``limit`` (only of ``kind`` if given)."""
        ...

    async def inspect(self, identity: str, buckets: Sequence[str], now: float) -> IdentityState:
        """Read, without changing anything, the identity's state in ``buckets``, its escalation
        counters and its block: one atomic read."""
        ...

    async def reset(self, identity: str, buckets: Sequence[str]) -> None:
        """Forget the identity's state in ``buckets`` and its escalation counters (strikes,
        violations, authentication failures), atomically: its allowances are full again. A block
        in force stays (lifting one is the blocklist's, and audited as such)."""
        ...

    async def acquire_slots(
        self, keys: Sequence[str], limits: Sequence[int], member: str, now: float, expires_at: float
    ) -> SlotResult:
        """Hold a slot for ``member`` in every key, or in none: all-or-nothing.

        A key holds at most its limit of members; a member whose expiry has passed no longer
        counts (so a holder that died stops holding). Acquiring a member already held renews it.
        """
        ...

    async def release_slots(self, keys: Sequence[str], member: str) -> None:
        """Give ``member``'s slot back in every key (idempotent)."""
        ...

    async def renew_slots(self, keys: Sequence[str], member: str, now: float, expires_at: float) -> bool:
        """Push the expiry of a held slot; False when it is no longer held."""
        ...

    async def count_slots(self, key: str, now: float) -> int:
        """Members holding a live slot in ``key``."""
        ...

    async def reserve_budget(
        self, key: str, amount: int, limit: int, now: float, expires_at: float
    ) -> BudgetResult:
        """Hold ``amount`` of a budget of ``limit`` that resets at ``expires_at``, all or nothing.

        Granted only when ``used + reserved + amount <= limit``; ``remaining`` is what is then left
        (refused: what is left now, ``limit - used - reserved`` and never below 0).
        """
        ...

    async def settle_budget(
        self,
        key: str,
        reserved: int,
        actual: int,
        limit: int,
        now: float,
        expires_at: float,
        riders: Sequence[Rider] = (),
    ) -> BudgetSettlement:
        """Release a reservation of ``reserved`` and charge ``actual`` in its place.

        What lies beyond the reservation is charged only up to ``limit + reserved`` (counting the
        other reservations still held), so however many calls overshoot their reservations at
        once, ``used`` never exceeds the limit by more than one reservation. A settlement after
        ``expires_at`` (the budget's period is over) changes nothing. ``reserved=0, actual=0``
        reads the totals without writing.

        ``riders`` go in the same round trip where the storage has one (Redis); a storage that
        cannot run them leaves them unrun (``Rider.ran``) for their components to run.
        """
        ...

    async def admit(
        self,
        limits: Sequence[LimitCall],
        budget: BudgetCall | None,
        renewal: SlotRenewal | None,
        now: float,
        escalation: Escalation,
    ) -> Admission:
        """What a model call needs before it starts, decided together (Redis: one round trip).

        Decides ``limits`` in order, each atomic as ``decide``; after a refusal the identity's later
        calls are not decided (others may be: they live in other hash slots). ``budget`` is
        reserved, as ``reserve_budget``, only when every limit admitted: a refusal holds no
        tokens. ``renewal`` renews the slots as ``renew_slots``, whatever the other answers.
        """
        ...

    async def aclose(self) -> None:
        """Release what the storage holds (not a shared Redis client, which its owner closes)."""
        ...
