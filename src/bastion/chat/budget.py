# SPDX-License-Identifier: Apache-2.0
"""The daily model-token budget as chat, voice and /v1 spend it: reserve before, settle after.

Every call to the model reserves its worst case first (the prompt's estimate plus the completion
cap sent upstream as ``max_tokens``; for a transcription, the audio's size priced by
TRANSCRIPTION_TOKENS_PER_MB), so a refusal comes before anything is stored or sent upstream and
concurrent calls can never together spend more than was there. When the call ends, however it
ends, the reservation is settled with what it really spent: the reported usage when the call
finished, an estimate of the prompt and of what was streamed when the client hung up or the
stream broke, nothing when the model was never reached or failed before producing anything.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import replace
from typing import Protocol

import anyio

from bastion.errors import RateLimited, ServiceUnavailable
from bastion.llm.base import ChatMessage, GenerationOptions, Usage, estimate_tokens
from bastion.observability.logging import get_logger
from bastion.ratelimit.algorithm import Decision
from bastion.ratelimit.quotas import Reservation, TokenBudget
from bastion.ratelimit.storage.base import LimitCall, Rider, SlotRenewal

MEGABYTE = 1024 * 1024


class TokenBudgetExhausted(RateLimited):
    code = "token_budget_exhausted"
    default_message = "The daily model token budget is used up"


class Meter:
    """What one model call has spent so far; the guard settles its reservation from this."""

    def __init__(self, *, options: GenerationOptions, reserved: int, base: int) -> None:
        self.options = options
        self.reserved = reserved
        # Spent as soon as the upstream has the request: the prompt, or the audio.
        self._base = base
        self._called = False
        self._produced: list[str] = []
        self._spent: int | None = None

    def calling(self) -> None:
        """The request is about to go upstream: from here on a hang-up costs the prompt."""
        self._called = True

    def produced(self, delta: str) -> None:
        """Part of the reply was delivered."""
        self._produced.append(delta)

    def finish(self, usage: Usage | None) -> None:
        """The call completed: the upstream's usage, or an estimate when it reported none."""
        self._spent = usage.total_tokens if usage is not None else self._estimate()

    def finish_at(self, tokens: int) -> None:
        """The call completed at a known price."""
        self._spent = tokens

    def _estimate(self) -> int:
        return self._base + estimate_tokens("".join(self._produced))

    def spent(self, *, failed: bool) -> int:
        if self._spent is not None:
            return self._spent
        if not self._called or (failed and not self._produced):
            return 0  # never reached the model, or it failed before giving anything
        return self._estimate()


def _caller(owner: str) -> dict[str, str | None]:
    """A budget identity (``key:<id>`` for key-owned calls, else ``user:<id>``) as the observer's
    ``api_key_id`` and ``user_id``."""
    kind, _, value = owner.partition(":")
    return {"api_key_id": value if kind == "key" else None, "user_id": value if kind == "user" else None}


class LimitGate(Protocol):
    """The route's rate limits, decided in the same round trip as a call's budget reservation.

    ``begin`` hands over the limits to decide (and marks them spent: the route does not spend
    them again if the call fails later); ``decided`` raises when one refused, else records the
    answer (the X-RateLimit-* headers). ``request_id`` goes with any block a refusal places.
    """

    request_id: str | None

    def begin(self) -> Sequence[LimitCall]: ...

    def decided(self, decisions: Sequence[Decision | None]) -> None: ...


class UsageObserver(Protocol):
    """What watches each key's token usage for anomalies (``bastion.alerts.AnomalyDetector``)."""

    def count_tokens(self, *, api_key_id: str | None, user_id: str | None, tokens: int) -> None:
        """Count the tokens off the caller's path (when no rider carried them)."""
        ...

    def token_rider(self, *, api_key_id: str | None, user_id: str | None, tokens: int) -> Rider | None:
        """``observe_tokens`` sent with the settlement in one round trip, when it can be."""
        ...


class BudgetGuard:
    """Reserves and settles the token budget around each model call.

    What each call really spent is also shown to ``observer`` (the anomaly detector), per owner.
    """

    def __init__(
        self,
        budget: TokenBudget,
        *,
        max_completion_tokens: int = 1024,
        transcription_tokens_per_mb: int = 1000,
        observer: UsageObserver | None = None,
    ) -> None:
        self.budget = budget
        self.observer = observer
        self.max_completion_tokens = max_completion_tokens
        self.transcription_tokens_per_mb = transcription_tokens_per_mb
        self.log = get_logger("bastion.chat.budget")

    def completion_cap(self, options: GenerationOptions) -> int:
        """A caller's own ``max_tokens`` below the cap is kept; none or above it becomes the cap."""
        wanted = options.max_tokens
        return self.max_completion_tokens if wanted is None else min(wanted, self.max_completion_tokens)

    def transcription_cost(self, size: int) -> int:
        """Tokens a transcription of ``size`` bytes of audio costs (at least one)."""
        return max(1, math.ceil(size * self.transcription_tokens_per_mb / MEGABYTE))

    def completion(
        self,
        owner: str,
        prompt: Sequence[ChatMessage],
        options: GenerationOptions,
        *,
        gate: LimitGate | None = None,
        renewal: SlotRenewal | None = None,
    ) -> AbstractAsyncContextManager[Meter]:
        """Meter a chat completion: reserve the prompt's estimate plus the completion cap.

        With a ``gate`` (the route's limits) and a ``renewal`` (the session's slot), all three are
        decided in one round trip (``RateLimiter.admit``); a refused limit holds no tokens.
        """
        cap = self.completion_cap(options)
        base = Usage.estimate(prompt, "").prompt_tokens
        options = replace(options, max_tokens=cap)
        return self._metered(owner, options, reserve=base + cap, base=base, gate=gate, renewal=renewal)

    def transcription(self, owner: str, size: int) -> AbstractAsyncContextManager[Meter]:
        """Meter a transcription of ``size`` bytes of audio."""
        cost = self.transcription_cost(size)
        return self._metered(owner, GenerationOptions(), reserve=cost, base=cost)

    async def _reserve(
        self, owner: str, tokens: int, gate: LimitGate | None, renewal: SlotRenewal | None
    ) -> Reservation:
        if gate is None and renewal is None:
            return await self.budget.reserve(owner, tokens)
        call, resets_at = self.budget.reservation_call(owner, tokens)
        limits = gate.begin() if gate is not None else ()
        request_id = gate.request_id if gate is not None else None
        admission = await self.budget.limiter.admit(
            limits, budget=call, renewal=renewal, request_id=request_id
        )
        if gate is not None:
            gate.decided(admission.decisions)  # a refused limit raises here, holding nothing
        return self.budget.reservation(owner, tokens, call, admission.budget, resets_at)

    @asynccontextmanager
    async def _metered(
        self,
        owner: str,
        options: GenerationOptions,
        *,
        reserve: int,
        base: int,
        gate: LimitGate | None = None,
        renewal: SlotRenewal | None = None,
    ) -> AsyncIterator[Meter]:
        reservation = await self._reserve(owner, reserve, gate, renewal)
        if not reservation.granted:
            raise TokenBudgetExhausted(
                retry_after=max(1.0, reservation.resets_at - self.budget.limiter.clock())
            )
        meter = Meter(options=options, reserved=reserve, base=base)
        failed = False
        try:
            yield meter
        except Exception:
            failed = True
            raise
        finally:
            # Shielded: a client hanging up cancels the request, and the settlement must still run.
            with anyio.CancelScope(shield=True):
                spent = meter.spent(failed=failed)
                # The settlement and the anomaly detector's count of the tokens: one round trip.
                # Without a settlement to ride (no daily budget, or a storage that runs no
                # riders), the count is left to the detector's worker: the reply never waits on it.
                rider = self._rider(self.observer, owner, spent) if self.observer is not None else None
                await self._settle(reservation, spent, rider)
                if self.observer is not None and spent > 0 and (rider is None or not rider.ran):
                    self.observer.count_tokens(**_caller(owner), tokens=spent)

    @staticmethod
    def _rider(observer: UsageObserver, owner: str, tokens: int) -> Rider | None:
        return observer.token_rider(**_caller(owner), tokens=tokens) if tokens > 0 else None

    async def _settle(self, reservation: Reservation, tokens: int, rider: Rider | None) -> None:
        try:
            settled = await self.budget.settle(reservation, tokens, (rider,) if rider is not None else ())
        except ServiceUnavailable:
            # Fail closed: the reservation stays charged in the unreachable storage until it
            # resets; the reply already produced is not thrown away for it.
            self.log.warning("token_budget_settle_unavailable", owner=reservation.owner, tokens=tokens)
            return
        if settled is not None and settled.charged < tokens:
            self.log.warning(
                "token_budget_overshoot_capped",
                owner=reservation.owner,
                reserved=reservation.amount,
                spent=tokens,
                charged=settled.charged,
            )
