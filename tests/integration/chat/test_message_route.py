# SPDX-License-Identifier: Apache-2.0
"""The chat routes' order of refusals, with the service, signer and limits taken in the handler.

The message route solves only its permission and the Content-Type check as dependencies, and
/v1/chat/completions only its router's (the permission, the check, the three message limits);
the rest is built from the request inside them. What a caller sees must not depend on that: the
permission is refused before the Content-Type, nothing is spent by a caller the route refuses,
and a content key that cannot be loaded is a 503 before the allowance or the model is touched.
"""

from __future__ import annotations

from typing import NoReturn

import pytest
from fastapi.routing import APIRoute

from bastion.api.content_types import require_json
from bastion.api.routes import openai_compat
from bastion.api.routes.chat import CHAT_USE, router
from bastion.errors import ServiceUnavailable
from tests.conftest import SettingsFactory
from tests.integration.auth.helpers import assert_error, bearer, identity_app, identity_settings, user_session
from tests.integration.chat.conftest import chat_app, new_session
from tests.integration.keys.helpers import create_key, key_header

PLAIN = {"Content-Type": "text/plain"}


async def outage() -> NoReturn:
    raise ServiceUnavailable(retry_after=2)


def test_the_message_route_solves_only_its_permission_and_the_content_type_check() -> None:
    (route,) = (
        route
        for route in router.routes
        if isinstance(route, APIRoute) and route.path.endswith("/messages") and "POST" in route.methods
    )
    assert [dependency.call for dependency in route.dependant.dependencies] == [CHAT_USE, require_json]
    (completions,) = (route for route in openai_compat.router.routes if isinstance(route, APIRoute))
    calls = [dependency.call for dependency in completions.dependant.dependencies]
    assert calls[:2] == [openai_compat.COMPLETIONS_USE, require_json]
    assert len(calls) == 5 and all(getattr(call, "spends_allowance", False) for call in calls[2:])


async def test_the_permission_is_refused_before_the_content_type(make_settings: SettingsFactory) -> None:
    async with chat_app(make_settings) as (_app, http, auth):
        sid = (await new_session(http, auth))["id"]
        for path in ("/api/sessions", f"/api/sessions/{sid}/messages"):
            assert_error(await http.post(path, content=b"hi", headers=PLAIN), 401)
            assert_error(await http.post(path, content=b"hi", headers={**auth, **PLAIN}), 415)


async def test_a_caller_without_the_permission_spends_nothing(make_settings: SettingsFactory) -> None:
    settings = identity_settings(make_settings, RATE_LIMIT_MESSAGES="1/minute")
    async with identity_app(settings) as (_app, http):
        _, tokens = await user_session(http, "owner@example.com")
        auth = bearer(tokens["access_token"])
        journal_only = key_header((await create_key(http, tokens["access_token"], scopes=["journal"]))["key"])
        url = f"/api/sessions/{(await new_session(http, auth))['id']}/messages"
        for _ in range(3):
            assert_error(await http.post(url, json={"content": "hi"}, headers=journal_only), 403)
            assert_error(await http.post(url, content=b"hi", headers={**journal_only, **PLAIN}), 403)
        # The owner's one message a minute is still there.
        reply = await http.post(url, json={"content": "hi"}, headers=auth)
        assert reply.status_code == 200, reply.text
        assert reply.headers["x-ratelimit-remaining"] == "0"
        assert reply.headers["x-content-signature"]
        assert_error(await http.post(url, json={"content": "again"}, headers=auth), 429, "rate_limited")


async def test_a_content_key_outage_is_a_503_before_anything_is_spent(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with chat_app(make_settings, RATE_LIMIT_MESSAGES="1/minute") as (app, http, auth):
        url = f"/api/sessions/{(await new_session(http, auth))['id']}/messages"

        with monkeypatch.context() as patch:
            patch.setattr(app.state.content_keys, "signing_key", outage)
            for body in ({"content": "hi"}, {"content": "hi", "stream": True}):
                refused = await http.post(url, json=body, headers=auth)
                assert_error(refused, 503, "service_unavailable")
                assert refused.headers["retry-after"] == "2"
        assert (await http.get(url, headers=auth)).json()["items"] == []
        reply = await http.post(url, json={"content": "hi"}, headers=auth)
        assert reply.status_code == 200, reply.text
        assert reply.headers["x-ratelimit-remaining"] == "0"


async def test_a_completion_without_a_content_key_is_a_503(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    completion = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    async with chat_app(make_settings) as (app, http, auth):
        with monkeypatch.context() as patch:
            patch.setattr(app.state.content_keys, "signing_key", outage)
            for body in (completion, {**completion, "stream": True}):
                refused = await http.post("/v1/chat/completions", json=body, headers=auth)
                assert_error(refused, 503, "service_unavailable")
                assert refused.headers["retry-after"] == "2"
        reply = await http.post("/v1/chat/completions", json=completion, headers=auth)
        assert reply.status_code == 200, reply.text
        assert reply.headers["x-content-signature"]
