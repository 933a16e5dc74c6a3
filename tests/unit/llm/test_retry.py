# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from bastion.llm.retry import RetryPolicy, parse_retry_after


def test_backoff_is_jittered_within_an_exponential_cap() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=4, rng=random.Random(7))
    for attempt, ceiling in enumerate([0.5, 1, 2, 4, 4, 4]):
        delays = [policy.backoff(attempt) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8  # spread over the range, not fixed
        assert len(set(delays)) > 150


def test_retry_after_forms() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after("7") == 7
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now=now) == 30
    assert parse_retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now=now) == 0
    assert parse_retry_after("99999999") == 86_400
    for bad in (None, "", "soon", "-5", "1.5e9"):
        assert parse_retry_after(bad) is None
