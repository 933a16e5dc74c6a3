# SPDX-License-Identifier: Apache-2.0
"""A clock tests move by hand, so nothing that expires has to be waited for."""

from __future__ import annotations


class FakeClock:
    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
