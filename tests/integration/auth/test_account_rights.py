# SPDX-License-Identifier: Apache-2.0
"""The account holder's rights over real HTTP, on SQLite and PostgreSQL: export and erasure."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select, update

from bastion.audit.events import AuditEvent
from bastion.audit.models import AuditRecord
from bastion.auth.models import ApiKey, Invitation, PasswordResetToken, User
from bastion.auth.service import Context
from bastion.chat.models import ChatMessage, ChatSession
from bastion.crypto.registry import USER_EMAIL
from bastion.db.base import Base
from bastion.journal.models import JournalEntry
from bastion.privacy.export import AccountExport
from tests.integration.auth.helpers import (
    PASSWORD,
    assert_error,
    audit_events,
    bearer,
    identity_app,
    login,
    make_admin,
    user_session,
)

WRONG = "Not-The-Password-1!"
SECRETS_NEVER_SHOWN = ("password_hash", "token_hash", "secret_hash", "ciphertext", "$argon2", "$2b$")


async def fill_account(http: httpx.AsyncClient, auth: dict[str, str], tag: str) -> dict[str, Any]:
    """A key, a chat session and a journal entry made by the person and by the key: the texts."""
    created = await http.post(
        "/api/keys", json={"name": f"{tag} phone", "scopes": ["chat", "journal"]}, headers=auth
    )
    assert created.status_code == 201, created.text
    key = {"X-API-Key": created.json()["key"]}
    texts = {
        "title": f"{tag} evening walk",
        "message": f"{tag} walked by the lake and felt calmer",
        "journal_title": f"{tag} Sunday",
        "journal": f"{tag} a quiet day at the lake house",
        "key_message": f"{tag} wrote this through the app",
        "key_journal": f"{tag} the app kept this entry",
    }
    for who, message, entry in ((auth, "message", "journal"), (key, "key_message", "key_journal")):
        session = await http.post("/api/sessions", json={"title": texts["title"]}, headers=who)
        assert session.status_code == 201, session.text
        sent = await http.post(
            f"/api/sessions/{session.json()['id']}/messages", json={"content": texts[message]}, headers=who
        )
        assert sent.status_code == 200, sent.text
        wrote = await http.post(
            "/api/journal", json={"title": texts["journal_title"], "content": texts[entry]}, headers=who
        )
        assert wrote.status_code == 201, wrote.text
    return {"key": key, "key_id": created.json()["id"], "secret": created.json()["key"], "texts": texts}


async def erase_me(http: httpx.AsyncClient, password: str, headers: dict[str, str]) -> httpx.Response:
    return await http.request("DELETE", "/api/me", json={"password": password}, headers=headers)


async def export_of(http: httpx.AsyncClient, auth: dict[str, str]) -> tuple[httpx.Response, dict[str, Any]]:
    response = await http.get("/api/me/export", headers=auth)
    assert response.status_code == 200, response.text
    return response, json.loads(response.content)


async def test_export_holds_everything_and_no_secret(settings_for: Callable[..., Any]) -> None:
    async with identity_app(settings_for()) as (app, http):
        user_id, tokens = await user_session(http, "ana@example.com")
        auth = bearer(tokens["access_token"])
        made = await fill_account(http, auth, "ana")
        _, other_tokens = await user_session(http, "ben@example.com")
        theirs = await fill_account(http, bearer(other_tokens["access_token"]), "ben")

        response, document = await export_of(http, auth)
        assert response.headers["content-type"].startswith("application/json")
        assert "attachment" in response.headers["content-disposition"]
        assert response.headers["cache-control"].startswith("no-store")
        assert document["format"] == "bastion-export/1"
        assert document["account"]["id"] == user_id and document["account"]["email"] == "ana@example.com"
        assert document["account"]["role"] == "user" and document["account"]["created_at"]
        [key] = document["api_keys"]
        assert (
            key["id"] == made["key_id"]
            and key["name"] == "ana phone"
            and key["scopes"] == ["chat", "journal"]
        )
        assert key["last_used_ip"] == "127.0.0.1"  # opened from its sealed column
        texts = made["texts"]
        chats = document["chat_sessions"]
        assert {c["api_key_id"] for c in chats} == {None, made["key_id"]}
        assert {c["title"] for c in chats} == {texts["title"]}
        contents = [m["content"] for c in chats for m in c["messages"]]
        assert texts["message"] in contents and texts["key_message"] in contents
        assert {m["role"] for c in chats for m in c["messages"]} == {"user", "assistant"}
        entries = {e["content"]: e for e in document["journal_entries"]}
        assert set(entries) == {texts["journal"], texts["key_journal"]}
        assert entries[texts["journal"]]["title"] == texts["journal_title"]
        events = {e["event_type"] for e in document["audit_events"]}
        assert {"user_registered", "auth_success", "api_key_created", "chat_session_created"} <= events
        assert "journal_entry_created" in events and "account_exported" in events
        assert all(
            user_id in (e["actor_id"], e["target_id"]) or made["key_id"] in (e["actor_id"], e["target_id"])
            for e in document["audit_events"]
        )

        text = response.text
        stored = await stored_values(app, user_id)
        for leak in (*SECRETS_NEVER_SHOWN, made["secret"], PASSWORD, tokens["refresh_token"], *stored):
            assert leak not in text, leak
        for foreign in (*theirs["texts"].values(), "ben@example.com", theirs["key_id"]):
            assert foreign not in text, foreign

        # Paged one row at a time, the document is the same: nothing skipped, nothing repeated.
        service = app.state.identity.service()
        pieces = await AccountExport(identity=service, page_size=1).document(user_id)
        paged = json.loads(b"".join([piece async for piece in pieces]))
        for name in ("account", "api_keys", "chat_sessions", "journal_entries"):
            assert paged[name] == document[name], name
        assert [e["id"] for e in paged["audit_events"]][: len(document["audit_events"])] == [
            e["id"] for e in document["audit_events"]
        ]

        # A person's own: no key exports an account, the admin scope included.
        assert_error(await http.get("/api/me/export", headers=made["key"]), 403)
        _, admin = await make_admin(app, http, "root@example.com")
        admin_key = await http.post(
            "/api/keys", json={"name": "ops", "scopes": ["admin"]}, headers=bearer(admin["access_token"])
        )
        assert_error(await http.get("/api/me/export", headers={"X-API-Key": admin_key.json()["key"]}), 403)
        assert_error(await http.get("/api/me/export"), 401)


async def test_export_is_rate_limited(settings_for: Callable[..., Any]) -> None:
    async with identity_app(settings_for(RATE_LIMIT_EXPORT="2/hour")) as (app, http):
        _, tokens = await user_session(http, "cleo@example.com")
        auth = bearer(tokens["access_token"])
        for _ in range(2):
            await export_of(http, auth)
        refused = await http.get("/api/me/export", headers=auth)
        assert_error(refused, 429, "rate_limited")
        assert int(refused.headers["retry-after"]) > 0
        exported = await audit_events(app, AuditEvent.ACCOUNT_EXPORTED)
        assert len(exported) == 2


async def stored_values(app: FastAPI, user_id: str) -> set[str]:
    """The sealed values and blind index of a user's rows, as stored."""
    values: set[str] = set()
    async with app.state.sessionmaker() as db:
        user = await db.get(User, user_id)
        if user is not None:
            values |= {user.email_ciphertext, user.email_index}
        for column, owner in (
            (ChatSession.title_ciphertext, ChatSession.owner_user_id),
            (JournalEntry.content_ciphertext, JournalEntry.owner_user_id),
            (JournalEntry.title_ciphertext, JournalEntry.owner_user_id),
            (ApiKey.name_ciphertext, ApiKey.user_id),
            (ApiKey.last_used_ip_ciphertext, ApiKey.user_id),
            (ApiKey.secret_hash, ApiKey.user_id),
        ):
            values |= {v for v in (await db.scalars(select(column).where(owner == user_id))).all() if v}
        sessions = select(ChatSession.id).where(ChatSession.owner_user_id == user_id)
        messages = select(ChatMessage.content_ciphertext).where(ChatMessage.session_id.in_(sessions))
        values |= set((await db.scalars(messages)).all())
    return values


