# SPDX-License-Identifier: Apache-2.0
"""Serve the test app in process with its lifespan, the limiter's clock under the test's control."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from bastion.settings import Settings
from tests.support.clock import FakeClock
from tests.support.lifespan import lifespan_of
from tests.support.ratelimit_app import build


@asynccontextmanager
async def serve_limited(
    settings: Settings, clock: FakeClock, *, client: tuple[str, int] = ("127.0.0.1", 50000)
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app, asgi = build(settings)
    async with lifespan_of(asgi) as manager:
        app.state.limiter.clock = clock
        transport = httpx.ASGITransport(app=manager.app, raise_app_exceptions=False, client=client)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
            yield app, http
