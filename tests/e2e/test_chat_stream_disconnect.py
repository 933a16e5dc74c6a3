# SPDX-License-Identifier: Apache-2.0
"""A client that hangs up mid-stream: the partial reply is kept, marked incomplete, and charged.

The replies are longer than the content guard's hold-back window (it sends a stream's text only
once no later chunk can complete a leak in it), so part of each reaches the client before the end.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from redis import Redis

from bastion.chat.wiring import system_prompt
from bastion.guard import canary_instruction, new_canary
from bastion.llm.base import ChatMessage, Usage, estimate_tokens
from tests.e2e.conftest import bastion_server
from tests.e2e.test_openai_sdk import access_token
from tests.support.fake_upstream import FakeUpstream, Fault

pytestmark = pytest.mark.e2e
LONG_REPLY = "one " + " ".join(f"word{i}" for i in range(80))


def test_client_disconnect_keeps_partial_reply(workdir: Path) -> None:
    reply = LONG_REPLY
    with FakeUpstream(reply=reply) as upstream:
        env = {"LLM_PROVIDER": "openai", "LLM_BASE_URL": upstream.base_url, "LLM_MODEL": "fake-model"}
        with bastion_server(workdir, env) as (url, _log):
            auth = {"Authorization": f"Bearer {access_token(url, 'hangup@example.com')}"}
            with httpx.Client(base_url=url, timeout=10, headers=auth) as http:
                session = http.post("/api/sessions", json={}).json()
                messages = f"/api/sessions/{session['id']}/messages"
                upstream.script(Fault.slow_stream(0.05))
                with http.stream("POST", messages, json={"content": "talk slowly", "stream": True}) as stream:
                    for line in stream.iter_lines():
                        if line.startswith("data:"):
                            break  # got the first delta: hang up
                # The server notices the disconnect and stores what it had.
                history: list[dict[str, object]] = []
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    history = http.get(messages).json()["items"]
                    if len(history) == 2:
                        break
                    time.sleep(0.1)
                assert [m["role"] for m in history] == ["user", "assistant"]
                partial = history[1]
                assert partial["status"] == "incomplete"
                assert str(reply).startswith(str(partial["content"])) and partial["content"]
                assert partial["content"] != reply


def budget_totals(redis: Redis, owner: str) -> dict[str, int]:
    [key] = list(redis.scan_iter(f"bastion:rl:budget:{{{owner}}}:*"))
    values = redis.hgetall(key)
    return {name: int(float(values[name.encode()])) for name in ("used", "reserved")}


@pytest.mark.redis
@pytest.mark.parametrize("route", ["messages", "v1"])
def test_a_hang_up_is_charged_what_was_streamed(workdir: Path, redis_server: str, route: str) -> None:
    reply = LONG_REPLY
    redis = Redis.from_url(redis_server)
    redis.flushdb()
    with FakeUpstream(reply=reply) as upstream:
        env = {
            "LLM_PROVIDER": "openai",
            "LLM_BASE_URL": upstream.base_url,
            "LLM_MODEL": "fake-model",
            "REDIS_URL": redis_server,
            "RATE_LIMIT_TOKEN_BUDGET_PER_DAY": "100000",
        }
        with bastion_server(workdir, env) as (url, _log):
            auth = {"Authorization": f"Bearer {access_token(url, 'charged@example.com')}"}
            with httpx.Client(base_url=url, timeout=10, headers=auth) as http:
                owner = f"user:{http.get('/api/auth/me').json()['id']}"
                prompt = [ChatMessage("user", "talk slowly")]
                # Bastion's system prompt (or, on /v1, its instruction) carries a canary; any
                # canary costs the same in the token estimate.
                canary = new_canary()
                if route == "messages":
                    session = http.post("/api/sessions", json={}).json()
                    path = f"/api/sessions/{session['id']}/messages"
                    body: dict[str, object] = {"content": "talk slowly", "stream": True}
                    prompt.insert(0, ChatMessage("system", system_prompt(canary)))
                else:
                    path = "/v1/chat/completions"
                    body = {"model": "m", "messages": [{"role": "user", "content": "talk slowly"}]}
                    body["stream"] = True
                    prompt.insert(0, ChatMessage("system", canary_instruction(canary)))
                upstream.script(Fault.slow_stream(0.05))
                with http.stream("POST", path, json=body) as stream:
                    for line in stream.iter_lines():
                        if '"content":"one' in line.replace(" ", ""):
                            break  # got the first words: hang up
                # The server notices the disconnect and settles the reservation it held.
                totals = budget_totals(redis, owner)
                deadline = time.monotonic() + 10
                while totals["reserved"] and time.monotonic() < deadline:
                    time.sleep(0.1)
                    totals = budget_totals(redis, owner)
    redis.close()
    base = Usage.estimate(prompt, "").prompt_tokens
    assert totals["reserved"] == 0
    # The prompt and at least the word the client saw are charged; never the whole reply.
    assert base + estimate_tokens("one") <= totals["used"] < base + estimate_tokens(reply)