async def every_stored_value(app: FastAPI) -> list[tuple[str, str, str]]:
    """(table, column, value as text) of every non-null value in every table."""
    found = []
    async with app.state.sessionmaker() as db:
        for table in Base.metadata.sorted_tables:
            for row in (await db.execute(select(table))).mappings():
                for column, value in row.items():
                    if value is not None:
                        found.append((table.name, column, json.dumps(value, default=str)))
    return found


async def test_erasure_leaves_nothing_of_the_user(settings_for: Callable[..., Any]) -> None:
    async with identity_app(settings_for()) as (app, http):
        user_id, tokens = await user_session(http, "dora@example.com")
        auth = bearer(tokens["access_token"])
        made = await fill_account(http, auth, "dora")
        _, other_tokens = await user_session(http, "eli@example.com")
        other = bearer(other_tokens["access_token"])
        theirs = await fill_account(http, other, "eli")
        _, admin = await make_admin(app, http, "root@example.com")
        # An invitation the user spent: it keeps its id, not the address it was bound to.
        service = app.state.identity.service()
        await service.invite("dora@example.com", Context(), actor_id=None, lifetime=timedelta(days=1))
        async with app.state.sessionmaker() as db, db.begin():
            await db.execute(update(Invitation).values(used_by=user_id))
        # A reset token waiting in the store (written by a background task).
        assert (
            await http.post("/api/auth/password-reset", json={"email": "dora@example.com"})
        ).status_code == 202
        if app.state.identity.background:
            await asyncio.wait(set(app.state.identity.background), timeout=5)
        async with app.state.sessionmaker() as db:
            assert (await db.scalars(select(PasswordResetToken))).all()
        second = await login(http, "dora@example.com")
        stored = await stored_values(app, user_id)
        assert stored
        assert await app.state.session_quota.active(f"user:{user_id}") == 1
        assert await app.state.session_quota.active(f"key:{made['key_id']}") == 1

        # Keys never erase an account, the owner's admin key neither.
        for key in (made["key"], theirs["key"]):
            assert_error(
                await http.request("DELETE", "/api/me", json={"password": PASSWORD}, headers=key), 403
            )
        admin_key = await http.post(
            "/api/keys", json={"name": "ops", "scopes": ["admin"]}, headers=bearer(admin["access_token"])
        )
        admin_key_headers = {"X-API-Key": admin_key.json()["key"]}
        assert_error(
            await http.request("DELETE", "/api/me", json={"password": PASSWORD}, headers=admin_key_headers),
            403,
        )
        # Bad input is a 4xx with the error shape; a wrong password is a counted failure.
        for body in ({}, {"password": ""}, {"password": 5}, {"password": PASSWORD, "extra": 1}):
            assert_error(await http.request("DELETE", "/api/me", json=body, headers=auth), 422)
        assert_error(await erase_me(http, WRONG, auth), 401)
        [failed] = [r for r in await audit_events(app, AuditEvent.ACCOUNT_ERASED) if r.result == "failure"]
        assert failed.target_id == user_id and WRONG not in json.dumps(failed.details)
        assert (await http.get("/api/auth/me", headers=auth)).status_code == 200  # nothing erased yet

        erased = await erase_me(http, PASSWORD, auth)
        assert erased.status_code == 204, erased.text

        # Every way in is closed: both access tokens, the refresh token, the key, the password.
        for headers in (auth, bearer(second["access_token"])):
            assert_error(await http.get("/api/auth/me", headers=headers), 401)
        assert_error(
            await http.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]}), 401
        )
        assert_error(await http.get("/api/sessions", headers=made["key"]), 401)
        assert_error(
            await http.post("/api/auth/login", json={"email": "dora@example.com", "password": PASSWORD}), 401
        )
        assert await app.state.session_quota.active(f"user:{user_id}") == 0
        assert await app.state.session_quota.active(f"key:{made['key_id']}") == 0

        # Nothing of the user in any table: no address, index, sealed value or text; their ids
        # only in the audit trail (and the spent invitation's used_by).
        email_indexes = set(USER_EMAIL.lookup(app.state.cipher, "dora@example.com"))
        plain = {"dora@example.com", *made["texts"].values()}
        for table, column, value in await every_stored_value(app):
            for secret in stored | email_indexes | plain:
                assert secret not in value, (table, column)
            for ident in (user_id, made["key_id"]):
                if ident in value:
                    assert table in ("audit_logs", "access_logs") or (table, column) == (
                        "invitations",
                        "used_by",
                    ), (
                        table,
                        column,
                    )
        async with app.state.sessionmaker() as db:
            naming = AuditRecord.actor_id.in_([user_id, made["key_id"]]) | AuditRecord.target_id.in_(
                [user_id, made["key_id"]]
            )
            records = (await db.scalars(select(AuditRecord).where(naming))).all()
            invitation = (await db.scalars(select(Invitation))).one()
        assert records and all(r.ip_address is None for r in records)
        assert invitation.used_by == user_id and invitation.email_ciphertext is None
        [done] = [r for r in records if r.event_type == AuditEvent.ACCOUNT_ERASED and r.result == "success"]
        assert done.actor_id == user_id and done.target_id == user_id and done.ip_address is None
        assert done.details == {"chat_sessions": 2, "journal_entries": 2, "api_keys": 1, "sessions_ended": 2}

        # The other user's data is untouched.
        _, kept = await export_of(http, other)
        assert kept["account"]["email"] == "eli@example.com"
        assert len(kept["chat_sessions"]) == 2 and len(kept["journal_entries"]) == 2
        assert (await http.get("/api/sessions", headers=theirs["key"])).status_code == 200


