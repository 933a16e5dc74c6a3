# SPDX-License-Identifier: Apache-2.0
"""Values that reach a parser, the database or an encoder: every one a clear 4xx, never a 500.

Datetimes without a zone or past the calendar, integers past 64 bits, and text that no encoder
accepts (a lone UTF-16 surrogate) are refused with the error shape on every route that takes them.
"""

from __future__ import annotations

import pytest

from tests.conftest import SettingsFactory
from tests.integration.auth.helpers import (
    assert_error,
    bearer,
    identity_app,
    identity_settings,
    user_session,
)

LONE_SURROGATE = '"\\ud800"'  # as JSON text: a string no UTF-8 encoder accepts


@pytest.mark.parametrize(
    "before",
    [
        "2026-01-01T00:00:00",  # no zone: which instant is it?
        "9999-12-31T23:59:59-14:00",  # past year 9999 once in UTC
        "0001-01-01T00:00:00+14:00",  # before year 1 once in UTC
        "not-a-date",
        "2026-02-30T00:00:00Z",
    ],
)
async def test_session_paging_with_impossible_datetimes(make_settings: SettingsFactory, before: str) -> None:
    async with identity_app(identity_settings(make_settings)) as (_app, http):
        _, tokens = await user_session(http, "pager@example.com")
        response = await http.get(
            "/api/sessions", params={"before": before}, headers=bearer(tokens["access_token"])
        )
        assert_error(response, 422, "validation_error")


@pytest.mark.parametrize("before", ["9223372036854775808", "99999999999999999999999", "-1", "0", "1.5"])
async def test_message_paging_with_out_of_range_integers(make_settings: SettingsFactory, before: str) -> None:
    async with identity_app(identity_settings(make_settings)) as (_app, http):
        _, tokens = await user_session(http, "pager@example.com")
        headers = bearer(tokens["access_token"])
        session = (await http.post("/api/sessions", json={}, headers=headers)).json()
        response = await http.get(
            f"/api/sessions/{session['id']}/messages", params={"before": before}, headers=headers
        )
        assert_error(response, 422, "validation_error")


@pytest.mark.parametrize(
    "expires_at", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "2026-01-01T00:00:00"]
)
async def test_key_expiry_past_the_calendar(make_settings: SettingsFactory, expires_at: str) -> None:
    async with identity_app(identity_settings(make_settings)) as (_app, http):
        _, tokens = await user_session(http, "keys@example.com")
        response = await http.post(
            "/api/keys",
            json={"name": "k", "scopes": ["chat"], "expires_at": expires_at},
            headers=bearer(tokens["access_token"]),
        )
        assert_error(response, 422, "validation_error")


@pytest.mark.parametrize(
    "body",
    [
        '{"model": "m", "messages": [{"role": "user", "content": ' + LONE_SURROGATE + "}]}",
        '{"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": '
        + LONE_SURROGATE
        + "}]}]}",
        '{"model": ' + LONE_SURROGATE + ', "messages": [{"role": "user", "content": "hi"}]}',
        '{"model": "m", "user": ' + LONE_SURROGATE + ', "messages": [{"role": "user", "content": "hi"}]}',
    ],
)
async def test_completions_refuse_text_no_encoder_accepts(make_settings: SettingsFactory, body: str) -> None:
    async with identity_app(identity_settings(make_settings)) as (_app, http):
        _, tokens = await user_session(http, "sdk@example.com")
        headers = {**bearer(tokens["access_token"]), "Content-Type": "application/json"}
        response = await http.post("/v1/chat/completions", content=body.encode(), headers=headers)
        assert response.status_code == 422, response.text
        assert response.json()["detail"]["error"] == "validation_error"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/sessions", '{"title": ' + LONE_SURROGATE + "}"),
        ("/api/keys", '{"name": ' + LONE_SURROGATE + ', "scopes": ["chat"]}'),
        ("/api/auth/login", '{"email": "a@example.com", "password": ' + LONE_SURROGATE + "}"),
        ("/api/auth/register", '{"email": "a@example.com", "password": ' + LONE_SURROGATE + "}"),
        ("/api/auth/password-reset", '{"email": ' + LONE_SURROGATE + "}"),
    ],
)
async def test_lone_surrogates_anywhere_are_refused(
    make_settings: SettingsFactory, path: str, body: str
) -> None:
    async with identity_app(identity_settings(make_settings)) as (_app, http):
        _, tokens = await user_session(http, "text@example.com")
        headers = {**bearer(tokens["access_token"]), "Content-Type": "application/json"}
        response = await http.post(path, content=body.encode(), headers=headers)
        assert 400 <= response.status_code < 500, response.text
        assert "detail" in response.json()


async def test_malformed_json_on_every_route_is_a_400(make_settings: SettingsFactory) -> None:
    """Also on routes that take no body (logout-all): the JSON check reads the body, never a 500."""
    from tests.integration.auth.helpers import make_admin
    from tests.integration.test_route_matrix import INVENTORY, concrete

    async with identity_app(identity_settings(make_settings)) as (app, http):
        _, tokens = await make_admin(app, http, "malformed@example.com")
        headers = {**bearer(tokens["access_token"]), "Content-Type": "application/json"}
        for method, path in INVENTORY:
            if method == "GET" or path in ("/api/auth/logout", "/api/auth/logout-all", "/api/auth/password"):
                continue
            response = await http.request(method, concrete(path), content=b'{"bad', headers=headers)
            http.cookies.clear()
            assert response.status_code < 500, (method, path, response.text)
            # DELETE ignores a body; the voice upload is multipart, not JSON.
            if method == "POST" and path != "/api/sessions/{session_id}/voice-chat":
                assert response.status_code in (400, 415), (method, path, response.status_code)
        for path in ("/api/auth/logout-all", "/api/auth/logout"):
            response = await http.post(path, content=b'{"bad', headers=headers)
            assert_error(response, 400, "malformed_json")
