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

import re
from collections.abc import Sequence
from dataclasses import dataclass

from bastion.addresses import Network, canonical_network, parse_address
from bastion.errors import BlockRefused, ServiceUnavailable
from bastion.invalidation import Watched
from bastion.ratelimit.lockout import Caller, explain, lockout_risks
from bastion.ratelimit.service import MAX_LISTED_BLOCKS, STORAGE_ERRORS, RateLimiter
from bastion.ratelimit.storage.base import Block

REFRESH_ERRORS: tuple[type[BaseException], ...] = (*STORAGE_ERRORS, ServiceUnavailable)
# A block "without expiry" still needs an end for the store: ten years.
PERMANENT_SECONDS = 10 * 365 * 24 * 3600
# Ids of API keys and users.
_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


def normalize(kind: str, value: str) -> str:
    """The canonical identity for a block; ValueError for a value that is not of its kind.

    Addresses and networks are stored in one form, so any spelling places, matches and lifts the
    same block: ``::ffff:127.0.0.2`` is ``ip:127.0.0.2``; ``2001:db8::5/64`` is
    ``cidr:2001:db8::/64``; a one-address network is that address. An ``ip`` value may also be an
    IPv6 network: that is how an IPv6 client is counted (``ip:2001:db8:1:2::/64``, see
    RATE_LIMIT_IPV6_PREFIX), so automatic blocks on IPv6 clients are lifted by that value.
    """
    if kind == "ip":
        if "/" in value:
            network = canonical_network(value)
            if network.version != 6:
                raise ValueError("an IPv4 ip block is one address")
            return f"ip:{network}"
        address = parse_address(value)
        if address is None:
            raise ValueError("not an IP address")
        return f"ip:{address}"
    if kind == "cidr":
        network = canonical_network(value)
        if network.num_addresses == 1:
            return f"ip:{network.network_address}"
        return f"cidr:{network}"
    if kind in ("key", "user"):
        if not _ID.fullmatch(value):
            raise ValueError("not an id")
        return f"{kind}:{value}"
    raise ValueError("not a kind of block")


@dataclass(frozen=True, slots=True)
class NetworkBlock:
    network: Network
    until: float


class Blocklist:
    """Places, lifts and checks blocks; keeps every instance's network cache in step."""

    def __init__(self, limiter: RateLimiter, version: Watched, *, protected: Sequence[Network] = ()) -> None:
        self.limiter = limiter
        self.version = version
        # The trusted proxies: blocking one shuts out every client behind it.
        self.protected = tuple(protected)
        self._networks: tuple[NetworkBlock, ...] = ()
        self._loaded = False

    async def block(
        self,
        identity: str,
        *,
        seconds: float,
        reason: str,
        actor: str | None,
        request_id: str | None,
        caller: Caller | None = None,
        force: bool = False,
    ) -> Block:
        """Place a block on a canonical identity (see ``normalize``).

        With a ``caller``, a block that could lock them out (``lockout_risks``) raises
        ``BlockRefused`` unless ``force``; refused and forced blocks are both announced (audited).
        """
        risks = lockout_risks(identity, caller, self.protected) if caller is not None else ()
        if risks and not force:
            await self.limiter.refuse_block(
                identity, reason=reason, risks=risks, actor=actor, request_id=request_id
            )
            raise BlockRefused(explain(risks), risks)
        placed = await self.limiter.block(
            identity, seconds=seconds, reason=reason, actor=actor, request_id=request_id, forced=risks
        )
        if placed.kind == "cidr":
            await self._changed()
        return placed

    async def unblock(self, identity: str, *, actor: str | None, request_id: str | None) -> bool:
        lifted = await self.limiter.unblock(identity, actor=actor, request_id=request_id)
        if lifted and identity.startswith("cidr:"):
            await self._changed()
        return lifted

    async def list(self, limit: int = MAX_LISTED_BLOCKS) -> list[Block]:
        return await self.limiter.list_blocks(limit)

    async def _changed(self) -> None:
        await self.version.bump()
        await self._reload()

    async def _reload(self) -> None:
        blocks = await self.limiter.list_blocks(MAX_LISTED_BLOCKS, kind="cidr")
        networks: list[NetworkBlock] = []
        for block in blocks:
            try:
                networks.append(NetworkBlock(canonical_network(block.value), block.until))
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
        address = parse_address(ip)
        if address is None:
            return False
        now = self.limiter.clock()
        return any(entry.until > now and address in entry.network for entry in networks)
