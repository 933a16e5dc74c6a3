# SPDX-License-Identifier: Apache-2.0
"""Field types every schema and query parameter shares: values the database and encoders accept.

A datetime must name an instant (a zone) that exists in UTC; an integer must fit the database's
64-bit columns. Anything else is a 422 at the edge, never an overflow deep in a driver.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BeforeValidator, Field

INT64_MAX = 2**63 - 1


_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")


def _iso_text(value: object) -> object:
    # Pydantic would also read numbers (and numeric strings) as Unix times; the documented form
    # is an RFC 3339 date-time string, and only that is accepted.
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _ISO_DATE.match(value):
        raise ValueError("Expected an RFC 3339 date-time such as 2026-01-31T12:00:00Z")
    return value


def _utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("The time is outside the supported range (years 1 to 9999 in UTC)") from None


# An instant with its zone, within years 1-9999 once moved to UTC.
Instant = Annotated[AwareDatetime, BeforeValidator(_iso_text), AfterValidator(_utc)]
# A positive id or position that fits a BIGINT.
PositiveInt64 = Annotated[int, Field(ge=1, le=INT64_MAX)]
