# SPDX-License-Identifier: Apache-2.0
"""Canonical client addresses and the network an IPv6 client is counted by."""

from __future__ import annotations

import pytest

from bastion.addresses import canonical_address, canonical_network, counted_as


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("::FFFF:cb00:7107", "203.0.113.7"),
        ("[::ffff:127.0.0.2]", "127.0.0.2"),
        ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
        ("::1", "::1"),
        ("testclient", "testclient"),  # not an address: left alone
        ("not:an:address", "not:an:address"),
    ],
)
def test_canonical_addresses(raw: str, canonical: str) -> None:
    assert canonical_address(raw) == canonical


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("2001:db8::5/64", "2001:db8::/64"),
        ("203.0.113.9/24", "203.0.113.0/24"),
        ("::ffff:127.0.0.0/104", "127.0.0.0/8"),
        ("::ffff:203.0.113.7/128", "203.0.113.7/32"),
        ("::/0", "::/0"),
    ],
)
def test_canonical_networks(raw: str, canonical: str) -> None:
    assert str(canonical_network(raw)) == canonical


def test_a_value_that_is_no_network_is_refused() -> None:
    with pytest.raises(ValueError):
        canonical_network("10.0.0.0/33")


@pytest.mark.parametrize(
    ("ip", "prefix", "counted"),
    [
        ("203.0.113.7", 64, "203.0.113.7"),
        ("::ffff:203.0.113.7", 64, "203.0.113.7"),
        ("2001:db8:1:2:3:4:5:6", 64, "2001:db8:1:2::/64"),
        ("2001:db8:1:2:3:4:5:6", 48, "2001:db8:1::/48"),
        ("2001:db8:1:2:3:4:5:6", 128, "2001:db8:1:2:3:4:5:6"),
        ("testclient", 64, "testclient"),
    ],
)
def test_what_a_client_is_counted_as(ip: str, prefix: int, counted: str) -> None:
    assert counted_as(ip, prefix) == counted
