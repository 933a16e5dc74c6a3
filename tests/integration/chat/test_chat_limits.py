# SPDX-License-Identifier: Apache-2.0
"""Chat under its rate-limit policies, session quota and daily token budget."""

from __future__ import annotations

from tests.conftest import SettingsFactory
from tests.integration.auth.helpers import assert_error
from tests.integration.chat.conftest import chat_app, new_session


async def test_message_policy_per_user(make_settings: SettingsFactory) -> None:
    async with chat_app(make_settings, RATE_LIMIT_MESSAGES="2/minute") as (_app, http, auth):
        session = await new_session(http, auth)
        url = f"/api/sessions/{session['id']}/messages"
        ok = [await http.post(url, json={"content": f"hi {i}"}, headers=auth) for i in range(2)]
        assert [r.status_code for r in ok] == [200, 200]
        assert ok[-1].headers["x-ratelimit-remaining"] == "0"
        refused = await http.post(url, json={"content": "one more"}, headers=auth)
        assert_error(refused, 429, "rate_limited")
        history = (await http.get(url, headers=auth)).json()["items"]
        assert len(history) == 4  # the refused message was never stored


async def test_session_creation_policy(make_settings: SettingsFactory) -> None:
    async with chat_app(make_settings, RATE_LIMIT_SESSIONS_CREATE="2/hour") as (_app, http, auth):
        await new_session(http, auth)
        await new_session(http, auth)
        assert_error(await http.post("/api/sessions", json={}, headers=auth), 429, "rate_limited")


async def test_deleting_a_session_frees_its_slot(make_settings: SettingsFactory) -> None:
    async with chat_app(make_settings, MAX_SESSIONS_PER_API_KEY=1) as (_app, http, auth):
        first = await new_session(http, auth)
        assert_error(await http.post("/api/sessions", json={}, headers=auth), 409, "session_limit")
        assert (await http.delete(f"/api/sessions/{first['id']}", headers=auth)).status_code == 204
        await new_session(http, auth)


async def test_daily_token_budget(make_settings: SettingsFactory) -> None:
    async with chat_app(make_settings, RATE_LIMIT_TOKEN_BUDGET_PER_DAY=30) as (_app, http, auth):
        session = await new_session(http, auth)
        url = f"/api/sessions/{session['id']}/messages"
        first = await http.post(url, json={"content": "I feel a bit anxious today."}, headers=auth)
        assert first.status_code == 200
        assert first.json()["usage"]["prompt_tokens"] + first.json()["usage"]["completion_tokens"] > 30
        refused = await http.post(url, json={"content": "and another thing"}, headers=auth)
        detail = assert_error(refused, 429, "token_budget_exhausted")
        assert 0 < detail["retry_after"] <= 86_400
        streamed = await http.post(url, json={"content": "stream?", "stream": True}, headers=auth)
        assert_error(streamed, 429, "token_budget_exhausted")
        history = (await http.get(url, headers=auth)).json()["items"]
        assert len(history) == 2  # nothing stored for refused messages
