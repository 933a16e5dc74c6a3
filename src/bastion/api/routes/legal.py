# SPDX-License-Identifier: Apache-2.0
"""The operator's terms of use (TERMS_FILE), served as written; 404 when none are published."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import anyio
from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from bastion.api.deps import public, settings_of
from bastion.errors import NotFound
from bastion.settings import MAX_TERMS_BYTES, TERMS_TYPES

router = APIRouter(tags=["legal"])
NO_TERMS = "No terms of use are published here"


def read_terms(path: Path) -> bytes | None:
    """The terms file's bytes, or None when it is no longer what the settings check accepted.

    The file is read on every request, so what it is now is checked now: whatever a link points
    to must also be a .txt/.md/.html regular file of at most MAX_TERMS_BYTES (a link swapped to
    /etc/passwd, /dev/zero or a FIFO is refused), opened without blocking and read no further
    than the cap.
    """
    real = os.path.realpath(path)
    if Path(real).suffix.lower() not in TERMS_TYPES:
        return None
    try:
        # O_NOFOLLOW: the path is resolved already; a link appearing here is a swap under our feet.
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_TERMS_BYTES:
            return None
        body = file.read(MAX_TERMS_BYTES + 1)
    return body if len(body) <= MAX_TERMS_BYTES else None


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
    path = settings_of(request).terms_file
    if path is None:
        raise NotFound(NO_TERMS)
    body = await anyio.to_thread.run_sync(read_terms, path)
    if body is None:
        raise NotFound(NO_TERMS)
    media = TERMS_TYPES[path.suffix.lower()]
    return Response(
        body, media_type=f"{media}; charset=utf-8", headers={"Cache-Control": "public, max-age=300"}
    )
