# SPDX-License-Identifier: Apache-2.0
"""Domain errors and the one error shape every response uses.

Below ``api/`` code raises these; this module alone turns them (and framework errors) into HTTP:
``{"detail": {"error": code, "message": text, "request_id": id}}``, plus ``license`` when
LICENSE_URL is set and ``retry_after`` on 429/503.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response
from starlette.routing import Match

from bastion.api.responses import UTF8JSONResponse


class BastionError(Exception):
    """A failure with a stable code, an HTTP status and a message safe to show to clients."""

    status_code: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"
    default_message: ClassVar[str] = "The request could not be processed"

    def __init__(self, message: str | None = None, *, headers: Mapping[str, str] | None = None) -> None:
        self.message = message or self.default_message
        self.headers = dict(headers or {})
        super().__init__(self.message)

    def extra(self) -> dict[str, Any]:
        """Extra fields for the error body."""
        return {}


class NotFound(BastionError):
    status_code = 404
    code = "not_found"
    default_message = "Not found"


class Unauthorized(BastionError):
    status_code = 401
    code = "unauthorized"
    default_message = "Authentication required"

    def __init__(self, message: str | None = None, *, scheme: str = "Bearer") -> None:
        super().__init__(message, headers={"WWW-Authenticate": scheme})


class Forbidden(BastionError):
    status_code = 403
    code = "forbidden"
    default_message = "Not allowed"


class Blocked(Forbidden):
    """The client (IP or API key) is under a temporary block after repeated abuse."""

    code = "blocked"
    default_message = "Access from this client is temporarily blocked"


class Conflict(BastionError):
    status_code = 409
    code = "conflict"
    default_message = "The request conflicts with the current state"


class BlockRefused(Conflict):
    """A block that would lock the operator out (``bastion.ratelimit.lockout``), not forced."""

    code = "block_refused"

    def __init__(self, why: str, risks: Sequence[str]) -> None:
        self.risks = tuple(risks)
        super().__init__(
            f"Refused: this block could lock out its own administrators: {why}. "
            'Send "force": true to place it anyway.'
        )

    def extra(self) -> dict[str, Any]:
        return {"risks": list(self.risks)}


class MalformedJson(BastionError):
    status_code = 400
    code = "malformed_json"
    default_message = "The request body is not valid JSON"


class UnsupportedMediaType(BastionError):
    status_code = 415
    code = "unsupported_media_type"
    default_message = "The request body must be application/json"


class _RetryableError(BastionError):
    def __init__(self, message: str | None = None, *, retry_after: float) -> None:
        self.retry_after = max(1, math.ceil(retry_after))
        super().__init__(message, headers={"Retry-After": str(self.retry_after)})

    def extra(self) -> dict[str, Any]:
        return {"retry_after": self.retry_after}


class RateLimited(_RetryableError):
    status_code = 429
    code = "rate_limited"
    default_message = "Too many requests"


class ServiceUnavailable(_RetryableError):
    status_code = 503
    code = "service_unavailable"
    default_message = "The service is temporarily unavailable"


# Framework statuses that reach the handlers without a domain error.
_STATUS_CODES = {
    400: ("bad_request", "The request could not be processed"),
    401: ("unauthorized", "Authentication required"),
    403: ("forbidden", "Not allowed"),
    404: ("not_found", "Not found"),
    405: ("method_not_allowed", "Method not allowed"),
    406: ("not_acceptable", "Not acceptable"),
    409: ("conflict", "The request conflicts with the current state"),
    413: ("payload_too_large", "The request body is too large"),
    415: ("unsupported_media_type", "Unsupported content type"),
    422: ("validation_error", "The request is invalid"),
    429: ("rate_limited", "Too many requests"),
    500: ("internal_error", "Internal server error"),
    503: ("service_unavailable", "The service is temporarily unavailable"),
}


def error_body(
    *,
    status_code: int,
    code: str | None = None,
    message: str | None = None,
    request_id: str | None,
    license_url: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    default_code, default_message = _STATUS_CODES.get(status_code, ("error", "The request failed"))
    detail: dict[str, Any] = {
        "error": code or default_code,
        "message": message or default_message,
        "request_id": request_id,
    }
    if extra:
        detail.update(extra)
    if license_url:
        detail["license"] = license_url
    return {"detail": detail}


def error_bytes(**kwargs: Any) -> bytes:
    """The error body encoded, for middleware that answers without a framework response."""
    return json.dumps(error_body(**kwargs), separators=(",", ":")).encode()


def request_id_of(request: Request) -> str | None:
    state = request.scope.get("state") or {}
    value = state.get("request_id")
    return value if isinstance(value, str) else None


def _license_of(request: Request) -> str | None:
    settings = getattr(request.app.state, "settings", None)
    return getattr(settings, "license_url", None)


def error_response(
    request: Request,
    status_code: int,
    *,
    code: str | None = None,
    message: str | None = None,
    extra: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = error_body(
        status_code=status_code,
        code=code,
        message=message,
        request_id=request_id_of(request),
        license_url=_license_of(request),
        extra=extra,
    )
    return UTF8JSONResponse(body, status_code=status_code, headers=dict(headers or {}))


# A field path names members the client sent (an unexpected one is named as sent): cut short,
# so a refusal is never a magnified copy of a body of long member names.
MAX_FIELD_PATH_CHARS = 200


def _field_errors(errors: Sequence[Any]) -> list[dict[str, str]]:
    """Name the field and the rule, never the submitted value (a rejected password stays unsaid)."""
    fields = []
    for error in errors[:50]:
        loc = [str(part) for part in error.get("loc", ())]
        fields.append(
            {
                "field": ".".join(loc)[:MAX_FIELD_PATH_CHARS],
                "rule": str(error.get("type", "invalid")),
                "message": str(error.get("msg", "Invalid value")),
            }
        )
    return fields


async def _bastion_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, BastionError):  # pragma: no cover - registered for BastionError only
        raise exc
    return error_response(
        request,
        exc.status_code,
        code=exc.code,
        message=exc.message,
        extra=exc.extra(),
        headers=exc.headers,
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, StarletteHTTPException):  # pragma: no cover
        raise exc
    # The detail of framework exceptions is a developer's text; clients get the generic message.
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        # The router names only the first route that matched the path; a path may have several
        # (GET and POST /api/keys are two routes): Allow lists every method of the path.
        headers["Allow"] = ", ".join(sorted(allowed_methods(request)))
    return error_response(request, exc.status_code, headers=headers)


def allowed_methods(request: Request) -> set[str]:
    """Every method some route serves at the request's path."""
    scope = dict(request.scope)
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.routes):
        match, _ = route.matches(scope)
        if match is not Match.NONE:
            methods |= set(route.methods or ())
    return methods