async def test_cookie_session_erasure_clears_cookies(settings_for: Callable[..., Any]) -> None:
    async with identity_app(settings_for()) as (_app, http):
        await user_session(http, "finn@example.com")
        signed_in = await http.post(
            "/api/auth/login", json={"email": "finn@example.com", "password": PASSWORD, "mode": "cookie"}
        )
        csrf = {"X-CSRF-Token": signed_in.json()["csrf_token"]}
        # Without the CSRF token a cookie session cannot erase (403 csrf_failed).
        refused = await http.request("DELETE", "/api/me", json={"password": PASSWORD})
        assert refused.status_code == 403
        erased = await http.request("DELETE", "/api/me", json={"password": PASSWORD}, headers=csrf)
        assert erased.status_code == 204, erased.text
        assert any("bastion_access=" in c and "Max-Age=0" in c for c in erased.headers.get_list("set-cookie"))


async def test_wrong_passwords_are_throttled_like_logins(settings_for: Callable[..., Any]) -> None:
    async with identity_app(settings_for()) as (_app, http):
        user_id, tokens = await user_session(http, "gus@example.com")
        auth = bearer(tokens["access_token"])
        statuses = []
        for _ in range(5):
            statuses.append((await erase_me(http, WRONG, auth)).status_code)
        assert statuses == [401] * 3 + [429] * 2
        # The right password is refused too while the wait runs, and the login shares the counts.
        assert_error(await erase_me(http, PASSWORD, auth), 429, "rate_limited")
        assert_error(
            await http.post("/api/auth/login", json={"email": "gus@example.com", "password": PASSWORD}), 429
        )
        assert (await http.get("/api/auth/me", headers=auth)).json()["id"] == user_id


