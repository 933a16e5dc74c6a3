# SPDX-License-Identifier: Apache-2.0
"""A chat message's writes (``MessageLog``, run as write batches: on SQLite one hand-off to the
driver's thread per script) under many clients at once, and read back by the ORM's paths."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import threading
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine

from bastion.chat.models import NewMessage
from bastion.chat.repository import MessageLog, Owner, Turn
from bastion.crypto.randomness import new_id
from bastion.db import batch as batches
from bastion.db.engine import LoopConnection
from bastion.db.session import write_batch
from bastion.db.types import utcnow
from tests.conftest import SettingsFactory
from tests.integration.chat.conftest import chat_app, new_session, other_user

MANY = {"RATE_LIMIT_MESSAGES": "1000/minute", "RATE_LIMIT_MESSAGES_PER_HOUR": 1000}
# How SQLAlchemy stores a UTC datetime on SQLite (what the ORM's own writes look like).
SQLITE_DATETIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}")


async def test_concurrent_messages_on_one_session_keep_unique_contiguous_places(
    make_settings: SettingsFactory, database_url: str
) -> None:
    """Eight clients on one session: every place taken once, in order, and each message's prompt
    holds every message before it (on PostgreSQL also those committed while it waited its turn)."""
    async with chat_app(make_settings, DATABASE_URL=database_url, **MANY) as (app, http, auth):
        sid = (await new_session(http, auth))["id"]
        url = f"/api/sessions/{sid}/messages"
        prompts: list[int] = []  # how many messages each prompt carried, its own included
        provider = app.state.llm
        complete, stream_reply = provider.complete, provider.stream

        def noted(prompt: list[Any]) -> None:
            prompts.append(sum(message.role in ("user", "assistant") for message in prompt))

        async def complete_noting(prompt: list[Any], options: Any) -> Any:
            noted(prompt)
            return await complete(prompt, options)

        def stream_noting(prompt: list[Any], options: Any) -> Any:
            noted(prompt)
            return stream_reply(prompt, options)

        provider.complete, provider.stream = complete_noting, stream_noting

        async def client(number: int) -> list[int]:
            places = []
            for turn in range(3):
                body = {"content": f"client {number} turn {turn}", "stream": number % 2 == 1}
                response = await http.post(url, json=body, headers=auth)
                assert response.status_code == 200, response.text
                if not body["stream"]:
                    places.append(response.json()["seq"])
            return places

        replies = [seq for places in await asyncio.gather(*map(client, range(8))) for seq in places]
        history = (await http.get(url, params={"limit": 100}, headers=auth)).json()["items"]
        session = (await http.get(f"/api/sessions/{sid}", headers=auth)).json()
    assert [item["seq"] for item in history] == list(range(1, 49))
    assert sorted(prompts) == [item["seq"] for item in history if item["role"] == "user"]
    assert session["message_count"] == 48
    assert sorted(item["role"] for item in history).count("assistant") == 24
    by_seq = {item["seq"]: item for item in history}
    assert all(by_seq[seq]["role"] == "assistant" for seq in replies)
    # Each user's message came before its reply; every one is whole.
    assert all(item["status"] == "complete" and item["content"] for item in history)


async def test_a_message_meeting_a_locked_database_is_a_503_and_stores_nothing(
    make_settings: SettingsFactory,
) -> None:
    """Another process holds SQLite's write lock past the busy timeout: the message's first
    hand-off fails (BEGIN IMMEDIATE), the client gets the 503 with Retry-After, nothing is kept,
    and the connection goes back to the pool clean (the next message takes the next place)."""
    async with chat_app(make_settings, **MANY) as (app, http, auth):
        sid = (await new_session(http, auth))["id"]
        url = f"/api/sessions/{sid}/messages"
        assert (await http.post(url, json={"content": "before"}, headers=auth)).status_code == 200
        engine = app.state.engine

        def short_wait(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA busy_timeout=50")
            cursor.close()

        event.listen(engine.sync_engine, "connect", short_wait)
        await engine.dispose()  # new connections wait 50 ms for the lock, not 10 s
        other = sqlite3.connect(make_url(str(engine.url)).database or "", isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            for stream in (False, True):
                refused = await http.post(url, json={"content": "locked out", "stream": stream}, headers=auth)
                assert refused.status_code == 503, refused.text
                detail = refused.json()["detail"]
                assert detail["error"] == "service_unavailable"
                assert refused.headers["Retry-After"] == str(detail["retry_after"])
        finally:
            other.execute("ROLLBACK")
            other.close()
        after = await http.post(url, json={"content": "after"}, headers=auth)
        assert after.status_code == 200, after.text
        history = (await http.get(url, headers=auth)).json()["items"]
    assert [(item["seq"], item["content"]) for item in history[::2]] == [(1, "before"), (3, "after")]
    assert [item["seq"] for item in history] == [1, 2, 3, 4]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_on_sqlite_a_messages_two_transactions_take_the_lock_on_the_event_loops_thread(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch, stream: bool
) -> None:
    """Both of a message's write batches run on the loop (``on_loop``): each tries SQLite's lock
    there at once on the loop's own connection, and gets it when no other process holds it."""
    taken: list[tuple[int, bool]] = []
    try_lock = batches._loop_lock

    def noting(loop: LoopConnection, dialect: Any) -> sqlite3.Connection | None:
        locked = try_lock(loop, dialect)
        taken.append((threading.get_ident(), locked is not None))
        return locked

    monkeypatch.setattr(batches, "_loop_lock", noting)
    async with chat_app(make_settings, **MANY) as (_app, http, auth):
        sid = (await new_session(http, auth))["id"]
        taken.clear()
        response = await http.post(
            f"/api/sessions/{sid}/messages", json={"content": "hello", "stream": stream}, headers=auth
        )
        assert response.status_code == 200, response.text
    assert taken == [(threading.get_ident(), True)] * 2


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_a_message_reads_back_through_the_orm_as_it_was_answered(
    make_settings: SettingsFactory, database_url: str, stream: bool
) -> None:
    async with chat_app(make_settings, DATABASE_URL=database_url, **MANY) as (_app, http, auth):
        sid = (await new_session(http, auth, title="evening"))["id"]
        url = f"/api/sessions/{sid}/messages"
        answered = []
        for text in ("first words", "second words"):
            response = await http.post(url, json={"content": text, "stream": stream}, headers=auth)
            assert response.status_code == 200, response.text
            if stream:
                [done] = [e for e in response.text.split("\n\n") if e.startswith("event: done\n")]
                answered.append(json.loads(done.partition("\ndata: ")[2]))
            else:
                answered.append(response.json())
        history = (await http.get(url, headers=auth)).json()["items"]
        session = (await http.get(f"/api/sessions/{sid}", headers=auth)).json()
        export = json.loads((await http.get("/api/me/export", headers=auth)).content)
        # Someone else's session stays a 404, with nothing stored.
        stranger = await http.post(url, json={"content": "hello"}, headers=await other_user(http))
        assert stranger.status_code == 404, stranger.text
    assert [item["seq"] for item in history] == [1, 2, 3, 4]
    assert [item["content"] for item in history[::2]] == ["first words", "second words"]
    for reply, stored in zip(answered, history[1::2], strict=True):
        assert {k: v for k, v in reply.items() if k != "content_warning"} == stored
    assert session["last_active_at"] == history[-1]["created_at"]
    assert session["message_count"] == 4
    for tokens in ("prompt_tokens", "completion_tokens"):
        assert session["usage"][tokens] == sum(item["usage"][tokens] for item in history[1::2])
    [chat] = export["chat_sessions"]
    for exported, stored in zip(chat["messages"], history, strict=True):
        assert exported["content"] == stored["content"]
        assert {k: exported[k] for k in ("id", "seq", "role", "status", "provider", "model")} == {
            k: stored[k] for k in ("id", "seq", "role", "status", "provider", "model")
        }
        assert _instant(exported["created_at"]) == _instant(stored["created_at"])
    if database_url.startswith("sqlite"):
        with sqlite3.connect(make_url(database_url).database or "") as raw:
            stamps = raw.execute("SELECT created_at FROM chat_messages").fetchall()
            stamps += raw.execute("SELECT created_at, last_active_at FROM chat_sessions").fetchall()
        assert all(SQLITE_DATETIME.fullmatch(value) for row in stamps for value in row), stamps


