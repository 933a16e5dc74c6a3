# SPDX-License-Identifier: Apache-2.0
"""Dicts with a key bound that only ever forget state which has fully recovered.

Forgetting a bucket that is still draining would hand its identity a fresh allowance it has not
earned: an attacker could flood the table with throwaway identities to flush its own state. So
when the bound is reached, a new identity may only take the place of one whose state has recovered
(``recovered_at(value) <= now``); when none has, the new identity is refused (the caller answers
429) until the soonest entry recovers. Old state is never reset to make room.

Several tables may share one ``KeyBudget`` (the per-policy bucket tables do), so the bound holds
for their total. A table makes room only from its own entries: refusing a newcomer while another
table holds recovered state is the conservative error.

The search for a recovered entry is incremental: each insertion into a full table examines at
most ``sweep_batch`` entries, oldest first, rotating live ones to the back, so one request never
pays for scanning the whole table. After a complete pass that found nothing, new identities are
refused in O(1) until the soonest recovery time seen in that pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Generic, TypeVar

V = TypeVar("V")


class KeyBudget:
    """How many keys some tables may hold together, and how many they hold."""

    __slots__ = ("max_keys", "used")

    def __init__(self, max_keys: int) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self.max_keys = max_keys
        self.used = 0


class BoundedTable(Generic[V]):
    """Read ``data`` directly; add keys with ``insert`` and remove them with ``discard``."""

    __slots__ = (
        "_full_until",
        "_pass_examined",
        "_pass_soonest",
        "budget",
        "data",
        "recovered_at",
        "sweep_batch",
    )

    def __init__(
        self,
        budget: KeyBudget | int,
        recovered_at: Callable[[V], float],
        *,
        sweep_batch: int = 256,
    ) -> None:
        self.budget = budget if isinstance(budget, KeyBudget) else KeyBudget(budget)
        self.data: dict[str, V] = {}
        self.recovered_at = recovered_at
        self.sweep_batch = sweep_batch
        self._full_until = -math.inf
        self._pass_examined = 0
        self._pass_soonest = math.inf

    def __len__(self) -> int:
        return len(self.data)

    def room(self, now: float) -> bool:
        """Whether one more key may be added now (evicting one recovered entry if needed)."""
        if self.budget.used < self.budget.max_keys:
            return True
        data = self.data
        if not data or now < self._full_until:
            return False
        recovered_at = self.recovered_at
        for _ in range(min(self.sweep_batch, len(data))):
            key = next(iter(data))
            value = data.pop(key)
            ready = recovered_at(value)
            if ready <= now:
                self.budget.used -= 1
                self._pass_examined = 0
                self._pass_soonest = math.inf
                return True
            data[key] = value  # still draining: rotate it to the back, keep it
            self._pass_soonest = min(self._pass_soonest, ready)
            self._pass_examined += 1
            if self._pass_examined >= len(data):
                self._full_until = self._pass_soonest
                self._pass_examined = 0
                self._pass_soonest = math.inf
                return False
        return False

    def retry_after(self, now: float) -> float:
        """How long a refused identity should wait before trying again."""
        return max(1.0, self._full_until - now) if self._full_until > now else 1.0

    def insert(self, key: str, value: V, now: float) -> bool:
        """Store a key if it exists or there is room; False (nothing stored) when full."""
        if key in self.data:
            self.data[key] = value
            return True
        if not self.room(now):
            return False
        self.data[key] = value
        self.budget.used += 1
        return True

    def discard(self, key: str) -> V | None:
        value = self.data.pop(key, None)
        if value is not None:
            self.budget.used -= 1
        return value