async def _validation_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, RequestValidationError):  # pragma: no cover
        raise exc
    errors = list(exc.errors())
    if any(error.get("type") == "json_invalid" for error in errors):
        return error_response(
            request, MalformedJson.status_code, code=MalformedJson.code, message=MalformedJson.default_message
        )
    return error_response(request, 422, extra={"fields": _field_errors(errors)})


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(BastionError, _bastion_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)


# -- model provider ----------------------------------------------------------------------------


class UpstreamUnavailable(_RetryableError):
    """The model provider is failing or rate-limiting us; the breaker may be open."""

    status_code = 503
    code = "upstream_unavailable"
    default_message = "The model provider is temporarily unavailable"


class UpstreamError(BastionError):
    """The model provider answered with something unusable. Its body is never passed on."""

    status_code = 502
    code = "upstream_error"
    default_message = "The model provider failed to answer"


class UpstreamTimeout(BastionError):
    status_code = 504
    code = "upstream_timeout"
    default_message = "The model provider did not answer in time"


class NotAvailable(BastionError):
    """A capability this deployment does not offer (for example transcription on the offline model)."""

    status_code = 501
    code = "not_available"
    default_message = "Not available in this deployment"


# -- identity ------------------------------------------------------------------------------------


class PasswordRejected(BastionError):
    """The password breaks the policy; ``rules`` names every failed rule, never the password."""

    status_code = 422
    code = "password_policy"
    default_message = "The password does not meet the password policy"

    def __init__(self, rules: Sequence[str], messages: Sequence[str], score: int) -> None:
        self.rules = list(rules)
        self.messages = list(messages)
        self.score = score
        super().__init__()

    def extra(self) -> dict[str, Any]:
        return {"rules": self.rules, "hints": self.messages, "score": self.score}


class CsrfRejected(Forbidden):
    code = "csrf_failed"
    default_message = "Missing or invalid CSRF token"


# -- request content ---------------------------------------------------------------------------


class GuardBlocked(BastionError):
    """The content guard refused a text (INJECTION_ACTION=block, or an empty or repetitive text).

    The body names the field and the guard's categories, never the text.
    """

    status_code = 422
    code = "guard_blocked"
    default_message = "The content was refused by the content guard"

    def __init__(self, field: str, categories: Sequence[str]) -> None:
        self.field = field
        self.categories = list(categories)
        super().__init__()

    def extra(self) -> dict[str, Any]:
        return {"field": self.field, "categories": self.categories}


class PayloadTooLarge(BastionError):
    status_code = 413
    code = "payload_too_large"
    default_message = "The request body is too large"


class InvalidField(BastionError):
    """A rule checked after parsing (configured limits, blank text), in the validation error shape."""

    status_code = 422
    code = "validation_error"
    default_message = "The request is invalid"

    def __init__(self, field: str, rule: str, message: str) -> None:
        self.field = field
        self.rule = rule
        self.detail_message = message
        super().__init__()

    def extra(self) -> dict[str, Any]:
        return {"fields": [{"field": self.field, "rule": self.rule, "message": self.detail_message}]}
