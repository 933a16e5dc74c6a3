# SPDX-License-Identifier: Apache-2.0
"""Grace periods of rotated-out secrets: the previous value verifies until a moment, then never.

A verifier built from the current secret is tried first; only when it fails is the one built
from the previous secret tried, and only while ``clock() < until``. The check is made at
verification time (not only when the secrets are reloaded), so the grace ends on time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from bastion.db.types import utcnow

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Graced(Generic[T]):
    """A verifier built from a rotated-out secret, accepted until ``until``."""

    verifier: T
    until: datetime
    clock: Callable[[], datetime] = utcnow

    def active(self) -> T | None:
        return self.verifier if self.clock() < self.until else None


def in_grace(previous: Graced[T] | None) -> T | None:
    """The previous verifier while its grace runs, else None."""
    return previous.active() if previous is not None else None


def capped(end: datetime | None, limit: datetime) -> datetime:
    """A version's end of verification after a rotation at ``limit - grace``: never extended.

    ``None`` (still current) becomes ``limit``; an earlier end stands; a later one is cut to
    ``limit`` (an emergency rotation, grace 0, ends every older value at once).
    """
    return limit if end is None or end > limit else end
