# SPDX-License-Identifier: Apache-2.0
"""`bastion keys create|list|revoke|rotate`: managed API keys from the command line.

The operator acts as an administrator. Revocation and rotation bump the shared version in Redis
(when REDIS_URL is set), so running instances drop the key within a second.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, TypeVar

import typer
from redis.asyncio import Redis

from bastion.auth.api_key_service import ApiKeys, KeyView, build_api_keys
from bastion.auth.emails import InvalidEmail, normalize_email
from bastion.auth.principal import AuthMethod, Principal, Role
from bastion.auth.runtime import load_secrets
from bastion.auth.service import Context, find_user_by_email
from bastion.cli.common import encryption_keys_or_exit, settings_or_exit
from bastion.cli.users import keys_app
from bastion.db.engine import create_engine, create_sessionmaker
from bastion.db.types import utcnow
from bastion.errors import BastionError
from bastion.settings import Settings

T = TypeVar("T")
OPERATOR = Principal(subject="cli", role=Role.ADMIN, method=AuthMethod.JWT)
CLI_CONTEXT = Context(ip=None, request_id="cli")


class KeyScope(StrEnum):
    chat = "chat"
    journal = "journal"
    voice = "voice"
    completions = "completions"
    profile = "profile"
    monitoring = "monitoring"
    admin = "admin"


class KeyRole(StrEnum):
    user = "user"
    service = "service"


@asynccontextmanager
async def _keys(settings: Settings) -> AsyncIterator[ApiKeys]:
    engine = create_engine(settings.database_url.get_secret_value())
    redis = Redis.from_url(settings.redis_url.get_secret_value()) if settings.redis_url else None
    try:
        sessionmaker = create_sessionmaker(engine)
        # New and rotated keys are hashed under the current API_KEY_SALT, which may be a rotated one.
        secrets = await load_secrets(sessionmaker, settings, fallback=True)
        yield build_api_keys(settings, sessionmaker=sessionmaker, redis=redis, hasher=secrets.key_hasher)
    finally:
        if redis is not None:
            await redis.aclose()
        await engine.dispose()


def _run(work: Callable[[ApiKeys], Awaitable[T]]) -> T:
    settings = settings_or_exit()
    encryption_keys_or_exit(settings, record=False)  # names and owners' addresses are sealed

    async def main() -> T:
        async with _keys(settings) as keys:
            return await work(keys)

    try:
        return asyncio.run(main())
    except BastionError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None


async def _user_id(keys: ApiKeys, email: str) -> str:
    try:
        address = normalize_email(email)
    except InvalidEmail as exc:
        raise BastionError(str(exc)) from None
    user = await find_user_by_email(keys.sessionmaker, keys.cipher, address)
    if user is None:
        raise BastionError("no account with that email")
    return user.id


def _line(view: KeyView) -> str:
    state = "revoked" if view.revoked_at else "active"
    return "\t".join(
        (
            view.id,
            view.name,
            view.user_id,
            view.role,
            ",".join(view.scopes),
            state,
            view.created_at.isoformat(timespec="seconds"),
            view.last_used_at.isoformat(timespec="seconds") if view.last_used_at else "-",
            view.expires_at.isoformat(timespec="seconds") if view.expires_at else "-",
        )
    )


@keys_app.command("create")
def create(
    email: Annotated[str, typer.Option("--email", help="The owner's account.")],
    name: Annotated[str, typer.Option("--name", help="What the key is for.")],
    scope: Annotated[list[KeyScope], typer.Option("--scope", help="Repeat for several scopes.")],
    role: Annotated[KeyRole, typer.Option(help="user or service.")] = KeyRole.user,
    expires_days: Annotated[int | None, typer.Option(min=1, max=3650, help="Expire after N days.")] = None,
    messages_per_hour: Annotated[int | None, typer.Option(min=1, max=1_000_000)] = None,
) -> None:
    """Create an API key; the key is printed once, on standard output."""

    async def work(keys: ApiKeys) -> str:
        created = await keys.create(
            OPERATOR,
            name=name,
            scopes=[item.value for item in scope],
            role=role.value,
            expires_at=utcnow() + timedelta(days=expires_days) if expires_days else None,
            messages_per_hour=messages_per_hour,
            user_id=await _user_id(keys, email),
            context=CLI_CONTEXT,
        )
        return created.secret

    typer.echo(_run(work))


@keys_app.command("list")
def list_keys(
    email: Annotated[str | None, typer.Option("--email", help="Only this account's keys.")] = None,
) -> None:
    """List keys (never their secrets): id, name, owner, role, scopes, state, created, last used, expires."""

    async def work(keys: ApiKeys) -> list[KeyView]:
        owner = await _user_id(keys, email) if email else None
        return await keys.list(OPERATOR, everyone=True, user_id=owner)

    for view in _run(work):
        typer.echo(_line(view))


@keys_app.command("revoke")
def revoke(key_id: Annotated[str, typer.Argument(help="The key's id.")]) -> None:
    """Revoke a key; running instances refuse it within a second (with REDIS_URL)."""
    view = _run(lambda keys: keys.revoke(OPERATOR, key_id, context=CLI_CONTEXT))
    typer.echo(f"revoked {view.id}")


@keys_app.command("rotate")
def rotate(key_id: Annotated[str, typer.Argument(help="The key's id.")]) -> None:
    """Give a key a new secret (printed once); the old one works until the grace period ends."""

    async def work(keys: ApiKeys) -> str:
        created = await keys.rotate(OPERATOR, key_id, context=CLI_CONTEXT)
        return created.secret

    typer.echo(_run(work))
