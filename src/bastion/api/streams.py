# SPDX-License-Identifier: Apache-2.0
"""How a stream that already answered 200 reports a failure: in its last event, in the error shape.

Once a stream's first byte is out, no status can be sent any more, and an exception that escapes
the stream cuts the connection without a word (the unhandled-error layer can only log it). A domain
error, or an outage of the database (``bastion.db.errors.unavailable``: the reply could not be
stored), is instead told to the client as the stream's last event. Anything else is a bug and still
propagates.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from bastion.db.errors import unavailable
from bastion.errors import BastionError, error_body, request_id_of
from bastion.observability.logging import get_logger


def stream_failure(exc: Exception, request: Request) -> dict[str, Any] | None:
    """The error detail (``{"error", "message", "request_id", ...}``) a stream ends with when
    ``exc`` interrupts it, or None when ``exc`` is not one to report (let it propagate)."""
    failure = exc if isinstance(exc, BastionError) else unavailable(exc)
    if failure is None:
        return None
    if failure is not exc:
        get_logger("bastion.errors").warning(
            "database_unavailable", path=request.url.path, error=type(exc).__name__, response_started=True
        )
    detail: dict[str, Any] = error_body(
        status_code=failure.status_code,
        code=failure.code,
        message=failure.message,
        request_id=request_id_of(request),
        extra=failure.extra(),
    )["detail"]
    return detail
