# SPDX-License-Identifier: Apache-2.0
"""GCRA (the generic cell rate algorithm): a token bucket stored as one timestamp, with no I/O.

For a rate of ``limit`` per ``period`` with room for ``burst`` requests at once, each request pushes
the bucket's *theoretical arrival time* (TAT) forward by one emission interval ``T = period/limit``.
A request is admitted while the TAT it would produce stays within ``burst * T`` of now. The whole
state of a bucket is therefore one float, which makes the Redis script a single HGET/HSET and the
in-memory state one list, and the bucket is full again (state may be forgotten) once ``TAT <= now``.

Times are float seconds from an injected clock; the Lua script in ``storage/redis.py`` does the
same arithmetic on doubles, and the contract tests hold both to the same answers.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple

# Float arithmetic on the boundary (e.g. 3 x 20.0 s) must not flip a decision.
EPSILON = 1e-9

PERIODS = {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0}
_RATE = re.compile(r"^\s*(\d{1,9})\s*/\s*(second|minute|hour|day)\s*(?:;\s*burst\s*=\s*(\d{1,9})\s*)?$")


@dataclass(frozen=True, slots=True)
class Rate:
    """``limit`` requests per ``period`` seconds, at most ``burst`` of them back to back."""

    limit: int
    period: float
    burst: int

    def __post_init__(self) -> None:
        if self.limit < 1 or self.burst < 1 or self.period <= 0:
            raise ValueError("a rate needs limit >= 1, burst >= 1 and a positive period")

    @property
    def interval(self) -> float:
        """Seconds one request costs: the emission interval T."""
        return self.period / self.limit

    @property
    def tolerance(self) -> float:
        """How far ahead of now the TAT may run: ``burst`` intervals."""
        return self.interval * self.burst

    @classmethod
    def parse(cls, text: str) -> Rate:
        """``"5/minute"`` or ``"5/minute;burst=3"`` (burst defaults to the limit)."""
        match = _RATE.match(text)
        if match is None:
            raise ValueError("a rate is N/second|minute|hour|day with an optional ;burst=N")
        limit = int(match.group(1))
        burst = int(match.group(3)) if match.group(3) else limit
        return cls(limit=limit, period=PERIODS[match.group(2)], burst=burst)

    def __str__(self) -> str:
        names = {seconds: name for name, seconds in PERIODS.items()}
        period = names.get(self.period, f"{self.period:g}s")
        return f"{self.limit}/{period};burst={self.burst}"


class Outcome(IntEnum):
    """What a decision says; the integers are also the Lua script's first return value."""

    LIMITED = 0
    ALLOWED = 1
    BLOCKED = 2  # the identity is under a temporary block
    NEWLY_BLOCKED = 3  # this violation crossed the block threshold
    FULL = 4  # the in-process table is full of identities that have not recovered: new ones wait


class Decision(NamedTuple):
    """One admission decision. Times are seconds from now."""

    outcome: int
    remaining: int
    retry_after: float
    reset_after: float

    @property
    def allowed(self) -> bool:
        return self.outcome == Outcome.ALLOWED


# A decision's four fields as a plain tuple, in ``Decision``'s order. The in-process fast path
# returns these: a plain tuple comes from the interpreter's free list, while building any tuple
# subclass (``Decision``) costs about as much as the whole GCRA step. ``Decision`` is one too.
RawDecision = tuple[int, int, float, float]


class GcraStep(NamedTuple):
    allowed: bool
    tat: float  # the TAT to store (unchanged when denied)
    remaining: int
    retry_after: float
    reset_after: float


def gcra(tat: float | None, now: float, interval: float, tolerance: float, cost: int = 1) -> GcraStep:
    """One GCRA step from a stored TAT (``None`` for a full bucket)."""
    base = now if tat is None or tat < now else tat
    new_tat = base + cost * interval
    allow_at = new_tat - tolerance
    if allow_at - now > EPSILON:
        return GcraStep(False, base, 0, allow_at - now, base - now)
    remaining = math.floor((now - allow_at) / interval + EPSILON)
    return GcraStep(True, new_tat, remaining, 0.0, new_tat - now)
