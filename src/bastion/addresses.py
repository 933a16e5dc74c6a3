# SPDX-License-Identifier: Apache-2.0
"""Client addresses in one canonical form, and the network an IPv6 client is counted by.

A dual-stack listener reports IPv4 clients as IPv4-mapped IPv6 addresses (``::ffff:203.0.113.7``).
Unless every layer sees them as ``203.0.113.7``, a block or a limit placed on the IPv4 address
misses them, and the audit trail shows two spellings of one client. The client address is made
canonical once, where it is resolved (``bastion.web.proxies``); blocks are stored canonical too.

An IPv6 client usually holds a whole /64 (or more): counting each of its addresses on its own
would hand it 2**64 allowances, so rate limits and automatic blocks count the prefix network
(RATE_LIMIT_IPV6_PREFIX), while audit and logs keep the full address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
DEFAULT_IPV6_PREFIX = 64
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def parse_address(value: str) -> Address | None:
    """The address ``value`` names, IPv4-mapped IPv6 as IPv4; None when it is not an address."""
    try:
        address = ipaddress.ip_address(value.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def canonical_address(value: str) -> str:
    """``value`` in canonical text form; a value that is not an IP address is returned unchanged."""
    if ":" not in value:
        # A dotted quad from the server's socket is already canonical (and a name such as a test
        # client's is no address): only IPv6 text has several spellings.
        return value
    address = parse_address(value)
    return str(address) if address is not None else value


def canonical_network(value: str) -> Network:
    """The network ``value`` names, host bits cleared; IPv4-mapped IPv6 networks as IPv4.

    Raises ValueError when ``value`` is not a network.
    """
    network = ipaddress.ip_network(value.strip(), strict=False)
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96 and network.subnet_of(_MAPPED):
        mapped = network.network_address.ipv4_mapped
        if mapped is not None:
            return ipaddress.IPv4Network((mapped, network.prefixlen - 96))
    return network


def parse_networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    return tuple(canonical_network(cidr) for cidr in cidrs if cidr.strip())


def counted_as(ip: str, ipv6_prefix: int = DEFAULT_IPV6_PREFIX) -> str:
    """What limits and automatic blocks count a client at ``ip`` as.

    An IPv4 address is itself; an IPv6 address is its ``/ipv6_prefix`` network (``2001:db8:1:2::/64``),
    or itself when the prefix is 128. A value that is not an address is returned unchanged.
    """
    if ":" not in ip:
        return ip
    address = parse_address(ip)
    if address is None:
        return ip
    if address.version == 4 or ipv6_prefix >= 128:
        return str(address)
    return str(ipaddress.IPv6Network((address, ipv6_prefix), strict=False))
