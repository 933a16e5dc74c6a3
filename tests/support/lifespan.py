# SPDX-License-Identifier: Apache-2.0
"""How long tests let an app's startup and shutdown take (asgi-lifespan's own defaults are 5 s).

A startup that connects to databases, Redis and a thread pool can take longer than 5 s on a
loaded two-core machine, and so can a shutdown that first delivers what is queued (audit events,
access records) after a test of many concurrent writers; a generous bound keeps that from failing
tests that are not about it.
"""

from __future__ import annotations

from asgi_lifespan import LifespanManager
from starlette.types import ASGIApp

STARTUP_SECONDS = 60.0
SHUTDOWN_SECONDS = 60.0


def lifespan_of(app: ASGIApp) -> LifespanManager:
    """``app``'s lifespan, run with the bounds above."""
    return LifespanManager(app, startup_timeout=STARTUP_SECONDS, shutdown_timeout=SHUTDOWN_SECONDS)