def _instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def waited_on_a_lock(engine: AsyncEngine) -> None:
    """Return once a session of the database waits for a lock (bounded: 500 looks, 10 ms apart)."""
    waiting = text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE wait_event_type = 'Lock' AND datname = current_database()"
    )
    for _ in range(500):
        async with engine.connect() as connection:
            if (await connection.execute(waiting)).scalar_one():
                return
        await asyncio.sleep(0.01)
    raise AssertionError("nothing waited for a lock")


@pytest.mark.postgres
async def test_a_turn_that_waited_for_another_writer_reads_the_message_it_waited_for(
    make_settings: SettingsFactory, postgres_url: str
) -> None:
    """On PostgreSQL a turn is one statement, whose history is read in the snapshot it began with:
    when its reservation waited for another writer of the session, the message that writer
    committed meanwhile is read again, so the prompt holds every message before its place."""
    async with chat_app(make_settings, DATABASE_URL=postgres_url, **MANY) as (app, http, auth):
        sid = (await new_session(http, auth))["id"]
        url = f"/api/sessions/{sid}/messages"
        assert (await http.post(url, json={"content": "first"}, headers=auth)).status_code == 200
        owner = Owner(user_id=(await http.get("/api/auth/me", headers=auth)).json()["id"], api_key_id=None)
        now = utcnow()

        def message(ciphertext: str) -> NewMessage:
            return NewMessage(
                **{column: None for column in ("provider", "model", "prompt_tokens", "completion_tokens")},
                id=new_id(),
                session_id=sid,
                role="user",
                content_ciphertext=ciphertext,
                status="complete",
                created_at=now,
            )

        async def open_turn(log: MessageLog, added: NewMessage) -> Turn | None:
            return await log.open_turn(
                added, owner, active_since=now - timedelta(hours=1), now=now, history=10
            )

        async def own_turn(added: NewMessage) -> Turn | None:
            async with write_batch(app.state.sessionmaker) as batch:
                return await open_turn(MessageLog(batch), added)

        held, waiting = message("held"), message("waiting")
        async with write_batch(app.state.sessionmaker) as batch:
            first = await open_turn(MessageLog(batch), held)
            second = asyncio.create_task(own_turn(waiting))
            await waited_on_a_lock(app.state.engine)
        turn = await second
    assert first is not None and turn is not None
    assert (first.seq, turn.seq) == (3, 4)
    assert len(turn.recent) == 3 and turn.recent[-1][0] == held.id
