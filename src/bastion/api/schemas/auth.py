# SPDX-License-Identifier: Apache-2.0
"""Identity request and response bodies. Strict types, unknown fields refused, every size bounded."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from bastion.auth.emails import MAX_EMAIL_LENGTH, InvalidEmail, normalize_email
from bastion.auth.policy import MAX_PASSWORD_LENGTH
from bastion.auth.principal import Role

if TYPE_CHECKING:
    from bastion.auth.models import User
    from bastion.auth.service import IdentityService


def _email(value: str) -> str:
    try:
        return normalize_email(value)
    except InvalidEmail as exc:
        raise ValueError(str(exc)) from None


Email = Annotated[
    str,
    Field(min_length=3, max_length=MAX_EMAIL_LENGTH, json_schema_extra={"format": "email"}),
    AfterValidator(_email),
]
# Bounded before hashing: a longer value is a 422, never a megabyte of KDF input.
Password = Annotated[str, Field(min_length=1, max_length=MAX_PASSWORD_LENGTH)]
OpaqueToken = Annotated[str, Field(min_length=1, max_length=200)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class RegisterRequest(Strict):
    email: Email
    password: Password
    # With REGISTRATION=invite: the code from an administrator's invitation.
    invitation: str | None = Field(None, min_length=1, max_length=200)


class InvitationRequest(Strict):
    email: Email | None = None  # only this address may use the invitation


class InvitationOut(BaseModel):
    code: str  # shown once
    email: str | None
    expires_at: datetime


class LoginRequest(Strict):
    email: Email
    password: Password
    # "cookie": tokens go to HttpOnly cookies (browsers) instead of the body.
    mode: Literal["bearer", "cookie"] = "bearer"


class RefreshRequest(Strict):
    refresh_token: OpaqueToken | None = None


class LogoutRequest(Strict):
    refresh_token: OpaqueToken | None = None


class PasswordChangeRequest(Strict):
    current_password: Password
    new_password: Password


class PasswordResetRequest(Strict):
    email: Annotated[str, Field(min_length=1, max_length=MAX_EMAIL_LENGTH)]


class PasswordResetConfirm(Strict):
    token: OpaqueToken
    new_password: Password


class RoleChange(Strict):
    role: Annotated[Role, Field(strict=False)]  # JSON strings name enum members


class UserOut(BaseModel):
    id: str
    email: str
    role: str


class UserDetail(UserOut):
    is_active: bool
    created_at: datetime

    @classmethod
    def of(cls, user: User, service: IdentityService) -> UserDetail:
        """The account as its owner and administrators see it (the address opened from its seal)."""
        return cls(
            id=user.id,
            email=service.email_of(user),
            role=user.role,
            is_active=user.is_active,
            created_at=user.created_at,
        )


class TokenResponse(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - a scheme name
    expires_in: int


class CookieSessionResponse(BaseModel):
    """Cookie mode: the tokens are in HttpOnly cookies, out of reach of page scripts."""

    token_type: Literal["cookie"] = "cookie"  # noqa: S105 - a scheme name
    expires_in: int
    csrf_token: str


class Accepted(BaseModel):
    status: Literal["accepted"] = "accepted"
