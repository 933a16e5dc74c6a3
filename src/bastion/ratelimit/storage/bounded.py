# SPDX-License-Identifier: Apache-2.0
"""A dict with a key bound that only ever forgets state which has fully recovered.

Forgetting a bucket that is still draining would hand its identity a fresh allowance it has not
earned: an attacker could flood the table with throwaway identities to flush its own state. So
when the table is full, a new identity may only take the place of one whose state has recovered
(``recovered_at(value) <= now``); when none has, the new identity is refused (the caller answers
429) until the soonest entry recovers. Old state is never reset to make room.

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


class BoundedTable(Generic[V]):
    __slots__ = (
        "_full_until",
        "_pass_examined",
        "_pass_soonest",
        "data",
        "max_keys",
        "recovered_at",
        "sweep_batch",
    )

    def __init__(self, max_keys: int, recovered_at: Callable[[V], float], *, sweep_batch: int = 256) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self.data: dict[str, V] = {}
        self.max_keys = max_keys
        self.recovered_at = recovered_at
        self.sweep_batch = sweep_batch
        self._full_until = -math.inf
        self._pass_examined = 0
        self._pass_soonest = math.inf

    def __len__(self) -> int:
        return len(self.data)

    def room(self, now: float) -> bool:
        """Whether one more key may be added now (evicting one recovered entry if needed)."""
        data = self.data
        if len(data) < self.max_keys:
            return True
        if now < self._full_until:
            return False
        recovered_at = self.recovered_at
        for _ in range(min(self.sweep_batch, len(data))):
            key = next(iter(data))
            value = data.pop(key)
            ready = recovered_at(value)
            if ready <= now:
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
        """Add a new key if there is room; False (and nothing stored) when the table is full."""
        if key in self.data or self.room(now):
            self.data[key] = value
            return True
        return False
