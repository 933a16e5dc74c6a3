# SPDX-License-Identifier: Apache-2.0
"""JSON responses that name their character set."""

from __future__ import annotations

from starlette.responses import JSONResponse


class UTF8JSONResponse(JSONResponse):
    """``application/json; charset=utf-8``: the body's encoding is stated, never sniffed (ASVS 4.1.1).

    Set as FastAPI's ``default_response_class`` and used by every error response.
    """

    media_type = "application/json; charset=utf-8"
