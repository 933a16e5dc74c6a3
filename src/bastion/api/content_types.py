# SPDX-License-Identifier: Apache-2.0
"""Request content types: JSON routes accept JSON and nothing else."""

from __future__ import annotations

from fastapi import Request

from bastion.errors import UnsupportedMediaType

JSON_MEDIA_TYPE = "application/json"


def _has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    if length is not None:
        return length.strip() != "0"
    return "transfer-encoding" in request.headers


def require_json(request: Request) -> None:
    """Dependency: a request that has a body (or claims a type) must send ``application/json``.

    FastAPI parses a JSON body whatever the Content-Type says; refusing ``text/plain`` and form
    types means a cross-site form or a "simple" CORS request cannot reach a JSON route without a
    preflight (the CSRF class of FastAPI CVE-2021-32677). Bodiless requests (GET, a POST /logout)
    pass, so the dependency can be set on a whole router:
    ``APIRouter(dependencies=[Depends(require_json)])``.
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
