# SPDX-License-Identifier: Apache-2.0
"""The database stops answering while a reply streams: the stream still ends with an error event in
the error shape (503 service_unavailable, retry_after), never cut off without a word.

A real `bastion serve` process (an in-process transport would buffer the whole stream first)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from bastion.db import migrate
from tests.integration.auth.helpers import CHEAP_HASHING, PASSWORD
from tests.support.bastion_server import bastion_serve
from tests.support.fake_upstream import FakeUpstream, Fault
from tests.support.servers import PostgresServer, paused

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]
REPLY = " ".join(f"word{i}" for i in range(30))


def last_event(text: str) -> tuple[str, str]:
    """The last event before the stream's signature: its name and data."""
    blocks = [block.split("\n")[:2] for block in text.strip().split("\n\n")]
    named = [(event.removeprefix("event: "), data.removeprefix("data: ")) for event, data in blocks]
    return [item for item in named if item[0] != "signature"][-1]


def test_a_database_outage_mid_stream_ends_it_with_an_error_event(
    tmp_path: Path, dedicated_postgres: PostgresServer
) -> None:
    with FakeUpstream(reply=REPLY) as upstream:
        env = {
            "DATABASE_URL": dedicated_postgres.url(),
            "DATABASE_TIMEOUT_SECONDS": "1",
            "LLM_PROVIDER": "openai",
            "LLM_BASE_URL": upstream.base_url,
            "LLM_MODEL": "fake-model",
            **{name: str(value) for name, value in CHEAP_HASHING.items()},
        }
        migrate.upgrade(env["DATABASE_URL"])
        with (
            bastion_serve(tmp_path, env=env) as port,
            httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http,
        ):
            account = {"email": "storyteller@example.com", "password": PASSWORD}
            assert http.post("/api/auth/register", json=account).status_code == 201
            token = http.post("/api/auth/login", json=account).json()["access_token"]
            auth = {"Authorization": f"Bearer {token}"}
            session = http.post("/api/sessions", json={}, headers=auth).json()
            upstream.script(Fault.slow_stream(0.05))  # 1.5 s of reply
            body = {"content": "tell me a long story", "stream": True}
            path = f"/api/sessions/{session['id']}/messages"
            with http.stream("POST", path, json=body, headers=auth) as response:
                assert response.status_code == 200
                # The user's message is stored and the reply under way: the database goes quiet
                # until well after the reply has ended and would have been stored.
                with paused(dedicated_postgres):
                    text = response.read().decode()
    last, data = last_event(text)
    assert last == "error", text[-300:]
    detail = json.loads(data)
    assert detail["error"] == "service_unavailable"
    assert detail["retry_after"] >= 1 and detail["request_id"]
