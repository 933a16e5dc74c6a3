# SPDX-License-Identifier: Apache-2.0
"""Bastion sends no OpenTelemetry spans, even where another library set up a global provider.

FastAPI (0.165 on) exports spans and metrics of every request to whatever OpenTelemetry provider
is configured in the process. Bastion turns that off: a provider set up by some other library
would otherwise receive every request, which no Bastion setting asked for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry import trace

from bastion.db import migrate
from tests.conftest import SettingsFactory, serve_app


class RecordingTracer(trace.Tracer):
    def __init__(self, names: list[str]) -> None:
        self.names = names

    def start_span(self, name: str, *args: Any, **kwargs: Any) -> trace.Span:
        self.names.append(name)
        return trace.INVALID_SPAN

    @contextmanager
    def start_as_current_span(self, name: str, *args: Any, **kwargs: Any) -> Iterator[trace.Span]:
        self.names.append(name)
        yield trace.INVALID_SPAN


class RecordingProvider(trace.TracerProvider):
    def __init__(self) -> None:
        self.names: list[str] = []

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        return RecordingTracer(self.names)


@pytest.fixture
def provider(monkeypatch: pytest.MonkeyPatch) -> RecordingProvider:
    """A configured global tracer provider, for this test only."""
    recording = RecordingProvider()
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: recording)
    return recording


async def test_a_plain_fastapi_app_reports_to_the_provider(provider: RecordingProvider) -> None:
    # The control: without Bastion's setting, the same provider receives the request's spans.
    app = FastAPI()

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        return {"ping": "pong"}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        assert (await http.get("/ping")).status_code == 200
    assert provider.names


async def test_bastion_reports_nothing_to_it(
    provider: RecordingProvider, make_settings: SettingsFactory
) -> None:
    settings = make_settings()
    await asyncio.to_thread(migrate.upgrade, settings.database_url.get_secret_value())
    async with serve_app(settings) as (_app, http):
        assert (await http.get("/health")).status_code == 200
        assert (await http.get("/api/auth/me")).status_code == 401
        assert (
            await http.post("/api/auth/login", json={"email": "a@example.com", "password": "x"})
        ).status_code in (
            401,
            422,
        )
    assert provider.names == []
