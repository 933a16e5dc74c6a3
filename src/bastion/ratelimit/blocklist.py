# SPDX-License-Identifier: Apache-2.0
"""The admin blocklist: addresses, networks (CIDR), API keys and users, over the limiter's blocks.

There is one block store (the limiter storage: Redis when configured, shared by every
instance); this adds network blocks and a cheap way to check them. Exact identities
(``ip:``, ``key:``, ``user:``) are single lookups. A network cannot be looked up by address, so
each instance keeps the (small) list of network blocks in memory and reloads it only when the
shared blocklist version moves; an instance reads that version at most every
INVALIDATION_POLL_SECONDS. Per request that is a walk over a handful of networks, never a scan of
the store.

Whether an API key or a user is blocked is asked on every authenticated request; the answer is
kept in memory for at most ``ANSWER_SECONDS`` (and never past the block's own end). Every block
placed or lifted on a key or a user, by an administrator or automatically (violations, failed
authentications), moves the shared blocklist version through the limiter's notices: this instance
forgets its answers at once, every other within INVALIDATION_POLL_SECONDS. A block written to the
store by some other road is seen within ``ANSWER_SECONDS``.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bastion.addresses import Network, canonical_network, parse_address
from bastion.errors import BlockRefused, ServiceUnavailable
from bastion.invalidation import Watched
from bastion.ratelimit.lockout import Caller, explain, lockout_risks
from bastion.ratelimit.service import (
    MAX_LISTED_BLOCKS,
    STORAGE_ERRORS,
    BlockListener,
    BlockNotice,
    RateLimiter,
)
from bastion.ratelimit.storage.base import Block

REFRESH_ERRORS: tuple[type[BaseException], ...] = (*STORAGE_ERRORS, ServiceUnavailable)
# A block "without expiry" still needs an end for the store: ten years.
PERMANENT_SECONDS = 10 * 365 * 24 * 3600
# Ids of API keys and users.
_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
# How long an answer to "is this key or user blocked?" is kept, and how many are kept.
ANSWER_SECONDS = 1.0
MAX_ANSWERS = 50_000
PRINCIPAL_KINDS = ("key:", "user:")
REFRESH_LOG_SECONDS = 10.0


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

    def __init__(
        self,
        limiter: RateLimiter,
        version: Watched,
        *,
        protected: Sequence[Network] = (),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limiter = limiter
        self.version = version
        # The trusted proxies: blocking one shuts out every client behind it.
        self.protected = tuple(protected)
        self.monotonic = monotonic
        self._networks: tuple[NetworkBlock, ...] = ()
        self._loaded = False
        # Answers for the key and user identities of a request: (kept until, on this process's
        # monotonic clock; the end of the block found, on the limiter's clock, or None: not blocked).
        self._answers: dict[tuple[str, ...], tuple[float, float | None]] = {}
        self._generation = 0
        self._refresh_failures = 0
        self._refresh_logged = -math.inf

    def listener(self, inner: BlockListener | None = None) -> BlockListener:
        """The limiter's block listener: ``inner`` (the audit), after telling every instance that
        a key's or a user's block was placed or lifted."""

        async def notice(event: BlockNotice) -> None:
            if event.action != "refused" and event.identity.startswith(PRINCIPAL_KINDS):
                self._forget()
                try:
                    await self.version.bump()
                except REFRESH_ERRORS as exc:  # the others see it within ANSWER_SECONDS
                    self.limiter.log.warning("blocklist_version_not_moved", error=type(exc).__name__)
            if inner is not None:
                await inner(event)

        return notice

    def _forget(self) -> None:
        self._answers.clear()
        self._generation += 1

    def _due(self) -> bool:
        """Whether ``_sync`` has anything to do now (most requests: no, and no coroutine)."""
        return not self._loaded or self.version.due()

    async def _sync(self) -> None:
        """Follow the shared version: forget the answers and reload the networks when it moved."""
        if await self.version.changed() or not self._loaded:
            self._forget()
            await self._reload()

    async def principal_blocked(self, identities: Sequence[str]) -> bool:
        """Whether any of a request's key and user identities is blocked (see the module notes).

        When the shared version cannot be read, the store is asked directly, under the limiter's
        fail mode (closed: ``ServiceUnavailable``)."""
        try:
            if self._due():
                await self._sync()
        except REFRESH_ERRORS:
            self._forget()
            return await self.limiter.blocked_any(identities) is not None
        key = tuple(identities)
        now = self.monotonic()
        known = self._answers.get(key)
        # A kept block counts until its own end, read on the limiter's clock like the store's.
        if known is not None and now < known[0] and (known[1] is None or self.limiter.clock() < known[1]):
            return known[1] is not None
        generation = self._generation
        block = await self.limiter.blocked_any(identities)
        if generation == self._generation:  # nothing was placed or lifted meanwhile
            if len(self._answers) >= MAX_ANSWERS:
                self._answers.clear()
            self._answers[key] = (now + ANSWER_SECONDS, block.until if block is not None else None)
        return block is not None

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
            if self._due():
                await self._sync()
        except REFRESH_ERRORS as exc:
            # The shared store is unreachable: keep enforcing the last networks seen. Said once
            # per REFRESH_LOG_SECONDS with how often it failed meanwhile, not on every request.
            self._refresh_failures += 1
            now = self.monotonic()
            if now - self._refresh_logged >= REFRESH_LOG_SECONDS:
                self.limiter.log.warning(
                    "blocklist_refresh_failed", error=type(exc).__name__, failures=self._refresh_failures
                )
                self._refresh_logged, self._refresh_failures = now, 0
        networks = self._networks
        if not networks or ip is None:
            return False
        address = parse_address(ip)
        if address is None:
            return False
        now = self.limiter.clock()
        return any(entry.until > now and address in entry.network for entry in networks)
