# SPDX-License-Identifier: Apache-2.0
"""The rate limiter: policies, escalation and blocks over a storage, with an explicit fail mode.

When the shared storage (Redis) cannot answer, the choice is the operator's, never an accident
(``bastion.failover``):

* ``closed`` (the production default): the caller gets ``ServiceUnavailable`` (503 with
  ``retry_after``), because admitting unlimited traffic would defeat the limits.
* ``open``: decisions fall back to an in-process storage, a warning is logged and the fallback is
  counted (``stats``), so traffic keeps flowing with per-instance limits.

After a failure the shared storage is skipped for ``retry_interval`` seconds, so an outage costs one
timeout per interval rather than one per request.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

from bastion.addresses import DEFAULT_IPV6_PREFIX
from bastion.failover import STORAGE_ERRORS, FailMode, Failover, fail_mode_of
from bastion.observability.logging import get_logger
from bastion.ratelimit.algorithm import Decision, Outcome, Rate
from bastion.ratelimit.escalation import Escalation
from bastion.ratelimit.policies import Policy, PolicyRule, ip_identity, policy_table
from bastion.ratelimit.storage import LimiterStorage, MemoryStorage, create_storage
from bastion.ratelimit.storage.base import (
    Admission,
    Block,
    BudgetCall,
    IdentityState,
    LimitCall,
    SlotRenewal,
)
from bastion.ratelimit.storage.memory import DecideFn
from bastion.redis_client import RedisClient
from bastion.settings import Settings

T = TypeVar("T")
Clock = Callable[[], float]
__all__ = ["STORAGE_ERRORS", "BlockNotice", "FailMode", "RateLimiter", "retry_seconds"]
BLOCK_KINDS = ("ip", "cidr", "key", "user")
MAX_LISTED_BLOCKS = 500
_NEWLY_BLOCKED = int(Outcome.NEWLY_BLOCKED)
_decision = tuple.__new__  # a Decision from a RawDecision, without NamedTuple's Python-level __new__


@dataclass(frozen=True, slots=True)
class BlockNotice:
    """A block was placed, lifted or refused; ``actor`` is the admin who asked, None when automatic."""

    action: Literal["placed", "lifted", "refused"]
    identity: str
    reason: str
    until: float | None
    actor: str | None = None
    request_id: str | None = None
    # Why the block could lock out its own administrators (``bastion.ratelimit.lockout``): the
    # reasons a forced block overrode, or a refused block's.
    risks: tuple[str, ...] = ()


BlockListener = Callable[[BlockNotice], Awaitable[None]]


def escalation_from(settings: Settings) -> Escalation:
    return Escalation(
        strike_window=float(settings.rate_limit_strike_window_seconds),
        penalty_cap=float(settings.rate_limit_penalty_cap_seconds),
        violation_window=float(settings.rate_limit_block_violations_window_seconds),
        violation_threshold=settings.rate_limit_block_violations,
        auth_failure_window=float(settings.rate_limit_block_auth_failures_window_seconds),
        auth_failure_threshold=settings.rate_limit_block_auth_failures,
        block_seconds=float(settings.rate_limit_block_seconds),
    )


class RateLimiter:
    """Admission decisions for every policy, plus blocks, for one app."""

    def __init__(
        self,
        *,
        storage: LimiterStorage,
        policies: Mapping[Policy, PolicyRule],
        escalation: Escalation | None = None,
        clock: Clock = time.time,
        fail_mode: FailMode = "closed",
        fallback: LimiterStorage | None = None,
        on_block: BlockListener | None = None,
        retry_interval: float = 1.0,
        ipv6_prefix: int = DEFAULT_IPV6_PREFIX,
    ) -> None:
        self.storage = storage
        self.ipv6_prefix = ipv6_prefix
        self.rules = dict(policies)
        self.escalation = escalation or Escalation()
        self.fallback = fallback if fallback is not None else MemoryStorage()
        self.on_block = on_block
        self.failover: Failover[LimiterStorage] = Failover(
            storage,
            self.fallback,
            mode=fail_mode,
            component="ratelimit",
            message="Rate limiting is temporarily unavailable",
            store_name=storage.name,
            retry_interval=retry_interval,
        )
        self.stats = self.failover.stats
        self.log = get_logger("bastion.ratelimit")
        # The in-process fast path: one decision function per policy with its constants and the
        # clock bound, rebuilt when the clock is replaced (``rules`` and ``escalation`` are fixed).
        self._local: dict[Policy, DecideFn] | None = None
        # ``decider(policy)``: the policy's in-process decision function, None when the storage
        # is shared (Redis: ``await hit`` instead). ``decide(identity, cost=1)`` is ``hit``
        # without the coroutine: it reads the limiter's clock, decides in process and returns a
        # ``RawDecision`` (index it: ``[0]`` is the outcome). A ``NEWLY_BLOCKED`` outcome has
        # placed a block that must still be announced, as ``hit`` does:
        # ``await announce_violation_block(identity)``. A bound ``dict.get`` (a C call, not a
        # Python frame), because the middleware looks the function up on every request.
        no_deciders: dict[Policy, DecideFn] = {}
        self.decider: Callable[[Policy], DecideFn | None] = no_deciders.get
        self.clock = clock

    @property
    def clock(self) -> Clock:
        """Where every decision reads ``now``; assigning a new clock rebinds the local deciders."""
        return self._clock

    @clock.setter
    def clock(self, clock: Clock) -> None:
        self._clock = clock
        storage = self.storage
        if isinstance(storage, MemoryStorage):
            self._local = {
                policy: storage.decider(rule.name, rule.interval, rule.tolerance, self.escalation, clock)
                for policy, rule in self.rules.items()
            }
            self.decider = self._local.get

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        redis: RedisClient | None = None,
        clock: Clock = time.time,
        on_block: BlockListener | None = None,
    ) -> RateLimiter:
        """Redis storage when the app has a Redis client, memory otherwise; the settings' fail mode."""
        storage = create_storage(
            None,
            redis=redis,
            max_keys=settings.rate_limit_max_keys,
            timeout=settings.rate_limit_redis_timeout_seconds,
        )
        return cls(
            storage=storage,
            policies=policy_table(settings),
            escalation=escalation_from(settings),
            clock=clock,
            fail_mode=fail_mode_of(settings),
            fallback=MemoryStorage(max_keys=settings.rate_limit_max_keys),
            on_block=on_block,
            ipv6_prefix=settings.rate_limit_ipv6_prefix,
        )

    @property
    def shared(self) -> bool:
        return not isinstance(self.storage, MemoryStorage)

    def rule(self, policy: Policy) -> PolicyRule:
        return self.rules[policy]

    def ip_identity(self, ip: str | None) -> str:
        """The identity a client address is limited and blocked as (IPv6: its prefix network)."""
        return ip_identity(ip, self.ipv6_prefix)

    # -- fail mode ---------------------------------------------------------------------------

    @property
    def fail_mode(self) -> FailMode:
        return self.failover.mode

    def _unavailable(self, exc: BaseException | None) -> LimiterStorage:
        """The storage to use now that the primary failed (or is being skipped), or raise."""
        return self.failover.unavailable(exc)

    async def run(self, operation: Callable[[LimiterStorage], Awaitable[T]]) -> T:
        """Run one storage operation under the fail mode (leases and quotas use this)."""
        return await self.failover.run(operation)

    # -- decisions ---------------------------------------------------------------------------

    async def hit(
        self,
        policy: Policy,
        identity: str,
        cost: int = 1,
        *,
        request_id: str | None = None,
        rate: Rate | None = None,
    ) -> Decision:
        """Spend ``cost`` of ``identity``'s allowance under ``policy``: one atomic storage call.

        ``rate`` replaces the policy's rate for this identity (an API key's own allowance); the
        bucket is the same, so changing an identity's rate never resets what it has spent.
        """
        now = self._clock()
        local = self._local
        if rate is not None:
            name, interval, tolerance = self.rules[policy].name, rate.interval, rate.tolerance
            decision = await self.run(
                lambda s: s.decide(identity, name, now, interval, tolerance, cost, self.escalation)
            )
        elif local is not None:
            # In-process storage: its per-policy decision function, constants bound (no coroutine).
            decision = _decision(Decision, local[policy](identity, cost, now))
        else:
            rule = self.rules[policy]
            storage = self.storage if not self.failover.skip_until else self.failover.current()
            try:
                decision = await storage.decide(
                    identity, rule.name, now, rule.interval, rule.tolerance, cost, self.escalation
                )
            except STORAGE_ERRORS as exc:
                if storage is self.fallback:
                    raise
                decision = await self._unavailable(exc).decide(
                    identity, rule.name, now, rule.interval, rule.tolerance, cost, self.escalation
                )
        if decision[0] == _NEWLY_BLOCKED:
            await self._violation_block(identity, now + self.escalation.block_seconds, request_id)
        return decision

    def limit_call(
        self, policy: Policy, identity: str, *, cost: int = 1, rate: Rate | None = None
    ) -> LimitCall:
        """``hit``'s arguments, for deciding with others in one ``admit``."""
        rule = self.rules[policy]
        if rate is None:
            return LimitCall(identity, rule.name, rule.interval, rule.tolerance, cost)
        return LimitCall(identity, rule.name, rate.interval, rate.tolerance, cost)

    async def admit(
        self,
        limits: Sequence[LimitCall],
        *,
        budget: BudgetCall | None = None,
        renewal: SlotRenewal | None = None,
        request_id: str | None = None,
    ) -> Admission:
        """Decide ``limits``, reserve ``budget`` and renew slots together: one atomic storage call
        per hash slot, one round trip in all (``LimiterStorage.admit``), under the fail mode."""
        now = self._clock()
        admission = await self.run(lambda s: s.admit(limits, budget, renewal, now, self.escalation))
        for call, decision in zip(limits, admission.decisions, strict=True):
            if decision is not None and decision[0] == _NEWLY_BLOCKED:
                await self._violation_block(call.identity, now + self.escalation.block_seconds, request_id)
        return admission

    async def announce_violation_block(self, identity: str, *, request_id: str | None = None) -> None:
        """Log and announce the block a ``NEWLY_BLOCKED`` decision from ``decider`` just placed."""
        # The in-process table holds the block placed with the decision's own clock reading.
        storage = self.storage
        block = storage.blocks.data.get(identity) if isinstance(storage, MemoryStorage) else None
        until = block.until if block is not None else self._clock() + self.escalation.block_seconds
        await self._violation_block(identity, until, request_id)

    async def _violation_block(self, identity: str, until: float, request_id: str | None) -> None:
        self.log.warning("ratelimit_block_placed", identity=identity, reason="violations")
        await self._notify(BlockNotice("placed", identity, "violations", until, request_id=request_id))

    async def record_auth_failure(self, identity: str, *, request_id: str | None = None) -> bool:
        """Count a failed authentication for an IP (``ip:...``) or API key (``key:...``).

        The identity code calls this on every failed login or bad key; crossing the threshold
        places a temporary block (audited). Returns True when this failure placed the block.
        """
        kind = identity.partition(":")[0]
        if kind not in ("ip", "key"):
            raise ValueError("authentication failures are counted per IP or API key, never per account")
        now = self._clock()
        placed = await self.run(lambda s: s.record_auth_failure(identity, now, self.escalation))
        if placed:
            self.log.warning("ratelimit_block_placed", identity=identity, reason="auth_failures")
            await self._notify(
                BlockNotice(
                    "placed",
                    identity,
                    "auth_failures",
                    now + self.escalation.block_seconds,
                    request_id=request_id,
                )
            )
        return placed

    async def record_failed_authentication(
        self, *, ip: str | None, api_key_id: str | None = None, request_id: str | None = None
    ) -> bool:
        """What the identity code calls on a failed login or a bad API key.

        Counts the failure against the client address and, when a key was presented and
        identified, against that key. True when this failure blocked either of them.
        """
        placed = False
        if ip is not None:
            placed = await self.record_auth_failure(self.ip_identity(ip), request_id=request_id)
        if api_key_id is not None:
            placed = await self.record_auth_failure(f"key:{api_key_id}", request_id=request_id) or placed
        return placed

    # -- blocks ------------------------------------------------------------------------------

    async def blocked(self, identity: str) -> Block | None:
        now = self._clock()
        return await self.run(lambda s: s.blocked(identity, now))

    async def blocked_any(self, identities: Sequence[str]) -> Block | None:
        """The first block in force on any of ``identities``: one storage call."""
        now = self._clock()
        return await self.run(lambda s: s.blocked_any(identities, now))

    async def block(
        self,
        identity: str,
        *,
        seconds: float,
        reason: str = "manual",
        actor: str | None = None,
        request_id: str | None = None,
        forced: Sequence[str] = (),
    ) -> Block:
        """Block an identity by hand (an admin) for ``seconds``; ``forced``: the risks overridden."""
        now = self._clock()
        placed = await self.run(lambda s: s.block(identity, now, now + seconds, reason))
        if forced:
            self.log.warning("ratelimit_block_forced", identity=identity, risks=list(forced))
        await self._notify(
            BlockNotice("placed", identity, reason, placed.until, actor, request_id, tuple(forced))
        )
        return placed

    async def refuse_block(
        self,
        identity: str,
        *,
        reason: str,
        risks: Sequence[str],
        actor: str | None = None,
        request_id: str | None = None,
    ) -> None:
        """Announce a block that was asked for and refused (it could lock out its administrators)."""
        self.log.warning("ratelimit_block_refused", identity=identity, risks=list(risks))
        await self._notify(BlockNotice("refused", identity, reason, None, actor, request_id, tuple(risks)))

    async def unblock(
        self, identity: str, *, actor: str | None = None, request_id: str | None = None
    ) -> bool:
        """Lift a block; False when none was in force."""
        lifted = await self.run(lambda s: s.unblock(identity))
        if lifted:
            await self._notify(BlockNotice("lifted", identity, "manual", None, actor, request_id))
        return lifted

    async def list_blocks(self, limit: int = MAX_LISTED_BLOCKS, *, kind: str | None = None) -> list[Block]:
        now = self._clock()
        return await self.run(lambda s: s.list_blocks(now, max(1, min(limit, MAX_LISTED_BLOCKS)), kind))

    # -- one identity's state (the admin API) ---------------------------------------------------

    async def inspect(self, identity: str) -> tuple[IdentityState, float]:
        """The identity's buckets under every policy, its escalation counters and its block,
        with the ``now`` they were read at."""
        now = self._clock()
        names = [rule.name for rule in self.rules.values()]
        return await self.run(lambda s: s.inspect(identity, names, now)), now

    async def reset(self, identity: str) -> None:
        """Refill the identity's allowance under every policy and forget its strikes, violations
        and authentication failures. A block in force stays: lift it through the blocklist."""
        names = [rule.name for rule in self.rules.values()]
        await self.run(lambda s: s.reset(identity, names))

    async def _notify(self, notice: BlockNotice) -> None:
        if self.on_block is None:
            return
        try:
            await self.on_block(notice)
        except Exception as exc:  # an audit outage must not turn a block into a 500
            self.log.error("ratelimit_block_notice_failed", error=type(exc).__name__, action=notice.action)

    async def aclose(self) -> None:
        await self.storage.aclose()
        await self.fallback.aclose()


def retry_seconds(seconds: float) -> int:
    """Whole seconds for a header: rounded up, never 0 for a wait."""
    return max(1, math.ceil(seconds))
