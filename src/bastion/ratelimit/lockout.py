# SPDX-License-Identifier: Apache-2.0
"""Blocks that would lock the operator out, recognized before they are placed.

A block of ``0.0.0.0/0``, of the loopback, of the admin's own address or of a trusted proxy shuts
out the admin who placed it (and, through the proxy, everyone): the admin API then answers them
403 and only the command line (``bastion blocks lift``) can undo it. Such blocks are refused
unless the caller insists (``"force": true``), and a forced one is audited as such.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from bastion.addresses import Network, canonical_network, parse_address
from bastion.auth.principal import Principal

# Networks wider than these cover whole providers or regions; nobody means to block them by hand.
MIN_IPV4_PREFIX = 8
MIN_IPV6_PREFIX = 32
_LOOPBACKS = (ipaddress.IPv4Network("127.0.0.0/8"), ipaddress.IPv6Network("::1/128"))


class Risk(StrEnum):
    TOO_WIDE = "too_wide"
    LOOPBACK = "loopback"
    OWN_ADDRESS = "own_address"
    TRUSTED_PROXY = "trusted_proxy"
    OWN_IDENTITY = "own_identity"


_EXPLAINED = {
    Risk.TOO_WIDE: f"the network is wider than /{MIN_IPV4_PREFIX} (IPv4) or /{MIN_IPV6_PREFIX} (IPv6)",
    Risk.LOOPBACK: "it covers the loopback address, from which the server is administered",
    Risk.OWN_ADDRESS: "it covers your own address",
    Risk.TRUSTED_PROXY: "it covers a trusted proxy (TRUSTED_PROXIES), through which clients arrive",
    Risk.OWN_IDENTITY: "it is your own account or API key",
}


@dataclass(frozen=True, slots=True)
class Caller:
    """Who asks for a block: their (canonical) address and, when known, their principal."""

    ip: str | None = None
    principal: Principal | None = None


def explain(risks: Sequence[Risk]) -> str:
    return "; ".join(_EXPLAINED[risk] for risk in risks)


def _network(identity: str) -> Network | None:
    kind, _, value = identity.partition(":")
    if kind not in ("ip", "cidr"):
        return None
    try:
        return canonical_network(value)
    except ValueError:
        return None


def lockout_risks(identity: str, caller: Caller, protected: Sequence[Network] = ()) -> tuple[Risk, ...]:
    """Why blocking ``identity`` (canonical, see ``normalize``) could lock ``caller`` out; () if not.

    ``protected`` are the trusted proxies' networks.
    """
    risks: list[Risk] = []
    network = _network(identity)
    if network is not None:
        minimum = MIN_IPV4_PREFIX if network.version == 4 else MIN_IPV6_PREFIX
        if network.prefixlen < minimum:
            risks.append(Risk.TOO_WIDE)
        if any(network.overlaps(loopback) for loopback in _LOOPBACKS if loopback.version == network.version):
            risks.append(Risk.LOOPBACK)
        own = parse_address(caller.ip) if caller.ip else None
        if own is not None and own.version == network.version and own in network:
            risks.append(Risk.OWN_ADDRESS)
        if any(network.version == proxy.version and network.overlaps(proxy) for proxy in protected):
            risks.append(Risk.TRUSTED_PROXY)
    principal = caller.principal
    if principal is not None:
        own_identities = {f"user:{principal.user_id}" if principal.user_id else None}
        own_identities.add(f"key:{principal.api_key_id}" if principal.api_key_id else None)
        if identity in own_identities:
            risks.append(Risk.OWN_IDENTITY)
    return tuple(risks)
