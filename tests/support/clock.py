# SPDX-License-Identifier: Apache-2.0
"""A clock tests move by hand, so nothing that expires has to be waited for."""

from __future__ import annotations

from datetime import UTC, datetime


class FakeClock:
    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class DateClock:
    """The same for services that read datetimes (expiry and grace periods)."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start if start is not None else datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now
