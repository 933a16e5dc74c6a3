# SPDX-License-Identifier: Apache-2.0
"""Chat sessions and messages on the offline model, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from bastion.chat.models import ChatMessage, ChatSession
from tests.conftest import SettingsFactory
from tests.integration.auth.helpers import assert_error, audit_events
from tests.integration.chat.conftest import chat_app, new_session, other_user
from tests.support.content_signatures import signed_part


def sse_events(text: str) -> list[tuple[str, dict[str, object]]]:
    events = []
    for block in signed_part(text).strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


async def test_conversation_flow_on_each_backend(
    make_settings: SettingsFactory, migrated_database_url: str
) -> None:
    async with chat_app(make_settings, DATABASE_URL=migrated_database_url) as (app, http, auth):
        session = await new_session(http, auth, title="Evening check-in")
        assert session["title"] == "Evening check-in" and session["message_count"] == 0
        assert len(session["id"]) >= 24
        reply = await http.post(
            f"/api/sessions/{session['id']}/messages",
            json={"content": "I feel anxious about tomorrow."},
            headers=auth,
        )
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["role"] == "assistant" and body["status"] == "complete"
        assert body["offline"] is True and body["provider"] == "offline"
        assert "anxious" in body["content"]
        assert body["usage"]["completion_tokens"] > 0
        history = (await http.get(f"/api/sessions/{session['id']}/messages", headers=auth)).json()
        assert [m["role"] for m in history["items"]] == ["user", "assistant"]
        assert history["items"][0]["content"] == "I feel anxious about tomorrow."
        listed = (await http.get("/api/sessions", headers=auth)).json()
        assert [s["id"] for s in listed["items"]] == [session["id"]]
        assert listed["items"][0]["message_count"] == 2
        # Stored only as ciphertext.
        async with app.state.sessionmaker() as db:
            stored = (await db.scalars(select(ChatMessage.content_ciphertext))).all()
            title = (await db.scalars(select(ChatSession.title_ciphertext))).one()
        assert all(value.startswith("v2.") and "anxious" not in value for value in stored)
        assert title is not None and "Evening" not in title
        deleted = await http.delete(f"/api/sessions/{session['id']}", headers=auth)
        assert deleted.status_code == 204
        audited = await audit_events(app)
        chat_events = [(r.event_type, r.target_id) for r in audited if r.event_type.startswith("chat_")]
        assert chat_events == [
            ("chat_session_created", session["id"]),
            ("chat_session_deleted", session["id"]),
        ]
        assert all("Evening" not in str(r.details) for r in audited)
        assert_error(await http.get(f"/api/sessions/{session['id']}", headers=auth), 404)
        async with app.state.sessionmaker() as db:
            assert (await db.scalars(select(ChatMessage))).all() == []


async def test_stream_by_flag_and_by_accept_header(make_settings: SettingsFactory) -> None:
    async with chat_app(make_settings) as (_app, http, auth):
        session = await new_session(http, auth)
        url = f"/api/sessions/{session['id']}/messages"
        for kwargs in (
            {"json": {"content": "Work is so stressful lately.", "stream": True}, "headers": auth},
            {
                "json": {"content": "Work is so stressful lately."},
                "headers": {**auth, "Accept": "text/event-stream"},
            },
        ):
            response = await http.post(url, **kwargs)  # type: ignore[arg-type]
            assert response.status_code == 200
            assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
            assert response.headers["cache-control"] == "no-store"
            events = sse_events(response.text)
            deltas = "".join(str(data["content"]) for name, data in events if name == "delta")
            name, done = events[-1]
            assert name == "done" and done["content"] == deltas and done["status"] == "complete"
        history = (await http.get(f"{url}?limit=100", headers=auth)).json()["items"]
        assert len(history) == 4


async def test_other_users_and_made_up_ids_get_404(make_settings: SettingsFactory) -> None:
    async with chat_app(make_settings) as (_app, http, auth):
        session = await new_session(http, auth)
        intruder = await other_user(http)
        sid = session["id"]
        for method, path, body in (
            ("GET", f"/api/sessions/{sid}", None),
            ("DELETE", f"/api/sessions/{sid}", None),
            ("GET", f"/api/sessions/{sid}/messages", None),
            ("POST", f"/api/sessions/{sid}/messages", {"content": "hi"}),
        ):
            response = await http.request(method, path, json=body, headers=intruder)
            assert_error(response, 404)
        assert (await http.get("/api/sessions", headers=intruder)).json()["items"] == []
        for made_up in (sid[:-1] + ("A" if sid[-1] != "A" else "B"), "0", "x" * 64):
            assert_error(await http.get(f"/api/sessions/{made_up}", headers=auth), 404)
        for hostile in ("x" * 65, "..%2F..%2Fetc", "a;b"):
            response = await http.get(f"/api/sessions/{hostile}", headers=auth)
            assert response.status_code in (404, 422), response.text
        # The owner's session is untouched.
        assert (await http.get(f"/api/sessions/{sid}", headers=auth)).status_code == 200


async def test_anonymous_callers_are_refused(make_settings: SettingsFactory) -> None:
    async with chat_app(make_settings) as (_app, http, _auth):
        assert_error(await http.post("/api/sessions", json={}), 401)
        assert_error(await http.get("/api/sessions"), 401)


async def test_bad_messages_are_refused_and_nothing_is_stored(make_settings: SettingsFactory) -> None:
    async with chat_app(make_settings, MAX_MESSAGE_LENGTH=50) as (app, http, auth):
        session = await new_session(http, auth)
        url = f"/api/sessions/{session['id']}/messages"
        cases: list[tuple[dict[str, object], int, str]] = [
            ({"json": {"content": ""}}, 422, "validation_error"),
            ({"json": {"content": "   \n\t "}}, 422, "validation_error"),
            ({"json": {"content": "x" * 51}}, 422, "validation_error"),
            ({"json": {"content": 5}}, 422, "validation_error"),
            ({"json": {}}, 422, "validation_error"),
            ({"json": {"content": "hi", "role": "system"}}, 422, "validation_error"),
            ({"json": {"content": "hi", "max_tokens": 0}}, 422, "validation_error"),
            (
                {"content": b'{"content": "hi"', "headers": {"Content-Type": "application/json"}},
                400,
                "malformed_json",
            ),
            (
                {"content": b"content=hi", "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
                415,
                "",
            ),
        ]
        for kwargs, status, code in cases:
            headers = {**auth, **kwargs.pop("headers", {})}  # type: ignore[dict-item]
            response = await http.post(url, headers=headers, **kwargs)  # type: ignore[arg-type]
            assert_error(response, status, code or None)
        too_long = await http.post(url, json={"content": "x" * 51}, headers=auth)
        assert too_long.json()["detail"]["fields"][0]["field"] == "body.content"
        assert "xxxxxxxxxx" not in too_long.text
        async with app.state.sessionmaker() as db:
            assert (await db.scalars(select(ChatMessage))).all() == []
        assert (await http.get(f"/api/sessions/{session['id']}", headers=auth)).json()["message_count"] == 0


async def test_session_caps(make_settings: SettingsFactory) -> None:
    async with chat_app(make_settings, MAX_SESSIONS_PER_API_KEY=2, MAX_TOTAL_SESSIONS=3) as (
        _app,
        http,
        auth,
    ):
        await new_session(http, auth)
        await new_session(http, auth)
        assert_error(await http.post("/api/sessions", json={}, headers=auth), 409, "session_limit")
        other = await other_user(http)
        await new_session(http, other)
        assert_error(await http.post("/api/sessions", json={}, headers=other), 409, "session_limit")


async def test_idle_sessions_expire(make_settings: SettingsFactory) -> None:
    async with chat_app(make_settings, SESSION_TTL_MINUTES=5) as (app, http, auth):
        session = await new_session(http, auth)
        async with app.state.sessionmaker() as db, db.begin():
            await db.execute(
                update(ChatSession).values(last_active_at=datetime.now(UTC) - timedelta(minutes=6))
            )
        assert_error(await http.get(f"/api/sessions/{session['id']}", headers=auth), 404)
        response = await http.post(
            f"/api/sessions/{session['id']}/messages", json={"content": "hi"}, headers=auth
        )
        assert_error(response, 404)
        assert (await http.get("/api/sessions", headers=auth)).json()["items"] == []

        # Expired but within RETENTION_DAYS_APP: kept; past it, the scheduled purge deletes it.
        [job] = [j for j in app.state.maintenance.jobs if j.name == "retention"]
        assert await app.state.maintenance.run_once(job) == 0
        async with app.state.sessionmaker() as db, db.begin():
            await db.execute(
                update(ChatSession).values(last_active_at=datetime.now(UTC) - timedelta(days=31))
            )
        assert await app.state.maintenance.run_once(job) == 1
        async with app.state.sessionmaker() as db:
            assert (await db.scalars(select(ChatSession))).all() == []
            assert (await db.scalars(select(ChatMessage))).all() == []


async def test_history_pages_backwards(make_settings: SettingsFactory) -> None:
    async with chat_app(make_settings) as (_app, http, auth):
        session = await new_session(http, auth)
        url = f"/api/sessions/{session['id']}/messages"
        for i in range(3):
            assert (await http.post(url, json={"content": f"message {i}"}, headers=auth)).status_code == 200
        first = (await http.get(f"{url}?limit=4", headers=auth)).json()
        assert [m["seq"] for m in first["items"]] == [3, 4, 5, 6] and first["next"] == 3
        second = (await http.get(f"{url}?limit=4&before=3", headers=auth)).json()
        assert [m["seq"] for m in second["items"]] == [1, 2] and second["next"] is None
        for bad in ("limit=0", "limit=1000", "before=0", "before=abc"):
            assert_error(await http.get(f"{url}?{bad}", headers=auth), 422)


async def test_concurrent_messages_get_distinct_sequence_numbers(make_settings: SettingsFactory) -> None:
    async with chat_app(make_settings) as (_app, http, auth):
        session = await new_session(http, auth)
        url = f"/api/sessions/{session['id']}/messages"
        responses = await asyncio.gather(
            *(http.post(url, json={"content": f"m{i}"}, headers=auth) for i in range(5))
        )
        assert all(r.status_code == 200 for r in responses)
        items = (await http.get(f"{url}?limit=100", headers=auth)).json()["items"]
        assert sorted(m["seq"] for m in items) == list(range(1, 11))


async def test_a_session_deleted_while_the_model_answers_is_a_404(
    make_settings: SettingsFactory, database_url: str
) -> None:
    """The reply has no session left to go to: the caller is told it is gone, nothing is kept."""
    async with chat_app(make_settings, DATABASE_URL=database_url) as (app, http, auth):
        sid = (await new_session(http, auth))["id"]
        provider = app.state.llm
        complete = provider.complete

        async def deleted_meanwhile(messages: Any, options: Any) -> Any:
            assert (await http.delete(f"/api/sessions/{sid}", headers=auth)).status_code == 204
            return await complete(messages, options)

        provider.complete = deleted_meanwhile
        response = await http.post(f"/api/sessions/{sid}/messages", json={"content": "hi"}, headers=auth)
        assert_error(response, 404)
        async with app.state.sessionmaker() as db:
            assert (await db.scalars(select(ChatMessage))).all() == []


@pytest.mark.parametrize("body", [None, {"title": "x" * 201}, {"title": 5}, {"unknown": 1}])
async def test_session_create_validation(make_settings: SettingsFactory, body: object) -> None:
    async with chat_app(make_settings) as (_app, http, auth):
        if body is None:
            response = await http.post("/api/sessions", headers=auth)
            assert response.status_code == 201
        else:
            assert_error(await http.post("/api/sessions", json=body, headers=auth), 422)


async def test_responses_never_carry_ciphertext(make_settings: SettingsFactory) -> None:
    async with chat_app(make_settings) as (_app, http, auth):
        session = await new_session(http, auth, title="t")
        text = (await http.get(f"/api/sessions/{session['id']}", headers=auth)).text
        assert "ciphertext" not in text and "v2." not in text and "v1." not in text
