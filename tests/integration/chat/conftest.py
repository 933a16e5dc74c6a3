# SPDX-License-Identifier: Apache-2.0
"""Chat fixtures: an app with cheap hashing, a signed-in user, and (on request) the fake upstream."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from bastion.guard import canary_instruction, new_canary
from bastion.llm.base import ChatMessage, Usage
from tests.conftest import SettingsFactory
from tests.integration.auth.helpers import bearer, identity_app, identity_settings, user_session
from tests.support.fake_upstream import FakeUpstream

# What the canary instruction Bastion puts first in a /v1 prompt adds to the token estimate (the
# same for every canary: one word of hex).
CANARY_TOKENS = Usage.estimate([ChatMessage("system", canary_instruction(new_canary()))], "").prompt_tokens


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as server:
        yield server


def upstream_settings(upstream: FakeUpstream, **overrides: Any) -> dict[str, Any]:
    return {
        "LLM_PROVIDER": "openai",
        "LLM_BASE_URL": upstream.base_url,
        "LLM_MODEL": "fake-model",
        "OPENAI_API_KEY": "sk-fake-upstream-0123456789",
        "LLM_MAX_RETRIES": 1,
        **overrides,
    }


@asynccontextmanager
async def chat_app(
    make_settings: SettingsFactory, **overrides: Any
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient, dict[str, str]]]:
    """The app, its client, and the Authorization header of a fresh user."""
    async with identity_app(identity_settings(make_settings, **overrides)) as (app, http):
        _, tokens = await user_session(http, "chatter@example.com")
        yield app, http, bearer(tokens["access_token"])


async def other_user(http: httpx.AsyncClient, email: str = "other@example.com") -> dict[str, str]:
    _, tokens = await user_session(http, email)
    return bearer(tokens["access_token"])


async def new_session(http: httpx.AsyncClient, auth: dict[str, str], **body: Any) -> dict[str, Any]:
    response = await http.post("/api/sessions", json=body, headers=auth)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created
