# SPDX-License-Identifier: Apache-2.0
"""Fifty clients at once on the default SQLite database: never a 5xx, no acknowledged message lost.

A real `bastion serve` process on a SQLite file (default settings, generous rate limits). Half the
clients chat as signed-in users, half with their own API key (created, used, rotated, used again).
Each creates sessions, sends messages as JSON and as Server-Sent Events (read to the end, or
abandoned after the first chunk), and deletes a session. Every answer must be below 500, and every
message the server acknowledged (a 200 answer, or an SSE ``done`` event) must be in the history.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import bastion_server

# Fifty clients queue on SQLite's one writer, which gives up after 10 s with a 503: under
# pytest-xdist the test shares the "load" group with tests/e2e/test_load_faults.py, so one worker
# runs them one after the other and the two loads never add up.
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("load")]
PASSWORD = "Correct-Horse-9x!"
CLIENTS = 50
ROUNDS = 2
GENEROUS = {
    "ENVIRONMENT": "development",
    "RATE_LIMIT_PER_MINUTE": "100000000",
    "RATE_LIMIT_REGISTER": "100000/minute",
    "RATE_LIMIT_LOGIN": "100000/minute",
    "RATE_LIMIT_SESSIONS_CREATE": "100000/hour",
    "RATE_LIMIT_MESSAGES": "100000/minute",
    "RATE_LIMIT_MESSAGES_PER_HOUR": "100000000",
    "RATE_LIMIT_BLOCK_VIOLATIONS": "0",
    "RATE_LIMIT_BLOCK_AUTH_FAILURES": "0",
    "MAX_SESSIONS_PER_API_KEY": "100000",
    "MAX_TOTAL_SESSIONS": "100000",
    "ARGON2_MEMORY_KIB": "256",
    "ARGON2_TIME_COST": "1",
}


@dataclass
class Client:
    """One concurrent client: its account, its credential, and what the server acknowledged."""

    number: int
    http: httpx.AsyncClient
    token: str = ""
    key_id: str | None = None
    credential: str = ""
    statuses: list[tuple[str, int]] = field(default_factory=list)
    acknowledged: list[tuple[str, str]] = field(default_factory=list)  # (session id, message id)

    def saw(self, what: str, response: httpx.Response) -> httpx.Response:
        self.statuses.append((what, response.status_code))
        return response

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.credential}"}

    @property
    def user_auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir: Path = tmp_path_factory.mktemp("sqlite-load")
    with bastion_server(workdir, GENEROUS) as (url, _log):
        yield url


async def sign_up(client: Client) -> None:
    account = {"email": f"load{client.number}@example.com", "password": PASSWORD}
    client.saw("register", await client.http.post("/api/auth/register", json=account))
    login = client.saw("login", await client.http.post("/api/auth/login", json=account))
    client.token = login.json()["access_token"] if login.status_code == 200 else ""
    client.credential = client.token
    if client.number % 2:
        await new_key(client)


async def new_key(client: Client) -> None:
    """Create the client's key, or rotate it when it has one; chat goes on with the new secret."""
    if client.key_id is None:
        response = await client.http.post(
            "/api/keys", json={"name": f"load-{client.number}", "scopes": ["chat"]}, headers=client.user_auth
        )
        client.saw("key_create", response)
    else:
        rotate = f"/api/keys/{client.key_id}/rotate"
        response = await client.http.post(rotate, json={}, headers=client.user_auth)
        client.saw("key_rotate", response)
    if response.status_code in (200, 201):
        client.key_id = response.json()["id"]
        client.credential = response.json()["key"]


async def send_json(client: Client, session_id: str, text: str) -> None:
    path = f"/api/sessions/{session_id}/messages"
    sent = await client.http.post(path, json={"content": text}, headers=client.auth)
    response = client.saw("message", sent)
    if response.status_code == 200:
        client.acknowledged.append((session_id, response.json()["id"]))


async def send_sse(client: Client, session_id: str, text: str, *, abandon: bool) -> None:
    body = {"content": text, "stream": True}
    async with client.http.stream(
        "POST", f"/api/sessions/{session_id}/messages", json=body, headers=client.auth
    ) as response:
        client.saw("stream", response)
        if response.status_code != 200:
            await response.aread()
            return
        event = ""
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
                if abandon:
                    return  # leaves mid-stream: the connection closes with the reply unfinished
            elif line.startswith("data: ") and event == "done":
                client.acknowledged.append((session_id, json.loads(line.removeprefix("data: "))["id"]))
            elif line.startswith("data: ") and event == "error":
                client.statuses.append(("stream_error", 599))


async def chat(client: Client) -> None:
    for round_number in range(ROUNDS):
        created = client.saw("session", await client.http.post("/api/sessions", json={}, headers=client.auth))
        spare = client.saw("session", await client.http.post("/api/sessions", json={}, headers=client.auth))
        if created.status_code != 201 or spare.status_code != 201:
            return
        session_id = created.json()["id"]
        await send_json(client, session_id, f"I feel tired today, round {round_number}")
        await send_sse(client, session_id, "I could not sleep well", abandon=False)
        await send_sse(client, spare.json()["id"], "Work has been stressful", abandon=True)
        await send_json(client, session_id, "Thank you for listening")
        deleted = await client.http.delete(f"/api/sessions/{spare.json()['id']}", headers=client.auth)
        client.saw("delete", deleted)
        if client.key_id is not None:
            await new_key(client)


async def stored_messages(client: Client) -> set[str]:
    stored: set[str] = set()
    for session_id in {session_id for session_id, _ in client.acknowledged}:
        before: int | None = None
        for _page in range(20):  # bounded: a session here holds a handful of messages
            params = {"limit": "100", **({"before": str(before)} if before is not None else {})}
            path = f"/api/sessions/{session_id}/messages"
            response = client.saw("history", await client.http.get(path, params=params, headers=client.auth))
            if response.status_code != 200:
                break
            page = response.json()
            stored.update(item["id"] for item in page["items"])
            before = page["next"]
            if before is None:
                break
    return stored


async def run_load(url: str) -> list[Client]:
    limits = httpx.Limits(max_connections=4)
    timeout = httpx.Timeout(60.0)
    clients: list[Client] = []
    try:
        for number in range(CLIENTS):
            clients.append(Client(number, httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits)))
        await asyncio.gather(*(sign_up(client) for client in clients))
        await asyncio.gather(*(chat(client) for client in clients))
        histories = await asyncio.gather(*(stored_messages(client) for client in clients))
        for client, stored in zip(clients, histories, strict=True):
            missing = [message for _session, message in client.acknowledged if message not in stored]
            assert not missing, f"client {client.number} lost acknowledged messages {missing}"
    finally:
        await asyncio.gather(*(client.http.aclose() for client in clients))
    return clients


def test_fifty_clients_on_sqlite_never_get_a_5xx(server: str) -> None:
    clients = asyncio.run(run_load(server))
    failures = [(c.number, what, code) for c in clients for what, code in c.statuses if code >= 500]
    assert failures == []
    refused = [(c.number, what, code) for c in clients for what, code in c.statuses if code >= 400]
    assert refused == []
    assert sum(len(c.acknowledged) for c in clients) == CLIENTS * ROUNDS * 3
    exercised = {what for c in clients for what, _ in c.statuses}
    assert exercised >= {"key_create", "key_rotate", "delete", "stream"}
