# SPDX-License-Identifier: Apache-2.0
"""Password reset by mail, through a real local SMTP server (aiosmtpd)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import Message
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import update

from bastion.audit.events import AuditEvent
from bastion.auth.models import PasswordResetToken
from tests.conftest import SettingsFactory
from tests.integration.auth.helpers import (
    NEW_PASSWORD,
    PASSWORD,
    assert_error,
    audit_events,
    bearer,
    identity_app,
    identity_settings,
    login,
    user_session,
)
from tests.support.servers import free_port


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"

    async def wait_for(self, count: int) -> list[Message]:
        for _ in range(200):
            if len(self.messages) >= count:
                return self.messages
            await asyncio.sleep(0.025)
        raise AssertionError(f"expected {count} mail(s), got {len(self.messages)}")


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def reset_token(message: Message) -> str:
    body = message.get_payload(decode=True)
    assert isinstance(body, bytes)
    match = re.search(r"^([A-Za-z0-9_-]{40,})\r?$", body.decode(), re.M)
    assert match, body
    return match.group(1)


async def test_password_reset_by_mail(make_settings: SettingsFactory, smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    settings = identity_settings(
        make_settings,
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=port,
        SMTP_SECURITY="none",
        SMTP_FROM="noreply@bastion.test",
    )
    async with identity_app(settings) as (app, http):
        _, old = await user_session(http, "reset@example.com")
        unknown = await http.post("/api/auth/password-reset", json={"email": "nobody@example.com"})
        invalid = await http.post("/api/auth/password-reset", json={"email": "not an email"})
        known = await http.post("/api/auth/password-reset", json={"email": "Reset@Example.com"})
        assert unknown.status_code == invalid.status_code == known.status_code == 202
        assert unknown.json() == known.json() == {"status": "accepted"}
        [mail] = await inbox.wait_for(1)
        assert mail["To"] == "reset@example.com" and mail["From"] == "noreply@bastion.test"
        token = reset_token(mail)

        weak = await http.post(
            "/api/auth/password-reset/confirm", json={"token": token, "new_password": "weak"}
        )
        assert_error(weak, 422, "password_policy")  # the token survives a policy refusal
        done = await http.post(
            "/api/auth/password-reset/confirm", json={"token": token, "new_password": NEW_PASSWORD}
        )
        assert done.status_code == 204
        assert_error(await http.get("/api/auth/me", headers=bearer(old["access_token"])), 401)
        assert_error(await http.post("/api/auth/refresh", json={"refresh_token": old["refresh_token"]}), 401)
        assert_error(
            await http.post("/api/auth/login", json={"email": "reset@example.com", "password": PASSWORD}), 401
        )
        await login(http, "reset@example.com", NEW_PASSWORD)
        # Single use.
        again = await http.post(
            "/api/auth/password-reset/confirm", json={"token": token, "new_password": "Third-Choice-5z#"}
        )
        assert_error(again, 401)
        assert len(inbox.messages) == 1  # nothing was sent for the unknown address
        events = [r.event_type for r in await audit_events(app)]
        assert AuditEvent.PASSWORD_RESET_REQUESTED in events and AuditEvent.PASSWORD_RESET_COMPLETED in events
        assert all(token not in str(r.details) for r in await audit_events(app))

        # An expired token (older than PASSWORD_RESET_MINUTES) is refused.
        assert (
            await http.post("/api/auth/password-reset", json={"email": "reset@example.com"})
        ).status_code == 202
        [_, second] = await inbox.wait_for(2)
        async with app.state.sessionmaker() as session, session.begin():
            # As if the 30 minutes had passed: the token's expiry is now in the past.
            await session.execute(
                update(PasswordResetToken).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
            )
        late = await http.post(
            "/api/auth/password-reset/confirm",
            json={"token": reset_token(second), "new_password": "Fourth-Choice-6w$"},
        )
        assert_error(late, 401)


async def test_refresh_tokens_are_not_reset_tokens(
    make_settings: SettingsFactory, smtp: tuple[Inbox, int]
) -> None:
    inbox, port = smtp
    settings = identity_settings(make_settings, SMTP_HOST="127.0.0.1", SMTP_PORT=port, SMTP_SECURITY="none")
    async with identity_app(settings) as (_app, http):
        _, tokens = await user_session(http, "purpose@example.com")
        confused = await http.post(
            "/api/auth/password-reset/confirm",
            json={"token": tokens["refresh_token"], "new_password": NEW_PASSWORD},
        )
        assert_error(confused, 401)
        assert (
            await http.post("/api/auth/password-reset", json={"email": "purpose@example.com"})
        ).status_code == 202
        [mail] = await inbox.wait_for(1)
        as_refresh = await http.post("/api/auth/refresh", json={"refresh_token": reset_token(mail)})
        assert_error(as_refresh, 401)


async def test_development_without_smtp_logs_the_mail(
    make_settings: SettingsFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = identity_settings(make_settings, ENVIRONMENT="development")
    async with identity_app(settings) as (_app, http):
        await user_session(http, "devmail@example.com")
        assert (
            await http.post("/api/auth/password-reset", json={"email": "devmail@example.com"})
        ).status_code == 202
        seen = ""
        for _ in range(100):
            captured = capsys.readouterr()
            seen += captured.out + captured.err
            if "development_mail" in seen:
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("the development mail was not logged")
