# SPDX-License-Identifier: Apache-2.0
"""JSON responses that name their character set, and the Content-Warning header."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.responses import JSONResponse, Response

#: Set on a JSON reply whose model text the content guard flagged (profanity, a neutralized
#: link): the categories, comma-separated. A stream says it in its last event instead.
CONTENT_WARNING = "Content-Warning"


def content_warning(response: Response, categories: Sequence[str]) -> None:
    if categories:
        response.headers[CONTENT_WARNING] = ", ".join(categories)


class UTF8JSONResponse(JSONResponse):
    """``application/json; charset=utf-8``: the body's encoding is stated, never sniffed (ASVS 4.1.1).

    Set as FastAPI's ``default_response_class`` and used by every error response.
    """

    media_type = "application/json; charset=utf-8"
