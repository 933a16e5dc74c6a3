# SPDX-License-Identifier: Apache-2.0
"""JSON request bodies read as RFC 8259 says JSON is exchanged between systems, before any route.

Python's ``json`` module is lenient where a security layer should not be: it keeps the last of
two members with the same name (a proxy or WAF in front that keeps the first would judge another
request than Bastion runs: ``{"role": "user", "role": "admin"}``), accepts ``NaN`` and
``Infinity`` (and turns ``1e999`` into infinity) though JSON has neither, decodes UTF-16 and
UTF-32 though JSON between systems is UTF-8, and fails with ``RecursionError`` rather than a
decode error on deep nesting. FastAPI parses the body before any route dependency runs, so the
check has to sit here, in front of the router: a body that breaks any of these rules is a 400
``malformed_json`` whatever route it was sent to, and FastAPI only ever parses what passed.
"""

from __future__ import annotations

import json
import math
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bastion.errors import MalformedJson
from bastion.web.body_limit import is_json_type
from bastion.web.errors import send_domain_error

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    members = dict(pairs)
    if len(members) != len(pairs):
        raise ValueError("duplicate member name")
    return members


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError("number out of range")
    return number


def strict_loads(body: bytes) -> Any:
    """Parse ``body`` as strict JSON; ``ValueError`` for anything RFC 8259 does not allow."""
    # UTF-8 only; a byte-order mark is not JSON text either (RFC 8259 section 8.1).
    text = body.decode("utf-8")
    try:
        return json.loads(
            text, object_pairs_hook=_unique_members, parse_constant=_no_constant, parse_float=_finite
        )
    except RecursionError:
        raise ValueError("nested too deeply") from None


class StrictJsonBodies:
    """Refuses a JSON-typed request body that is not strict JSON, with the error shape.

    The body is read whole here (``BodyLimit`` outside has capped its size and its arrival time)
    and handed on unchanged; bodies of other types, and bodiless requests, pass untouched.
    """

    def __init__(self, app: ASGIApp, *, license_url: str | None = None) -> None:
        self.app = app
        self.license_url = license_url

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers", ())
        content_type = next((value for name, value in headers if name == b"content-type"), None)
        if not is_json_type(content_type):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left (or BodyLimit answered)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body:
            try:
                strict_loads(body)
            except ValueError:  # UnicodeDecodeError and JSONDecodeError are ValueErrors too
                await send_domain_error(scope, send, MalformedJson(), license_url=self.license_url)
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
