# SPDX-License-Identifier: Apache-2.0
"""/v1/chat/completions in-process: the wire format, validation and limits."""

from __future__ import annotations

import json

import pytest

from tests.conftest import SettingsFactory
from tests.integration.auth.helpers import assert_error
from tests.integration.chat.conftest import CANARY_TOKENS, chat_app, upstream_settings
from tests.support.content_signatures import signed_part
from tests.support.fake_upstream import FakeUpstream, Fault

URL = "/v1/chat/completions"


def chunks(text: str) -> list[object]:
    out: list[object] = []
    for block in signed_part(text).strip().split("\n\n"):
        data = block.removeprefix("data: ")
        out.append(data if data == "[DONE]" else json.loads(data))
    return out


async def test_completion_shape(make_settings: SettingsFactory) -> None:
    async with chat_app(make_settings) as (_app, http, auth):
        body = {
            "model": "anything",
            "messages": [
                {"role": "system", "content": "Be kind."},
                {"role": "user", "content": "I feel sad."},
            ],
        }
        response = await http.post(URL, json=body, headers=auth)
        assert response.status_code == 200, response.text
        data = response.json()
        assert data["object"] == "chat.completion" and data["id"].startswith("chatcmpl-")
        assert data["choices"][0]["message"]["role"] == "assistant"
        assert "sad" in data["choices"][0]["message"]["content"]
        usage = data["usage"]
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0


async def test_stream_shape_with_usage(make_settings: SettingsFactory) -> None:
    async with chat_app(make_settings) as (_app, http, auth):
        body = {
            "model": "m",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "I am tired."}]}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        response = await http.post(URL, json=body, headers=auth)
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        events = chunks(response.text)
        assert events[-1] == "[DONE]"
        first, *middle, finish, usage, _done = events
        assert first["choices"][0]["delta"]["role"] == "assistant"  # type: ignore[index]
        text = "".join(e["choices"][0]["delta"]["content"] for e in middle)  # type: ignore[index]
        assert "tired" in text
        assert finish["choices"][0]["finish_reason"] == "stop"  # type: ignore[index]
        assert usage["choices"] == [] and usage["usage"]["completion_tokens"] > 0  # type: ignore[index]


@pytest.mark.parametrize(
    "body",
    [
        {"model": "m", "messages": []},
        {"model": "m", "messages": [{"role": "tool", "content": "x"}]},
        {"model": "m", "messages": [{"role": "system", "content": "only a system prompt"}]},
        {"model": "m", "messages": [{"role": "user", "content": "   "}]},
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], "n": 2},
        {"model": "m", "messages": [{"role": "user", "content": "x" * 101}]},
        {
            "model": "m",
            "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "http://x"}]}],
        },
        {"model": "", "messages": [{"role": "user", "content": "hi"}]},
        {"messages": [{"role": "user", "content": "hi"}]},
        {"model": "m", "messages": [{"role": "user", "content": "hi"}] * 12},
    ],
)
async def test_invalid_requests_are_422(make_settings: SettingsFactory, body: dict[str, object]) -> None:
    async with chat_app(make_settings, MAX_MESSAGE_LENGTH=100, MAX_HISTORY_MESSAGES=10) as (_app, http, auth):
        assert_error(await http.post(URL, json=body, headers=auth), 422, "validation_error")


async def test_anonymous_and_wrong_content_type(make_settings: SettingsFactory) -> None:
    async with chat_app(make_settings) as (_app, http, auth):
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        assert_error(await http.post(URL, json=body), 401)
        assert_error(
            await http.post(URL, content=json.dumps(body), headers={**auth, "Content-Type": "text/plain"}),
            415,
        )


