# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

import pytest

from bastion.llm.breaker import BreakerConfig, Snapshot, State, acquire, record_failure, record_success

CONFIG = BreakerConfig(failure_threshold=3, recovery_seconds=10, half_open_probes=1)


def fail(snapshot: Snapshot, times: int, now: float = 0.0) -> Snapshot:
    for _ in range(times):
        snapshot = record_failure(snapshot, CONFIG, now)
    return snapshot


def test_opens_after_threshold_consecutive_failures() -> None:
    snapshot = fail(Snapshot(), 2)
    assert snapshot.state is State.CLOSED
    assert acquire(snapshot, CONFIG, 0)[0].allowed
    snapshot = fail(snapshot, 1, now=5)
    assert snapshot.state is State.OPEN
    decision, _ = acquire(snapshot, CONFIG, 7)
    assert not decision.allowed and decision.retry_after == pytest.approx(8)


def test_success_resets_the_count() -> None:
    snapshot = record_success(fail(Snapshot(), 2), CONFIG, 0)
    assert fail(snapshot, 2).state is State.CLOSED


def test_half_open_allows_one_probe_then_closes_on_success() -> None:
    snapshot = fail(Snapshot(), 3, now=0)
    decision, snapshot = acquire(snapshot, CONFIG, 10)
    assert decision.allowed and snapshot.state is State.HALF_OPEN
    second, snapshot = acquire(snapshot, CONFIG, 10.5)
    assert not second.allowed
    snapshot = record_success(snapshot, CONFIG, 11)
    assert snapshot.state is State.CLOSED


def test_failed_probe_reopens_for_a_full_period() -> None:
    snapshot = fail(Snapshot(), 3, now=0)
    _, snapshot = acquire(snapshot, CONFIG, 12)
    snapshot = record_failure(snapshot, CONFIG, 12)
    assert snapshot.state is State.OPEN
    decision, _ = acquire(snapshot, CONFIG, 13)
    assert not decision.allowed and decision.retry_after == pytest.approx(9)


def test_lost_probe_does_not_stick_half_open() -> None:
    snapshot = fail(Snapshot(), 3, now=0)
    _, snapshot = acquire(snapshot, CONFIG, 10)  # the probe's caller dies and never reports
    assert not acquire(snapshot, CONFIG, 15)[0].allowed
    decision, snapshot = acquire(snapshot, CONFIG, 20)
    assert decision.allowed and snapshot.state is State.HALF_OPEN


def test_late_failure_while_open_does_not_extend_it() -> None:
    snapshot = fail(Snapshot(), 3, now=0)
    assert record_failure(snapshot, CONFIG, 9) == snapshot


def test_config_is_validated() -> None:
    with pytest.raises(ValueError):
        BreakerConfig(failure_threshold=0)
