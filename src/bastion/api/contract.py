# SPDX-License-Identifier: Apache-2.0
"""The OpenAPI document as the contract: every answer an operation can give, in the one error shape.

FastAPI documents the success answer and a 422 in its own ``HTTPValidationError`` shape. Bastion's
answers come from more places: the middleware stack (blocked clients 403, rate limits 429, body
limits 413, shared state down 503), authentication (401), the declared permission (403), and the
domain errors of each route. This module completes the document from what each route declares
(its permission, its parameters, its body), so it stays true as routes are added, and replaces
the framework's validation schema with the real error body everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from bastion.api.deps import check_route_access
from bastion.api.responses import CONTENT_WARNING, UTF8JSONResponse
from bastion.crypto.signatures import HEADER as SIGNATURE_HEADER
from bastion.errors import _STATUS_CODES

ERROR_REF = {"$ref": "#/components/schemas/Error"}
RETRY_AFTER = {
    "Retry-After": {"description": "Seconds to wait before trying again", "schema": {"type": "integer"}}
}
RATE_HEADERS = {
    **RETRY_AFTER,
    "X-RateLimit-Limit": {"schema": {"type": "integer"}},
    "X-RateLimit-Remaining": {"schema": {"type": "integer"}},
    "X-RateLimit-Reset": {"schema": {"type": "integer"}},
}
CONTENT_WARNING_HEADER = {
    CONTENT_WARNING: {
        "description": (
            "The content guard flagged the model's reply: its categories, comma-separated "
            "(e.g. profanity). Streams carry them as content_warning in their last event instead"
        ),
        "schema": {"type": "string"},
    }
}
CONTENT_SIGNATURE_HEADER = {
    SIGNATURE_HEADER: {
        "description": (
            "Ed25519 signature of this exact body, the request id, key id and time: "
            "`v1;kid=content-<16 hex>;t=<unix seconds>;rid=<X-Request-ID>;sha256=<hex>;sig=<base64url>`. "
            "Public keys are in /.well-known/jwks.json (docs/signatures.md). A stream carries it in its "
            "last event instead"
        ),
        "schema": {"type": "string"},
    }
}
WWW_AUTHENTICATE = {
    "WWW-Authenticate": {"description": "The scheme to authenticate with", "schema": {"type": "string"}}
}

LICENSE_LINK = {"description": "LICENSE_URL: the operator's license terms", "schema": {"type": "string"}}

# One server-sent event as clients parse it (the schema of a `text/event-stream` answer).
SSE_EVENT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "event": {"type": "string"},
        "data": {"type": "string"},
        "id": {"type": "string"},
        "retry": {"type": "integer"},
    },
}

ERROR_SCHEMAS: dict[str, Any] = {
    "FieldError": {
        "type": "object",
        "required": ["field", "rule", "message"],
        "properties": {
            "field": {"type": "string"},
            "rule": {"type": "string"},
            "message": {"type": "string"},
        },
    },
    "ErrorDetail": {
        "type": "object",
        "required": ["error", "message", "request_id"],
        "properties": {
            "error": {"type": "string", "description": "A stable machine-readable code"},
            "message": {"type": "string"},
            "request_id": {"type": ["string", "null"]},
            "retry_after": {"type": "integer", "description": "With 429 and 503: seconds to wait"},
            "license": {"type": "string", "description": "LICENSE_URL, when the operator sets one"},
            "fields": {"type": "array", "items": {"$ref": "#/components/schemas/FieldError"}},
            "field": {"type": "string", "description": "With guard_blocked: the refused field"},
            "categories": {
                "type": "array",
                "items": {"type": "string"},
                "description": "With guard_blocked: what the content guard found (never the text)",
            },
        },
        "additionalProperties": True,
    },
    "Error": {
        "type": "object",
        "required": ["detail"],
        "properties": {"detail": {"$ref": "#/components/schemas/ErrorDetail"}},
    },
}

# Answers of the upstream model on the routes that call it. Each of them screens its text with the
# content guard: a refused text is a 422 guard_blocked, a flagged reply has a Content-Warning.
MODEL_ROUTES = frozenset(
    {
        ("POST", "/api/sessions/{session_id}/messages"),
        ("POST", "/api/sessions/{session_id}/voice-chat"),
        ("POST", "/v1/chat/completions"),
    }
)


def _statuses(method: str, path: str, operation: Mapping[str, Any], access: str) -> set[int]:
    """The error statuses an operation can answer, from what its route declares."""
    # Every request passes the middleware: a blocked client (403), the global limit (429), and
    # shared state or the database unavailable (503).
    statuses = {403, 429, 503}
    if access != "public":
        statuses.add(401)
    parameters = operation.get("parameters", [])
    if any(p.get("in") == "path" for p in parameters):
        statuses |= {404, 422}
    if parameters:
        statuses.add(422)
    if "requestBody" in operation or method in ("POST", "PUT", "PATCH"):
        statuses |= {400, 413, 415, 422}
    if (method, path) in MODEL_ROUTES:
        statuses |= {502, 504}
    return statuses


GUARD_REFUSAL = (
    "The request is invalid (validation_error), or the content guard refused its text "
    "(guard_blocked, with the field and the categories)"
)


def _error_response(status: int, description: str | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description or _STATUS_CODES.get(status, ("error", "The request failed"))[1],
        "content": {UTF8JSONResponse.media_type: {"schema": ERROR_REF}},
    }
    if status in (429, 503):
        response["headers"] = RATE_HEADERS if status == 429 else RETRY_AFTER
    elif status == 401:
        response["headers"] = WWW_AUTHENTICATE
    return response


def complete(
    document: dict[str, Any], access: Mapping[tuple[str, str], str], *, license_header: str | None = None
) -> dict[str, Any]:
    """Add every error answer to every operation; the one error schema replaces FastAPI's.

    With ``license_header`` (LICENSE_URL is set) every answer documents that header too.
    """
    components = document.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    components.update(ERROR_SCHEMAS)
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            declared = access.get((method.upper(), path), "public")
            responses: dict[str, Any] = operation["responses"]
            if (method.upper(), path) in MODEL_ROUTES:
                _document_guard(responses)
            declared_errors = {int(key) for key in responses if key.isdigit() and int(key) >= 400}
            for status in _statuses(method.upper(), path, operation, declared) | declared_errors:
                key = str(status)
                existing = responses.get(key)
                if existing is None or key == "422":
                    responses[key] = _error_response(
                        status, existing.get("description") if existing else None
                    )
                elif "content" not in existing:  # declared by the route with a description only
                    responses[key] = _error_response(status, existing.get("description"))
            if license_header is not None:
                for response in responses.values():
                    response.setdefault("headers", {})[license_header] = LICENSE_LINK
    return document


def _document_guard(responses: dict[str, Any]) -> None:
    """The content guard's answers (the 422 refusal, the Content-Warning of a flagged reply) and the
    signature of every model reply."""
    responses["422"] = {"description": GUARD_REFUSAL}
    for key, response in responses.items():
        if key.startswith("2"):
            response.setdefault("headers", {}).update({**CONTENT_WARNING_HEADER, **CONTENT_SIGNATURE_HEADER})


def install_contract(app: FastAPI) -> None:
    """Serve the completed document at the app's OpenAPI URL (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
                servers=app.servers,
            )
            settings = getattr(app.state, "settings", None)
            license_header = settings.license_header if settings and settings.license_url else None
            app.openapi_schema = complete(
                document, check_route_access(app.routes, strict=False), license_header=license_header
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
