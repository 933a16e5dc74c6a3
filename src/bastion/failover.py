# SPDX-License-Identifier: Apache-2.0
"""What a component does when its shared store (Redis) cannot answer: the one fail mode.

The choice is the operator's (RATE_LIMIT_FAIL_MODE), never an accident of an exception handler:

* ``closed`` (the production default): the caller gets ``ServiceUnavailable`` (503 with
  ``retry_after``), because answering without the shared state would defeat the control.
* ``open``: the operation runs on an in-process fallback instead, a warning is logged and the
  fallback is counted (``stats``), so traffic keeps flowing with this instance's state only.

After a failure the shared store is skipped for ``retry_interval`` seconds, so an outage costs one
timeout per interval rather than one per request, and recovery needs no restart. The rate limiter
and the token denylist both run their stores through a ``Failover``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, Generic, Literal, TypeVar

from redis.exceptions import RedisClusterException, RedisError

from bastion.errors import ServiceUnavailable
from bastion.observability.logging import get_logger
from bastion.settings import Settings

S = TypeVar("S")
T = TypeVar("T")
FailMode = Literal["open", "closed"]
# What a store raises when it cannot answer: Redis errors, sockets, our own timeout, and a Redis
# Cluster client's own (no node reachable, a slot no node serves), which are not RedisErrors.
STORAGE_ERRORS: tuple[type[BaseException], ...] = (RedisError, RedisClusterException, OSError, TimeoutError)


def fail_mode_of(settings: Settings) -> FailMode:
    """RATE_LIMIT_FAIL_MODE (closed in production when unset): the mode of every shared store."""
    return "open" if settings.rate_limit_fail_mode == "open" else "closed"


class Failover(Generic[S]):
    """A shared ``primary`` store with an in-process ``fallback`` and a fail mode between them."""

    def __init__(
        self,
        primary: S,
        fallback: S,
        *,
        mode: FailMode,
        component: str,
        message: str,
        store_name: str = "redis",
        retry_interval: float = 1.0,
        level: Literal["warning", "error"] = "warning",
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.primary = primary
        self.fallback = fallback
        self.mode: FailMode = mode
        self.component = component
        self.message = message
        self.store_name = store_name
        self.retry_interval = retry_interval
        self.level = level
        self.monotonic = monotonic
        self.stats = {"storage_failures": 0, "fallback_calls": 0, "refused_unavailable": 0}
        self.skip_until = 0.0  # monotonic: an operational pause, not a rule
        self.log = get_logger(f"bastion.{component}")

    def unavailable(self, exc: BaseException | None, **log_fields: Any) -> S:
        """The store to use now that the primary failed (or is being skipped), or raise."""
        if exc is not None:
            self.stats["storage_failures"] += 1
            self.skip_until = self.monotonic() + self.retry_interval
            getattr(self.log, self.level)(
                f"{self.component}_storage_unavailable",
                storage=self.store_name,
                error=type(exc).__name__,
                fail_mode=self.mode,
                failures=self.stats["storage_failures"],
                **log_fields,
            )
        if self.mode == "closed":
            self.stats["refused_unavailable"] += 1
            raise ServiceUnavailable(self.message, retry_after=self.retry_interval)
        self.stats["fallback_calls"] += 1
        return self.fallback

    def current(self) -> S:
        """The primary, unless it failed within the last ``retry_interval`` seconds."""
        if self.skip_until and self.monotonic() < self.skip_until:
            return self.unavailable(None)
        return self.primary

    async def run(self, operation: Callable[[S], Awaitable[T]]) -> T:
        """Run one store operation under the fail mode."""
        store = self.current()
        try:
            return await operation(store)
        except STORAGE_ERRORS as exc:
            if store is self.fallback:
                raise
            return await operation(self.unavailable(exc))
