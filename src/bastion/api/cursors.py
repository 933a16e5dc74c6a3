# SPDX-License-Identifier: Apache-2.0
"""Keyset cursors: a position (a time and an id) rather than a row, so paging survives deletions.

A cursor reads ``<microseconds since the epoch>.<32 hex id>``; it reveals nothing but where the
previous page ended.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1)
CURSOR = r"^[0-9]{1,16}\.[0-9a-f]{32}$"


def cursor_of(moment: datetime, row_id: str) -> str:
    micros = moment.astimezone(UTC).replace(tzinfo=None) - EPOCH
    return f"{micros // timedelta(microseconds=1)}.{row_id}"


def position(cursor: str | None) -> tuple[datetime, str] | None:
    if cursor is None:
        return None
    micros, _, row_id = cursor.partition(".")
    return (EPOCH + timedelta(microseconds=int(micros))).replace(tzinfo=UTC), row_id
