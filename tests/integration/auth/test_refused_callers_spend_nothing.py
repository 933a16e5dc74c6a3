# SPDX-License-Identifier: Apache-2.0
"""A caller a route refuses (403) spends none of the allowance of the account behind it."""

from __future__ import annotations

from tests.conftest import SettingsFactory
from tests.integration.auth.helpers import (
    PASSWORD,
    assert_error,
    bearer,
    identity_app,
    identity_settings,
    user_session,
)
from tests.integration.keys.helpers import create_key, key_header

NEW_PASSWORD = "Another-Horse-7y!"


async def test_a_narrow_key_cannot_exhaust_its_owners_password_changes(
    make_settings: SettingsFactory,
) -> None:
    settings = identity_settings(make_settings, RATE_LIMIT_PASSWORD_CHANGE="2/minute;burst=2")
    async with identity_app(settings) as (_app, http):
        _, tokens = await user_session(http, "owner@example.com")
        stolen = key_header((await create_key(http, tokens["access_token"], scopes=["chat"]))["key"])
        body = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
        for _ in range(6):
            assert_error(await http.post("/api/auth/password", json=body, headers=stolen), 403)
        changed = await http.post("/api/auth/password", json=body, headers=bearer(tokens["access_token"]))
        assert changed.status_code == 200, changed.text


async def test_a_key_without_the_scope_cannot_exhaust_chat_or_completions(
    make_settings: SettingsFactory,
) -> None:
    settings = identity_settings(
        make_settings, RATE_LIMIT_SESSIONS_CREATE="2/hour;burst=2", RATE_LIMIT_MESSAGES="2/minute;burst=2"
    )
    async with identity_app(settings) as (_app, http):
        _, tokens = await user_session(http, "shared@example.com")
        journal_only = key_header((await create_key(http, tokens["access_token"], scopes=["journal"]))["key"])
        completion = {"model": "any", "messages": [{"role": "user", "content": "hello"}]}
        for _ in range(5):
            assert_error(await http.post("/api/sessions", json={}, headers=journal_only), 403)
            assert_error(await http.post("/v1/chat/completions", json=completion, headers=journal_only), 403)
        person = bearer(tokens["access_token"])
        for _ in range(2):
            assert (await http.post("/api/sessions", json={}, headers=person)).status_code == 201
        assert (await http.post("/v1/chat/completions", json=completion, headers=person)).status_code == 200
