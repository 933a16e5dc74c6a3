# SPDX-License-Identifier: Apache-2.0
"""Running requests against an app and reading back the JSON lines it logged."""

from __future__ import annotations

import io
import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from fastapi import FastAPI

from bastion.observability.logging import configure_logging, flush_lines
from bastion.settings import Settings
from tests.support.lifespan import lifespan_of


async def logged_lines(
    app: FastAPI, settings: Settings, calls: Callable[[httpx.AsyncClient], Awaitable[None]]
) -> tuple[str, list[dict[str, Any]]]:
    """Everything logged while ``calls`` ran against ``app``: the raw output and its parsed lines."""
    stream = io.StringIO()
    configure_logging(settings, stream=stream)
    async with lifespan_of(app) as manager:
        transport = httpx.ASGITransport(app=manager.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
            await calls(http)
    flush_lines()  # access lines wait for the end of the loop's turn
    output = stream.getvalue()
    return output, [json.loads(line) for line in output.splitlines()]


def access_lines(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if line.get("event") == "request"]
