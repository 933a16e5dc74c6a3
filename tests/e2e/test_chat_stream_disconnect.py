# SPDX-License-Identifier: Apache-2.0
"""A client that hangs up mid-stream: the partial reply is kept, marked incomplete."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import bastion_server
from tests.e2e.test_openai_sdk import access_token
from tests.support.fake_upstream import FakeUpstream, Fault

pytestmark = pytest.mark.e2e


def test_client_disconnect_keeps_partial_reply(workdir: Path) -> None:
    reply = "one two three four five six seven eight nine ten"
    with FakeUpstream(reply=reply) as upstream:
        env = {"LLM_PROVIDER": "openai", "LLM_BASE_URL": upstream.base_url, "LLM_MODEL": "fake-model"}
        with bastion_server(workdir, env) as (url, _log):
            auth = {"Authorization": f"Bearer {access_token(url, 'hangup@example.com')}"}
            with httpx.Client(base_url=url, timeout=10, headers=auth) as http:
                session = http.post("/api/sessions", json={}).json()
                messages = f"/api/sessions/{session['id']}/messages"
                upstream.script(Fault.slow_stream(0.3))
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
