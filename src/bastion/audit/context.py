# SPDX-License-Identifier: Apache-2.0
"""The request an audit record is written in, so records carry its route, method and latency.

``RequestContext`` (the outermost middleware) sets ``CURRENT`` for each request; an audit record
written anywhere below it (a route, a service, another middleware) picks up the method, the route
template (once routing has chosen one; never the raw path, which the client chose), the time since
the request began and its id.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from starlette.types import Scope


@dataclass(frozen=True, slots=True)
class RequestFacts:
    scope: Scope
    started: float

    def method(self) -> str | None:
        method = self.scope.get("method")
        return str(method)[:8] if method else None

    def route(self) -> str | None:
        path = getattr(self.scope.get("route"), "path", None)
        return str(path)[:200] if path else None

    def latency_ms(self) -> float:
        return round((time.perf_counter() - self.started) * 1000, 3)

    def request_id(self) -> str | None:
        state: Any = self.scope.get("state") or {}
        value = state.get("request_id") if isinstance(state, dict) else None
        return str(value) if value else None


CURRENT: ContextVar[RequestFacts | None] = ContextVar("bastion_request", default=None)
