# SPDX-License-Identifier: Apache-2.0
"""Who the client is: the peer address, or X-Forwarded-For only when the peer is a trusted proxy."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.types import Scope

from bastion.addresses import Network, canonical_address, parse_address, parse_networks

__all__ = ["Network", "client_ip", "is_loopback", "is_trusted", "parse_networks"]


def is_trusted(value: str | None, trusted: Sequence[Network]) -> bool:
    address = parse_address(value) if value else None
    return address is not None and any(address in network for network in trusted)


def client_ip(scope: Scope, trusted: Sequence[Network]) -> str | None:
    """The client address for limits, blocks and logs, in canonical form (IPv4-mapped as IPv4).

    X-Forwarded-For is read right to left and the first address that is not a trusted proxy wins, so
    a client cannot prepend a forged address: only hops our own proxies appended are believed.
    When ``ProxyHeaders`` already resolved the client (``scope["state"]["client_ip"]``), that answer
    is used, so the chain is walked once per request and every layer agrees on who the client is.
    """
    resolved = (scope.get("state") or {}).get("client_ip")
    if isinstance(resolved, str):
        return resolved
    peer = scope.get("client")
    peer_host: str | None = canonical_address(peer[0]) if peer and peer[0] else None
    if not trusted or not is_trusted(peer_host, trusted):
        return peer_host
    forwarded: list[str] = []
    for name, value in scope.get("headers", ()):
        if name == b"x-forwarded-for":
            forwarded.extend(part.strip() for part in value.decode("latin-1").split(","))
    for hop in reversed(forwarded):
        address = parse_address(hop)
        if address is None:
            return peer_host  # a malformed chain is not believed at all
        if not any(address in network for network in trusted):
            return str(address)
    return peer_host


def is_loopback(value: str | None) -> bool:
    address = parse_address(value) if value else None
    return address is not None and address.is_loopback
