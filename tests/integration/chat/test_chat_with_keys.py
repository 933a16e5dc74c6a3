# SPDX-License-Identifier: Apache-2.0
"""Chat and /v1 through API keys: ownership by key, scopes, REQUIRE_API_KEY, rotation."""

from __future__ import annotations

import io

from tests.conftest import SettingsFactory
from tests.integration.auth.helpers import assert_error, bearer, identity_app, identity_settings, user_session
from tests.integration.chat.test_upstream import wav_bytes
from tests.integration.keys.helpers import create_key, key_header


async def test_a_key_owns_its_sessions(make_settings: SettingsFactory) -> None:
    async with identity_app(identity_settings(make_settings)) as (_app, http):
        _, tokens = await user_session(http, "owner@example.com")
        token = tokens["access_token"]
        first = (await create_key(http, token, name="app one"))["key"]
        second = (await create_key(http, token, name="app two"))["key"]
        _, other_tokens = await user_session(http, "other@example.com")
        foreign = (await create_key(http, other_tokens["access_token"]))["key"]

        created = await http.post("/api/sessions", json={"title": "from the app"}, headers=key_header(first))
        assert created.status_code == 201, created.text
        sid = created.json()["id"]
        posted = await http.post(
            f"/api/sessions/{sid}/messages", json={"content": "hi"}, headers=key_header(first)
        )
        assert posted.status_code == 200
        # Another key of the same user, the user's own token, and another user's key: 404 alike.
        for headers in (key_header(second), bearer(token), key_header(foreign)):
            assert_error(await http.get(f"/api/sessions/{sid}", headers=headers), 404)
            assert_error(await http.get(f"/api/sessions/{sid}/messages", headers=headers), 404)
            assert_error(await http.delete(f"/api/sessions/{sid}", headers=headers), 404)
        assert [
            s["id"] for s in (await http.get("/api/sessions", headers=key_header(first))).json()["items"]
        ] == [sid]
        assert (await http.get("/api/sessions", headers=key_header(second))).json()["items"] == []


async def test_rotation_keeps_the_sessions_of_the_key(make_settings: SettingsFactory) -> None:
    async with identity_app(identity_settings(make_settings)) as (_app, http):
        _, tokens = await user_session(http, "rotate@example.com")
        created = await create_key(http, tokens["access_token"])
        sid = (await http.post("/api/sessions", json={}, headers=key_header(created["key"]))).json()["id"]
        rotated = await http.post(f"/api/keys/{created['id']}/rotate", headers=bearer(tokens["access_token"]))
        assert rotated.status_code in (200, 201), rotated.text
        new_key = rotated.json()["key"]
        assert (await http.get(f"/api/sessions/{sid}", headers=key_header(new_key))).status_code == 200


async def test_scopes_decide_what_a_key_reaches(make_settings: SettingsFactory) -> None:
    async with identity_app(identity_settings(make_settings)) as (_app, http):
        _, tokens = await user_session(http, "scopes@example.com")
        token = tokens["access_token"]
        journal_only = (await create_key(http, token, scopes=["journal"]))["key"]
        chat_only = (await create_key(http, token, scopes=["chat"]))["key"]
        chat_voice = (await create_key(http, token, scopes=["chat", "voice"]))["key"]
        completions = (await create_key(http, token, scopes=["completions"]))["key"]
        assert_error(await http.post("/api/sessions", json={}, headers=key_header(journal_only)), 403)
        sid = (await http.post("/api/sessions", json={}, headers=key_header(chat_only))).json()["id"]
        audio = {"audio": ("a.wav", io.BytesIO(wav_bytes()), "audio/wav")}
        voice = await http.post(f"/api/sessions/{sid}/voice-chat", files=audio, headers=key_header(chat_only))
        assert_error(voice, 403)
        sid2 = (await http.post("/api/sessions", json={}, headers=key_header(chat_voice))).json()["id"]
        audio = {"audio": ("a.wav", io.BytesIO(wav_bytes()), "audio/wav")}
        voice = await http.post(
            f"/api/sessions/{sid2}/voice-chat", files=audio, headers=key_header(chat_voice)
        )
        assert_error(voice, 501, "not_available")  # allowed through; the offline model cannot transcribe
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        assert_error(await http.post("/v1/chat/completions", json=body, headers=key_header(chat_only)), 403)
        ok = await http.post(
            "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {completions}"}
        )
        assert ok.status_code == 200, ok.text


async def test_require_api_key_gates_chat(make_settings: SettingsFactory) -> None:
    async with identity_app(identity_settings(make_settings, REQUIRE_API_KEY=True)) as (_app, http):
        _, tokens = await user_session(http, "gate@example.com")
        token = tokens["access_token"]
        assert_error(await http.post("/api/sessions", json={}, headers=bearer(token)), 401)
        key = (await create_key(http, token))["key"]
        assert (await http.post("/api/sessions", json={}, headers=key_header(key))).status_code == 201
        assert_error(await http.post("/api/sessions", json={}, headers=key_header(key[:-1] + "x")), 401)
