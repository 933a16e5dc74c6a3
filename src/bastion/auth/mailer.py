# SPDX-License-Identifier: Apache-2.0
"""Outgoing mail for password resets.

``SmtpMailer`` sends through SMTP_HOST (STARTTLS by default, implicit TLS or, outside production,
plain) with smtplib on a worker thread. With no SMTP_HOST, development uses ``LogMailer``, which
writes the message, reset link included, to the log: acceptable only on a developer's machine,
which is why any other environment gets ``NullMailer`` (nothing is sent, a warning is logged
without the token).
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol

from bastion.observability.logging import get_logger
from bastion.settings import Settings

SMTP_TIMEOUT_SECONDS = 10


@dataclass(frozen=True, slots=True)
class Mail:
    to: str
    subject: str
    body: str


class Mailer(Protocol):
    async def send(self, mail: Mail) -> None:
        """Deliver ``mail`` or raise; callers log failures without the body."""


class SmtpMailer:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        sender: str,
        security: str = "starttls",
        user: str | None = None,
        password: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.sender = sender
        self.security = security
        self.user = user
        self.password = password

    def _send_blocking(self, mail: Mail) -> None:
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = mail.to
        message["Subject"] = mail.subject
        message.set_content(mail.body)
        context = ssl.create_default_context()
        smtp: smtplib.SMTP
        if self.security == "tls":
            smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=SMTP_TIMEOUT_SECONDS, context=context)
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=SMTP_TIMEOUT_SECONDS)
        with smtp:
            if self.security == "starttls":
                smtp.starttls(context=context)
            if self.user and self.password:
                smtp.login(self.user, self.password)
            smtp.send_message(message)

    async def send(self, mail: Mail) -> None:
        await asyncio.to_thread(self._send_blocking, mail)


class LogMailer:
    """Development only: the mail, token included, goes to the log."""

    async def send(self, mail: Mail) -> None:
        get_logger("bastion.mail").warning(
            "development_mail", to=mail.to, subject=mail.subject, body=mail.body
        )


class NullMailer:
    async def send(self, mail: Mail) -> None:
        get_logger("bastion.mail").warning("mail_not_sent", reason="SMTP_HOST is not configured")


def mailer_for(settings: Settings) -> Mailer:
    if settings.smtp_host:
        return SmtpMailer(
            host=settings.smtp_host,
            port=settings.smtp_port,
            sender=settings.smtp_from or f"bastion@{settings.smtp_host}",
            security=settings.smtp_security,
            user=settings.smtp_user,
            password=settings.secret("SMTP_PASSWORD"),
        )
    if settings.environment == "development":
        return LogMailer()
    return NullMailer()
