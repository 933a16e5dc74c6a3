# SPDX-License-Identifier: Apache-2.0
"""The operator's terms of use (TERMS_FILE), served as written; 404 when none are published."""

from __future__ import annotations

import anyio
from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from bastion.api.deps import get_settings, public
from bastion.errors import NotFound
from bastion.settings import MAX_TERMS_BYTES, TERMS_TYPES

router = APIRouter(tags=["legal"])
NO_TERMS = "No terms of use are published here"


@router.get(
    "/legal/terms",
    dependencies=[Depends(public)],
    response_class=Response,
    responses={
        200: {
            "description": "The terms of use, as the operator wrote them",
            "content": {media: {"schema": {"type": "string"}} for media in TERMS_TYPES.values()},
        },
        404: {"description": NO_TERMS},
    },
)
async def terms(request: Request) -> Response:
    """Read on each request, so an edited file is served without a restart."""
    path = get_settings(request).terms_file
    if path is None:
        raise NotFound(NO_TERMS)
    try:
        body = await anyio.Path(path).read_bytes()
    except OSError:
        raise NotFound(NO_TERMS) from None
    if len(body) > MAX_TERMS_BYTES:
        raise NotFound(NO_TERMS)
    media = TERMS_TYPES[path.suffix.lower()]
    return Response(
        body, media_type=f"{media}; charset=utf-8", headers={"Cache-Control": "public, max-age=300"}
    )
