# SPDX-License-Identifier: Apache-2.0
"""The password policy on its own."""

from __future__ import annotations

import pytest

from bastion.auth.policy import PasswordPolicy, Rule, load_common_passwords


@pytest.fixture(scope="module")
def common() -> frozenset[str]:
    return load_common_passwords()


def test_shipped_list_has_at_least_ten_thousand_common_passwords(common: frozenset[str]) -> None:
    assert len(common) >= 10_000
    assert {"123456", "password", "qwerty", "iloveyou", "dragon"} <= common
    assert all(p == p.lower() for p in common)


@pytest.mark.parametrize(
    ("password", "rules"),
    [
        ("short1!A", {Rule.TOO_SHORT}),
        ("alllowercase-9x", {Rule.NO_UPPER}),
        ("ALLUPPERCASE-9X", {Rule.NO_LOWER}),
        ("No-Digits-Here!", {Rule.NO_DIGIT}),
        ("NoSymbolsHere99", {Rule.NO_SPECIAL}),
        ("Xy7!abcdQ-rz8", {Rule.SEQUENCE}),
        ("Xy7!4321Q-rzp", {Rule.SEQUENCE}),
        ("Xy7!qwerQ-z8p", {Rule.SEQUENCE}),
        ("Xy7!aaaaQ-z8p", {Rule.REPEAT}),
        ("Password1234!", {Rule.COMMON, Rule.SEQUENCE}),
        ("Dana.Scully-7x", {Rule.CONTAINS_EMAIL}),
    ],
)
def test_seed_rules_report_every_failure(password: str, rules: set[Rule], common: frozenset[str]) -> None:
    result = PasswordPolicy("seed", common_passwords=common).check(password, email="dana.scully@example.com")
    assert set(result.failures) == rules
    assert not result.ok and len(result.messages) == len(result.failures)


def test_all_failures_at_once_and_scores(common: frozenset[str]) -> None:
    policy = PasswordPolicy("seed", common_passwords=common)
    weak = policy.check("aaaa")
    assert {Rule.TOO_SHORT, Rule.NO_UPPER, Rule.NO_DIGIT, Rule.NO_SPECIAL, Rule.REPEAT} <= set(weak.failures)
    assert weak.score == 0
    assert policy.check("password").score == 0
    good = policy.check("Tr0ub4dor&3-Horse")
    strong = policy.check("correct Horse battery staple 9!")
    assert good.ok and strong.ok
    assert 0 <= good.score <= strong.score == 5


def test_long_passwords_are_fine_until_the_cap(common: frozenset[str]) -> None:
    policy = PasswordPolicy("seed", common_passwords=common)
    assert policy.check("Zq7!" + "mK3#pL9$" * 30).ok  # 244 characters
    assert Rule.TOO_LONG in policy.check("Zq7!" + "x" * 2000).failures


def test_nist_policy_checks_length_and_common_passwords_only(common: frozenset[str]) -> None:
    policy = PasswordPolicy("nist", common_passwords=common)
    assert policy.min_length == 15
    assert policy.check("just lowercase words here").ok  # no composition rules
    assert set(policy.check("short words").failures) == {Rule.TOO_SHORT}
    assert (
        Rule.COMMON in policy.check("password1234567").failures
        or Rule.COMMON in policy.check("123456789012345").failures
    )


def test_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="seed"):
        PasswordPolicy("lax", common_passwords=frozenset())
