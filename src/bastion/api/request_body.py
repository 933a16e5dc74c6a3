# SPDX-License-Identifier: Apache-2.0
"""The body of a request read as FastAPI's handler reads it for a JSON body parameter.

``DirectRoute`` answers routes with a JSON model body itself, so it must read the body exactly
as FastAPI's ``get_request_handler`` does, and fail exactly as it fails: an empty body is no
body (a required one is then "missing"), only a JSON Content-Type (``application/json`` or
``+json``) is parsed, a body sent without one stays bytes unless the route turned strict
Content-Type checking off, malformed JSON is FastAPI's ``json_invalid`` validation error raised
before any dependency runs, and any other failure to read is FastAPI's 400 (or the body limit's
error under a size limit).
"""

from __future__ import annotations

import email.message
import json
from typing import Any

from fastapi._body_limit import get_body_limit_error
from fastapi._compat import Undefined
from fastapi.exceptions import EndpointContext, RequestValidationError
from fastapi.routing import _extract_endpoint_context
from starlette.exceptions import HTTPException
from starlette.middleware.body_limit import MAX_BODY_SIZE_SCOPE_KEY
from starlette.requests import Request

#: Whether FastAPI parses a body sent with a given Content-Type as JSON, by header value: parsing
#: the header the way FastAPI does (``email.message``) costs ~2 µs a request. Bounded, as callers
#: choose the values.
_JSON_CONTENT_TYPES: dict[str, bool] = {}
_JSON_CONTENT_TYPES_KEPT = 64


def _json_content_type(value: str) -> bool:
    known = _JSON_CONTENT_TYPES.get(value)
    if known is None:
        message = email.message.Message()
        message["content-type"] = value
        known = False
        if message.get_content_maintype() == "application":
            subtype = message.get_content_subtype()
            known = subtype == "json" or subtype.endswith("+json")
        if len(_JSON_CONTENT_TYPES) < _JSON_CONTENT_TYPES_KEPT:
            _JSON_CONTENT_TYPES[value] = known
    return known


async def _json_body(request: Request, strict_content_type: bool) -> Any:
    """The body as FastAPI's handler reads it for a JSON body parameter: ``Undefined`` when
    empty, the parsed JSON when the Content-Type says JSON (or is absent and not required), else
    the bytes (which then fail validation)."""
    body = await request.body()
    if not body:
        return Undefined
    content_type = request.headers.get("content-type")
    if (not content_type and not strict_content_type) or (content_type and _json_content_type(content_type)):
        return await request.json()
    return body


def endpoint_context(endpoint: Any, path: str, request: Request) -> EndpointContext:
    """The context FastAPI gives the validation errors of a request (its cached entry, updated
    in place as FastAPI updates it)."""
    context = _extract_endpoint_context(endpoint)
    context["path"] = f"{request.method} {request.scope.get('root_path', '').rstrip('/')}{path}"
    return context


async def read_json_body(request: Request, strict_content_type: bool, endpoint: Any, path: str) -> Any:
    """The body, or FastAPI's exception for one it cannot parse (see ``get_request_handler``)."""
    try:
        return await _json_body(request, strict_content_type)
    except json.JSONDecodeError as e:
        error = {
            "type": "json_invalid",
            "loc": ("body", e.pos),
            "msg": "JSON decode error",
            "input": {},
            "ctx": {"error": e.msg},
        }
        raise RequestValidationError(
            [error], body=e.doc, endpoint_ctx=endpoint_context(endpoint, path, request)
        ) from e
    except HTTPException:
        raise  # a middleware's, raised again as FastAPI does
    except Exception as e:
        if MAX_BODY_SIZE_SCOPE_KEY in request.scope and (limit_error := get_body_limit_error(e)):
            raise limit_error from e
        raise HTTPException(status_code=400, detail="There was an error parsing the body") from e
