# SPDX-License-Identifier: Apache-2.0
"""Unhandled exceptions to the error shape, inside the header layers so a 500 still gets them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bastion.db.errors import unavailable
from bastion.errors import BastionError, error_bytes
from bastion.observability.logging import get_logger

if TYPE_CHECKING:
    from bastion.observability.errortracking import ErrorTracker

JSON_CONTENT_TYPE = b"application/json; charset=utf-8"


async def send_error(
    scope: Scope,
    send: Send,
    status: int,
    *,
    code: str | None = None,
    message: str | None = None,
    license_url: str | None = None,
    headers: Iterable[tuple[bytes, bytes]] = (),
    extra: dict[str, object] | None = None,
) -> None:
    """Answer with the error shape from inside a middleware (no framework response needed).

    The response goes out through the layers above the caller, so they still add their headers.
    """
    request_id = (scope.get("state") or {}).get("request_id")
    body = error_bytes(
        status_code=status,
        code=code,
        message=message,
        request_id=request_id if isinstance(request_id, str) else None,
        license_url=license_url,
        extra=extra,
    )
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", JSON_CONTENT_TYPE),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def send_domain_error(scope: Scope, send: Send, exc: BastionError, *, license_url: str | None) -> None:
    """Answer with a domain error (its status, code, message, extra fields and headers) from middleware."""
    await send_error(
        scope,
        send,
        exc.status_code,
        code=exc.code,
        message=exc.message,
        license_url=license_url,
        headers=[(name.lower().encode(), value.encode()) for name, value in exc.headers.items()],
        extra=exc.extra(),
    )


class UnhandledErrors:
    """Turns an exception that escaped the app into a 500 with the error shape and no internals.

    The traceback goes to the log (redacted); the client sees only the code, a generic message and
    the request id to quote to support. If the response had already started (a stream), nothing can
    be sent any more: the error is logged and the connection is left for the server to close.

    An outage of the database (``bastion.db.errors.unavailable``) is not a bug: it answers 503 with
    Retry-After and the error shape, logged as a warning without a traceback.

    With SENTRY_DSN set, each unhandled exception (never an outage) is also reported to Sentry,
    scrubbed (``bastion.observability.errortracking``).
    """

    def __init__(
        self, app: ASGIApp, *, license_url: str | None = None, error_tracker: ErrorTracker | None = None
    ) -> None:
        self.app = app
        self.license_url = license_url
        self.error_tracker = error_tracker
        self.log = get_logger("bastion.errors")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception as exc:
            outage = unavailable(exc)
            if outage is not None:
                self.log.warning(
                    "database_unavailable",
                    path=scope.get("path"),
                    error=type(exc).__name__,
                    response_started=started,
                )
                if not started:
                    await send_domain_error(scope, send, outage, license_url=self.license_url)
                return
            self.log.exception("unhandled_exception", path=scope.get("path"), response_started=started)
            if self.error_tracker is not None:
                self.error_tracker.capture(exc)  # SENTRY_DSN: scrubbed, sent in the background
            if started:
                return
            request_id = (scope.get("state") or {}).get("request_id")
            body = error_bytes(status_code=500, request_id=request_id, license_url=self.license_url)
            await send(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [
                        (b"content-type", b"application/json; charset=utf-8"),
                        (b"content-length", str(len(body)).encode()),
                        (b"cache-control", b"no-store"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