async def test_upstream_failures_through_v1(make_settings: SettingsFactory, upstream: FakeUpstream) -> None:
    async with chat_app(make_settings, **upstream_settings(upstream, LLM_MAX_RETRIES=0)) as (
        _app,
        http,
        auth,
    ):
        body = {"model": "m", "messages": [{"role": "user", "content": "hello there"}]}
        ok = await http.post(URL, json=body, headers=auth)
        assert ok.json()["choices"][0]["message"]["content"] == "echo: hello there"
        assert ok.json()["model"] == "fake-model"
        upstream.script(Fault.status_code(500))
        assert_error(await http.post(URL, json=body, headers=auth), 502, "upstream_error")
        # A break before the guard released anything (it holds back the reply's last characters)
        # is still a plain error; one after some of the reply was sent ends the stream with one.
        upstream.script(Fault.stream_break(after=1))
        broken = await http.post(URL, json={**body, "stream": True}, headers=auth)
        assert_error(broken, 502, "upstream_error")
        long_body = {
            "model": "m",
            "messages": [{"role": "user", "content": " ".join(f"word{i}" for i in range(100))}],
        }
        upstream.script(Fault.stream_break(after=60))
        broken = await http.post(URL, json={**long_body, "stream": True}, headers=auth)
        events = chunks(broken.text)
        assert broken.status_code == 200 and events[-1] != "[DONE]"
        assert events[-1]["error"]["code"] == "upstream_error"  # type: ignore[index]


async def test_token_budget_applies_to_v1(make_settings: SettingsFactory) -> None:
    # Besides the caller's messages, the prompt carries the canary instruction Bastion puts first.
    settings = {"RATE_LIMIT_TOKEN_BUDGET_PER_DAY": 60 + CANARY_TOKENS, "LLM_MAX_COMPLETION_TOKENS": 40}
    async with chat_app(make_settings, **settings) as (_app, http, auth):
        body = {"model": "m", "messages": [{"role": "user", "content": "I feel anxious about work today."}]}
        assert (await http.post(URL, json=body, headers=auth)).status_code == 200
        assert_error(await http.post(URL, json=body, headers=auth), 429, "token_budget_exhausted")
        streamed = await http.post(URL, json={**body, "stream": True}, headers=auth)
        assert_error(streamed, 429, "token_budget_exhausted")


async def test_v1_reserves_the_cap_and_charges_the_reported_usage(
    make_settings: SettingsFactory, upstream: FakeUpstream
) -> None:
    settings = upstream_settings(
        upstream, RATE_LIMIT_TOKEN_BUDGET_PER_DAY=120 + CANARY_TOKENS, LLM_MAX_COMPLETION_TOKENS=50
    )
    async with chat_app(make_settings, **settings) as (app, http, auth):
        me = (await http.get("/api/auth/me", headers=auth)).json()
        owner = f"user:{me['id']}"
        body = {"model": "m", "messages": [{"role": "user", "content": "hello there"}]}
        # The caller's own max_tokens: kept below the cap, clamped above it.
        for extra, sent in (({}, 50), ({"max_tokens": 7}, 7), ({"max_completion_tokens": 900}, 50)):
            response = await http.post(URL, json={**body, **extra}, headers=auth)
            assert response.status_code == 200, response.text
            assert upstream.requests[-1].json()["max_tokens"] == sent
        reply_usage = 11 + len(["echo:", "hello", "there"])  # what the upstream reports
        today = await app.state.token_budget.today(owner)
        assert (today.used, today.reserved) == (3 * reply_usage, 0)
        streamed = await http.post(URL, json={**body, "stream": True}, headers=auth)
        assert chunks(streamed.text)[-1] == "[DONE]"
        today = await app.state.token_budget.today(owner)
        assert (today.used, today.reserved) == (4 * reply_usage, 0)
        # A reservation is the prompt's estimate (6, and the canary instruction's) plus the cap
        # (50): 120 - 4 * 14 = 64 pays for one more, and then 50 is left.
        assert (await http.post(URL, json={**body, "stream": True}, headers=auth)).status_code == 200
        calls = upstream.count()
        assert_error(await http.post(URL, json={**body, "stream": True}, headers=auth), 429)
        assert_error(await http.post(URL, json=body, headers=auth), 429, "token_budget_exhausted")
        assert upstream.count() == calls  # refused before the model was asked
