# SPDX-License-Identifier: Apache-2.0
"""Blocks that could lock out their own administrators are recognized before they are placed."""

from __future__ import annotations

import pytest

from bastion.addresses import parse_networks
from bastion.auth.principal import AuthMethod, Principal, Role
from bastion.ratelimit.blocklist import normalize
from bastion.ratelimit.lockout import Caller, Risk, explain, lockout_risks

ADMIN = Principal(subject="a1", role=Role.ADMIN, method=AuthMethod.JWT, user_id="a1")
KEYED = Principal(subject="k1", role=Role.ADMIN, method=AuthMethod.API_KEY, api_key_id="k1", user_id="a1")
CALLER = Caller(ip="198.51.100.4", principal=ADMIN)
PROXIES = parse_networks(["10.0.0.0/24", "fd00::1"])


@pytest.mark.parametrize(
    ("kind", "value", "risks"),
    [
        ("cidr", "0.0.0.0/0", {Risk.TOO_WIDE, Risk.LOOPBACK, Risk.OWN_ADDRESS, Risk.TRUSTED_PROXY}),
        ("cidr", "::/0", {Risk.TOO_WIDE, Risk.LOOPBACK, Risk.TRUSTED_PROXY}),
        ("cidr", "64.0.0.0/7", {Risk.TOO_WIDE}),
        ("cidr", "2001:db8::/31", {Risk.TOO_WIDE}),
        ("ip", "127.0.0.1", {Risk.LOOPBACK}),
        ("ip", "::ffff:127.0.0.2", {Risk.LOOPBACK}),
        ("ip", "::1", {Risk.LOOPBACK}),
        ("cidr", "127.0.0.0/16", {Risk.LOOPBACK}),
        ("ip", "198.51.100.4", {Risk.OWN_ADDRESS}),
        ("cidr", "198.51.100.0/24", {Risk.OWN_ADDRESS}),
        ("ip", "10.0.0.9", {Risk.TRUSTED_PROXY}),
        ("cidr", "10.0.0.0/8", {Risk.TRUSTED_PROXY}),
        ("cidr", "fd00::/64", {Risk.TRUSTED_PROXY}),
        ("user", "a1", {Risk.OWN_IDENTITY}),
        # Nothing the operator stands behind.
        ("cidr", "203.0.113.0/24", set()),
        ("cidr", "64.0.0.0/8", set()),
        ("cidr", "2001:db8::/32", set()),
        ("ip", "2001:db8::1", set()),
        ("user", "someone-else", set()),
        ("key", "k1", set()),
    ],
)
def test_lockout_risks(kind: str, value: str, risks: set[Risk]) -> None:
    assert set(lockout_risks(normalize(kind, value), CALLER, PROXIES)) == risks


def test_a_key_cannot_block_itself_unnoticed() -> None:
    assert lockout_risks("key:k1", Caller(ip=None, principal=KEYED)) == (Risk.OWN_IDENTITY,)
    anonymous_admin = Principal(subject="s", role=Role.ADMIN, method=AuthMethod.JWT)
    assert lockout_risks("user:None", Caller(ip=None, principal=anonymous_admin)) == ()


def test_the_explanation_names_every_reason() -> None:
    text = explain((Risk.TOO_WIDE, Risk.OWN_ADDRESS))
    assert "wider than /8" in text and "your own address" in text
