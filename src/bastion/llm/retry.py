# SPDX-License-Identifier: Apache-2.0
"""Bounded retries with exponential backoff and full jitter, honouring upstream Retry-After."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

# Statuses worth another try: overload, rate limit, transient server faults. A 4xx other than
# 408/429 means our request or credentials are wrong, and repeating it cannot help.
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int = 2
    base_delay: float = 0.25
    max_delay: float = 8.0
    # An upstream asking us to wait longer than this is treated as unavailable right away: the
    # caller gets 503 with that Retry-After instead of a request held open for minutes.
    max_retry_after: float = 20.0
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def backoff(self, attempt: int) -> float:
        """Delay before retry number ``attempt`` (0-based): uniform in [0, min(cap, base * 2^n)]."""
        ceiling = min(self.max_delay, self.base_delay * (2**attempt))
        return self.rng.uniform(0, ceiling)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None if absent or invalid."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(min(int(value), 86_400))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return max(0.0, min(seconds, 86_400.0))
