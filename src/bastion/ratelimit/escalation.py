# SPDX-License-Identifier: Apache-2.0
"""Graduated response: repeat offenders wait longer, persistent ones are blocked for a while.

Three rules, applied atomically by the storage backend together with the rate decision:

1. **Strikes.** A request denied while no penalty is running is a strike. Strikes within
   ``strike_window`` of each other accumulate; the wait for strike *n* is the bucket's natural
   wait doubled ``n - 1`` times, capped at ``penalty_cap``. A client that honours Retry-After and
   comes back still over the limit therefore waits 1x, 2x, 4x... A quiet ``strike_window`` forgets.
2. **Violations.** Every denied request (strike or not) counts toward ``violation_threshold`` per
   ``violation_window`` for the identity (default 100 in an hour); crossing it places a block.
3. **Authentication failures.** ``record_auth_failure`` counts toward ``auth_failure_threshold``
   per ``auth_failure_window`` (default 10 in 5 minutes) for an IP or API key, then blocks it.

A block lasts ``block_seconds`` and is only ever placed on an IP or an API key, never on a user
account, so an attacker cannot lock a victim out of their own account by failing to log in as them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Escalation:
    strike_window: float = 600.0
    penalty_cap: float = 900.0
    violation_window: float = 3600.0
    violation_threshold: int = 100  # 0 turns automatic blocking on violations off
    auth_failure_window: float = 300.0
    auth_failure_threshold: int = 10  # 0 turns automatic blocking on failed authentication off
    block_seconds: float = 3600.0

    def penalty(self, strikes: int, natural: float) -> float:
        """Seconds to wait after strike number ``strikes`` when the bucket alone says ``natural``."""
        return penalty(strikes, natural, self.penalty_cap)


def penalty(strikes: int, natural: float, cap: float) -> float:
    """``natural * 2**(strikes-1)``, at most ``cap`` but never less than ``natural``."""
    doubled = natural * 2.0 ** min(max(strikes - 1, 0), 62)
    return max(natural, min(cap, doubled))
