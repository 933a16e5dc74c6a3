# SPDX-License-Identifier: Apache-2.0
"""The policy table from settings, and whose identity each policy counts against."""

from __future__ import annotations

import pytest

from bastion.auth.principal import AuthMethod, Principal, Role
from bastion.ratelimit.algorithm import Rate
from bastion.ratelimit.policies import Policy, Scope, email_identity, identity_for, policy_table
from bastion.settings import ConfigurationError, load_settings
from tests.conftest import SettingsFactory

USER = Principal(subject="u1", role=Role.USER, method=AuthMethod.JWT, user_id="u1")
KEY = Principal(subject="k1", role=Role.USER, method=AuthMethod.API_KEY, api_key_id="k1", user_id="u1")


def test_the_documented_defaults(make_settings: SettingsFactory) -> None:
    table = policy_table(make_settings())
    rates = {policy: (rule.rate, rule.scope) for policy, rule in table.items()}
    assert rates == {
        Policy.GLOBAL: (Rate(100, 60.0, 100), Scope.CLIENT),
        Policy.REGISTER: (Rate(3, 60.0, 3), Scope.IP),
        Policy.LOGIN: (Rate(5, 60.0, 3), Scope.IP),
        Policy.REFRESH: (Rate(10, 60.0, 5), Scope.IP),
        Policy.PASSWORD_RESET: (Rate(3, 60.0, 3), Scope.IP),
        Policy.PASSWORD_RESET_EMAIL: (Rate(3, 60.0, 3), Scope.EMAIL),
        Policy.PASSWORD_CHANGE: (Rate(5, 60.0, 3), Scope.USER),
        Policy.SESSIONS_CREATE: (Rate(20, 3600.0, 20), Scope.KEY),
        Policy.MESSAGES: (Rate(30, 60.0, 10), Scope.USER),
        Policy.MESSAGES_HOURLY: (Rate(100, 3600.0, 100), Scope.KEY),
        Policy.MESSAGES_USER_HOURLY: (Rate(100, 3600.0, 100), Scope.USER),
        Policy.VOICE: (Rate(100, 3600.0, 100), Scope.KEY),
        Policy.JOURNAL_CREATE: (Rate(20, 60.0, 5), Scope.USER),
        Policy.JOURNAL_READ: (Rate(60, 60.0, 10), Scope.USER),
        Policy.EXPORT: (Rate(3, 3600.0, 3), Scope.USER),
    }


def test_every_value_is_overridable(make_settings: SettingsFactory) -> None:
    settings = make_settings(
        RATE_LIMIT_PER_MINUTE=7,
        RATE_LIMIT_GLOBAL_BURST=2,
        RATE_LIMIT_LOGIN="10/hour;burst=4",
        RATE_LIMIT_MESSAGES_PER_HOUR=40,
    )
    table = policy_table(settings)
    assert table[Policy.GLOBAL].rate == Rate(7, 60.0, 2)
    assert table[Policy.LOGIN].rate == Rate(10, 3600.0, 4)
    assert table[Policy.MESSAGES_HOURLY].rate == Rate(40, 3600.0, 40)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RATE_LIMIT_LOGIN", "lots"),
        ("RATE_LIMIT_LOGIN", "5/minute;burst="),
        ("RATE_LIMIT_LOGIN", "0/minute"),
        # IPv6 clients are counted per prefix of 32 to 128 bits.
        ("RATE_LIMIT_IPV6_PREFIX", "31"),
        ("RATE_LIMIT_IPV6_PREFIX", "129"),
        ("RATE_LIMIT_IPV6_PREFIX", "sixty-four"),
    ],
)
def test_a_malformed_rate_setting_stops_startup(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv("ENVIRONMENT", "test")
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as error:
        load_settings(_env_file=None)
    assert name in error.value.render()


@pytest.mark.parametrize(
    ("scope", "principal", "expected"),
    [
        (Scope.IP, KEY, "ip:192.0.2.1"),
        (Scope.KEY, KEY, "key:k1"),
        (Scope.KEY, USER, "user:u1"),
        (Scope.KEY, None, "ip:192.0.2.1"),
        (Scope.USER, KEY, "user:u1"),
        (Scope.USER, USER, "user:u1"),
        (Scope.USER, Principal("k", Role.USER, AuthMethod.API_KEY, api_key_id="k2"), "key:k2"),
        (Scope.CLIENT, KEY, "key:k1"),
        (Scope.CLIENT, None, "ip:192.0.2.1"),
        (Scope.GLOBAL, KEY, "global"),
        (Scope.USER, Principal("svc", Role.SERVICE, AuthMethod.MTLS), "ip:192.0.2.1"),
    ],
)
def test_identities(scope: Scope, principal: Principal | None, expected: str) -> None:
    assert identity_for(scope, principal, "192.0.2.1") == expected


def test_an_unknown_address_still_has_one_shared_identity() -> None:
    assert identity_for(Scope.IP, None, None) == "ip:unknown"


def test_email_identities_are_normalized_and_never_hold_the_address() -> None:
    identity = email_identity(" Alice@Example.org ")
    assert identity == email_identity("alice@example.org")
    assert identity.startswith("email:")
    assert "alice" not in identity and "example" not in identity


@pytest.mark.parametrize(
    ("ip", "prefix", "expected"),
    [
        ("::ffff:192.0.2.1", 64, "ip:192.0.2.1"),
        ("2001:db8:1:2::5", 64, "ip:2001:db8:1:2::/64"),
        ("2001:db8:1:2::6", 64, "ip:2001:db8:1:2::/64"),
        ("2001:db8:1:2::5", 48, "ip:2001:db8:1::/48"),
        ("2001:db8:1:2::5", 128, "ip:2001:db8:1:2::5"),
    ],
)
def test_ipv6_clients_are_counted_by_their_prefix(ip: str, prefix: int, expected: str) -> None:
    assert identity_for(Scope.IP, None, ip, prefix) == expected
    assert identity_for(Scope.CLIENT, KEY, ip, prefix) == "key:k1"


def test_the_ipv6_prefix_is_a_setting(make_settings: SettingsFactory) -> None:
    assert make_settings().rate_limit_ipv6_prefix == 64
    assert make_settings(RATE_LIMIT_IPV6_PREFIX=48).rate_limit_ipv6_prefix == 48
