# SPDX-License-Identifier: Apache-2.0
"""Request content types: JSON routes accept JSON and nothing else."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fastapi import Request
from fastapi.params import Depends

from bastion.api.direct import DirectRoute
from bastion.errors import InvalidField, MalformedJson, UnsupportedMediaType

JSON_MEDIA_TYPE = "application/json"
#: Methods whose requests carry a body a route may read.
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    if length is not None:
        return length.strip() != "0"
    return "transfer-encoding" in request.headers


async def require_json(request: Request) -> None:
    """Dependency: a request that has a body (or claims a type) must send ``application/json``.

    FastAPI parses a JSON body whatever the Content-Type says; refusing ``text/plain`` and form
    types means a cross-site form or a "simple" CORS request cannot reach a JSON route without a
    preflight (the CSRF class of FastAPI CVE-2021-32677). Bodiless requests (GET, a POST /logout)
    pass, so the dependency can be set on a whole router:
    ``APIRouter(dependencies=[Depends(require_json)])``, or ``APIRouter(route_class=JsonRoute)``
    to have it only on the routes that can take a body.
    """
    content_type = request.headers.get("content-type")
    if content_type is None and not _has_body(request):
        return
    mime, _, params = (content_type or "").partition(";")
    if mime.strip().lower() != JSON_MEDIA_TYPE:
        raise UnsupportedMediaType()
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise UnsupportedMediaType("JSON must be encoded as UTF-8")
    if _has_body(request):
        # JSON may escape a lone UTF-16 surrogate ("\\ud800"): valid JSON, but text that no
        # encoder (database driver, cipher, upstream request, log line) accepts. Refused here
        # once for every JSON route instead of failing deep inside one of them.
        try:
            # Cached on the request: the route's own body parsing reads the same value.
            parsed = await request.json()
        except ValueError:  # a route without a body parameter still gets a malformed one
            raise MalformedJson() from None
        _refuse_unencodable(parsed, "body")


def _encodable(text: str, path: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidField(path, "unicode", "Text must be valid Unicode (no lone surrogates)") from None


def _refuse_unencodable(value: object, where: str) -> None:
    pending: list[tuple[object, str]] = [(value, where)]
    while pending:
        item, path = pending.pop()
        if isinstance(item, str):
            _encodable(item, path)
        elif isinstance(item, dict):
            for key, child in item.items():
                _encodable(key, path)  # before the key becomes part of a field path
                pending.append((child, f"{path}.{key}"))
        elif isinstance(item, list):
            pending.extend((child, f"{path}.{index}") for index, child in enumerate(item))


class JsonRoute(DirectRoute):
    """A route of a JSON router: ``require_json`` runs first where the method can carry a body.

    ``APIRouter(route_class=JsonRoute)`` instead of ``dependencies=[Depends(require_json)]``: a
    GET route reads no body, and FastAPI solves every dependency on every request (about 12 µs
    each), so the most frequent reads do not pay for a check that cannot refuse them.
    """

    def __init__(
        self,
        path: str,
        endpoint: Callable[..., Any],
        *,
        methods: set[str] | list[str] | None = None,
        dependencies: Sequence[Depends] | None = None,
        **kwargs: Any,
    ) -> None:
        takes_body = methods is None or not BODY_METHODS.isdisjoint(method.upper() for method in methods)
        if takes_body:
            dependencies = [Depends(require_json), *(dependencies or ())]
        super().__init__(path, endpoint, methods=methods, dependencies=dependencies, **kwargs)
