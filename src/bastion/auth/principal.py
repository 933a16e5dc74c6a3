# SPDX-License-Identifier: Apache-2.0
"""The authenticated caller, as every layer after authentication sees it."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Role(StrEnum):
    USER = "user"
    ADMIN = "admin"
    SERVICE = "service"


class AuthMethod(StrEnum):
    JWT = "jwt"
    COOKIE = "cookie"
    API_KEY = "api_key"
    STATIC_KEY = "static_key"
    MTLS = "mtls"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who made the request.

    Authentication stores it at ``scope["state"]["principal"]`` (``request.state.principal``);
    limits, quotas, audit and authorization read it from there. ``user_id`` and ``api_key_id`` are
    the identities rate limits and quotas key on; either may be absent.
    """

    subject: str
    role: Role
    method: AuthMethod
    scopes: frozenset[str] = field(default_factory=frozenset)
    user_id: str | None = None
    api_key_id: str | None = None
    # Per-identity limits that replace a policy's default: (policy name, requests per its period),
    # e.g. an API key's own messages-per-hour allowance.
    rate_overrides: tuple[tuple[str, int], ...] = ()
    # The identities blocks and limits know this caller by ("key:<id>", "user:<id>"), made once:
    # a verified principal is kept and shown to several layers on each of its requests.
    identities: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        found = ((f"key:{self.api_key_id}",) if self.api_key_id else ()) + (
            (f"user:{self.user_id}",) if self.user_id else ()
        )
        object.__setattr__(self, "identities", found)

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN
