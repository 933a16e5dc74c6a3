# SPDX-License-Identifier: Apache-2.0
"""Circuit breaker: a pure state machine, no I/O, time passed in.

closed --(threshold consecutive failures)--> open --(recovery time)--> half-open
half-open --(probe succeeds)--> closed;  half-open --(probe fails)--> open

While open every call is refused at once with the time left until a probe may be tried, so a
failing provider costs callers nothing and is not hammered. In half-open a limited number of probe
calls go through; if a probe never reports back (its instance died), another is allowed after a
further recovery period, so the breaker cannot stick half-open.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum


class State(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    failure_threshold: int = 5
    recovery_seconds: float = 30.0
    half_open_probes: int = 1

    def __post_init__(self) -> None:
        if self.failure_threshold < 1 or self.recovery_seconds <= 0 or self.half_open_probes < 1:
            raise ValueError("breaker threshold, recovery time and probes must be positive")


@dataclass(frozen=True, slots=True)
class Snapshot:
    state: State = State.CLOSED
    failures: int = 0
    since: float = 0.0  # when the current open or half-open state began
    probes: int = 0  # probes let through in the current half-open period


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    retry_after: float = 0.0


def acquire(snapshot: Snapshot, config: BreakerConfig, now: float) -> tuple[Decision, Snapshot]:
    """May a call go ahead now? Returns the decision and the new state."""
    if snapshot.state is State.CLOSED:
        return Decision(True), snapshot
    waited = now - snapshot.since
    if snapshot.state is State.OPEN:
        if waited < config.recovery_seconds:
            return Decision(False, config.recovery_seconds - waited), snapshot
        return Decision(True), Snapshot(State.HALF_OPEN, snapshot.failures, now, 1)
    # Half-open: a few probes; if they vanished without a verdict, start a new probe period.
    if waited >= config.recovery_seconds:
        return Decision(True), Snapshot(State.HALF_OPEN, snapshot.failures, now, 1)
    if snapshot.probes < config.half_open_probes:
        return Decision(True), replace(snapshot, probes=snapshot.probes + 1)
    return Decision(False, config.recovery_seconds - waited), snapshot


def record_success(snapshot: Snapshot, config: BreakerConfig, now: float) -> Snapshot:
    return Snapshot()


def record_failure(snapshot: Snapshot, config: BreakerConfig, now: float) -> Snapshot:
    if snapshot.state is State.HALF_OPEN:
        return Snapshot(State.OPEN, snapshot.failures + 1, now, 0)
    if snapshot.state is State.OPEN:
        return snapshot  # a late report from a call admitted before the breaker opened
    failures = snapshot.failures + 1
    if failures >= config.failure_threshold:
        return Snapshot(State.OPEN, failures, now, 0)
    return replace(snapshot, failures=failures)