async def test_admin_erasure(settings_for: Callable[..., Any]) -> None:
    async with identity_app(settings_for()) as (app, http):
        user_id, tokens = await user_session(http, "hana@example.com")
        made = await fill_account(http, bearer(tokens["access_token"]), "hana")
        admin_id, admin = await make_admin(app, http, "root@example.com")
        as_admin = bearer(admin["access_token"])
        assert_error(await http.delete(f"/api/admin/users/{admin_id}", headers=as_admin), 403)
        assert_error(await http.delete(f"/api/admin/users/{'f' * 32}", headers=as_admin), 404)
        assert_error(await http.delete("/api/admin/users/not-hex", headers=as_admin), 422)
        assert_error(
            await http.delete(f"/api/admin/users/{admin_id}", headers=bearer(tokens["access_token"])), 403
        )
        assert (await http.delete(f"/api/admin/users/{user_id}", headers=as_admin)).status_code == 204
        assert_error(await http.delete(f"/api/admin/users/{user_id}", headers=as_admin), 404)
        assert_error(await http.get("/api/auth/me", headers=bearer(tokens["access_token"])), 401)
        assert_error(await http.get("/api/journal", headers=made["key"]), 401)
        [done] = await audit_events(app, AuditEvent.ACCOUNT_ERASED)
        assert done.actor_id == admin_id and done.target_id == user_id and done.ip_address == "127.0.0.1"
        async with app.state.sessionmaker() as db:
            assert (await db.get(User, user_id)) is None
            assert (await db.scalars(select(ChatSession))).all() == []
            assert (await db.scalars(select(JournalEntry))).all() == []
        assert (await http.get("/api/auth/me", headers=as_admin)).status_code == 200
