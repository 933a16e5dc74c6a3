# SPDX-License-Identifier: Apache-2.0
"""GCRA, rates and the escalation curve as pure functions."""

from __future__ import annotations

import pytest

from bastion.ratelimit.algorithm import Rate, gcra
from bastion.ratelimit.escalation import Escalation, penalty


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5/minute;burst=3", Rate(5, 60.0, 3)),
        ("3/minute", Rate(3, 60.0, 3)),
        (" 100 / hour ; burst = 10 ", Rate(100, 3600.0, 10)),
        ("1/second", Rate(1, 1.0, 1)),
        ("20/day", Rate(20, 86400.0, 20)),
    ],
)
def test_rates_parse(text: str, expected: Rate) -> None:
    assert Rate.parse(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "5", "5/fortnight", "0/minute", "-1/minute", "5/minute;burst=0", "5/minute;burst", "5/minute;x=1"],
)
def test_malformed_rates_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        Rate.parse(text)


def test_a_rate_knows_its_interval_and_prints_itself() -> None:
    rate = Rate.parse("5/minute;burst=3")
    assert rate.interval == 12.0
    assert rate.tolerance == 36.0
    assert str(rate) == "5/minute;burst=3"
    assert Rate.parse(str(rate)) == rate


def test_gcra_admits_a_burst_then_spaces_requests() -> None:
    rate = Rate.parse("5/minute;burst=3")
    tat = None
    remaining = []
    for _ in range(3):
        step = gcra(tat, 0.0, rate.interval, rate.tolerance)
        assert step.allowed
        tat = step.tat
        remaining.append(step.remaining)
    assert remaining == [2, 1, 0]
    denied = gcra(tat, 0.0, rate.interval, rate.tolerance)
    assert not denied.allowed
    assert denied.tat == tat  # a refusal spends nothing
    assert denied.retry_after == 12.0
    assert gcra(tat, 12.0, rate.interval, rate.tolerance).allowed


def test_a_stale_tat_counts_as_a_full_bucket() -> None:
    step = gcra(5.0, 100.0, 1.0, 3.0)
    assert step.allowed and step.remaining == 2 and step.reset_after == 1.0


def test_penalties_double_up_to_the_cap_and_never_undercut_the_bucket() -> None:
    assert [penalty(n, 10.0, 100.0) for n in range(1, 6)] == [10.0, 20.0, 40.0, 80.0, 100.0]
    assert penalty(1, 500.0, 100.0) == 500.0
    assert penalty(10_000, 1.0, 60.0) == 60.0  # no overflow for a very persistent offender
    assert Escalation(penalty_cap=30.0).penalty(3, 10.0) == 30.0
