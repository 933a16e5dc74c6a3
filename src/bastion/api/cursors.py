# SPDX-License-Identifier: Apache-2.0
"""Keyset paging cursors: the position (creation time, id) of a page's last row, as one opaque token.

A list answers ``next`` (the cursor of its last item) when more may follow; the client sends it
back as ``after``. ``<microseconds since the epoch>.<32 hex id>``: a position is not a row, so
paging goes on when that row was deleted meanwhile.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1)
CURSOR = r"^[0-9]{1,16}\.[0-9a-f]{32}$"
# Rows whose ids are random URL-safe text (chat sessions) rather than 32 hex digits.
ID_CURSOR = r"^[0-9]{1,16}\.[A-Za-z0-9_-]{1,64}$"


def cursor_of(created_at: datetime, row_id: str) -> str:
    micros = created_at.astimezone(UTC).replace(tzinfo=None) - EPOCH
    return f"{micros // timedelta(microseconds=1)}.{row_id}"


def position(cursor: str | None) -> tuple[datetime, str] | None:
    """The (creation time, id) a cursor names; None for the first page."""
    if cursor is None:
        return None
    micros, _, row_id = cursor.partition(".")
    return (EPOCH + timedelta(microseconds=int(micros))).replace(tzinfo=UTC), row_id
