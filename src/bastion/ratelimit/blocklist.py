# SPDX-License-Identifier: Apache-2.0
"""The admin blocklist: addresses, networks (CIDR), API keys and users, over the limiter's blocks.

There is one block store (the limiter storage: Redis when configured, shared by every
instance); this adds network blocks and a cheap way to check them. Exact identities
(``ip:``, ``key:``, ``user:``) are single lookups. A network cannot be looked up by address, so
each instance keeps the (small) list of network blocks in memory and reloads it only when the
shared blocklist version moves; an instance reads that version at most every
INVALIDATION_POLL_SECONDS. Per request that is a walk over a handful of networks, never a scan of
the store.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from bastion.errors import ServiceUnavailable
from bastion.invalidation import Watched
from bastion.ratelimit.service import MAX_LISTED_BLOCKS, STORAGE_ERRORS, RateLimiter
from bastion.ratelimit.storage.base import Block

REFRESH_ERRORS: tuple[type[BaseException], ...] = (*STORAGE_ERRORS, ServiceUnavailable)
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# A block "without expiry" still needs an end for the store: ten years.
PERMANENT_SECONDS = 10 * 365 * 24 * 3600


def normalize(kind: str, value: str) -> str:
    """The canonical identity for a block; ValueError for an address or network that is not one."""
    if kind == "ip":
        return f"ip:{ipaddress.ip_address(value)}"
    if kind == "cidr":
        network = ipaddress.ip_network(value, strict=False)
        if network.num_addresses == 1:
            return f"ip:{network.network_address}"
        return f"cidr:{network}"
    return f"{kind}:{value}"


@dataclass(frozen=True, slots=True)
class NetworkBlock:
    network: Network
    until: float


class Blocklist:
    """Places, lifts and checks blocks; keeps every instance's network cache in step."""

    def __init__(self, limiter: RateLimiter, version: Watched) -> None:
        self.limiter = limiter
        self.version = version
        self._networks: tuple[NetworkBlock, ...] = ()
        self._loaded = False

    async def block(
        self, identity: str, *, seconds: float, reason: str, actor: str | None, request_id: str | None
    ) -> Block:
        placed = await self.limiter.block(
            identity, seconds=seconds, reason=reason, actor=actor, request_id=request_id
        )
        if placed.kind == "cidr":
            await self._changed()
        return placed

    async def unblock(self, identity: str, *, actor: str | None, request_id: str | None) -> bool:
        lifted = await self.limiter.unblock(identity, actor=actor, request_id=request_id)
        if lifted and identity.startswith("cidr:"):
            await self._changed()
        return lifted

    async def list(self) -> list[Block]:
        return await self.limiter.list_blocks()

    async def _changed(self) -> None:
        await self.version.bump()
        await self._reload()

    async def _reload(self) -> None:
        blocks = await self.limiter.list_blocks(MAX_LISTED_BLOCKS, kind="cidr")
        networks: list[NetworkBlock] = []
        for block in blocks:
            try:
                networks.append(NetworkBlock(ipaddress.ip_network(block.value, strict=False), block.until))
            except ValueError:  # never written by this code; ignored rather than trusted
                continue
        self._networks = tuple(networks)
        self._loaded = True

    async def network_blocked(self, ip: str | None) -> bool:
        """Whether ``ip`` falls in a blocked network (in-memory; one GET per poll interval)."""
        try:
            if await self.version.changed() or not self._loaded:
                await self._reload()
        except REFRESH_ERRORS as exc:
            # The shared store is unreachable: keep enforcing the last networks seen.
            self.limiter.log.warning("blocklist_refresh_failed", error=type(exc).__name__)
        networks = self._networks
        if not networks or ip is None:
            return False
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        now = self.limiter.clock()
        return any(entry.until > now and address in entry.network for entry in networks)
