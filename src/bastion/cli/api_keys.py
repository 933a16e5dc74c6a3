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

from bastion.auth.api_key_service import ApiKeys, KeyView, build_api_keys
from bastion.auth.emails import InvalidEmail, normalize_email
from bastion.auth.models import User
from bastion.auth.principal import AuthMethod, Principal, Role
from bastion.auth.runtime import load_secrets
from bastion.auth.service import Context, find_user_by_email
from bastion.cli.common import Output, encryption_keys_or_exit, refusal, settings_or_exit, show_rows
from bastion.cli.users import keys_app
from bastion.db.engine import create_engine, create_sessionmaker
from bastion.db.types import utcnow
from bastion.errors import BastionError
from bastion.redis_client import connect as connect_redis
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
    redis = connect_redis(settings.redis_url.get_secret_value()) if settings.redis_url else None
    try:
        sessionmaker = create_sessionmaker(engine)
        # New and rotated keys are hashed under the current API_KEY_SALT, which may be a rotated one.
        secrets = await load_secrets(sessionmaker, settings, fallback=True)
        yield build_api_keys(settings, sessionmaker=sessionmaker, redis=redis, hasher=secrets.key_hasher)
    finally:
        if redis is not None:
            await redis.aclose()
        await engine.dispose()


def _run(work: Callable[[ApiKeys], Awaitable[T]], *, action: str = "") -> T:
    settings = settings_or_exit()
    encryption_keys_or_exit(settings, record=False)  # names and owners' addresses are sealed

    async def main() -> T:
        async with _keys(settings) as keys:
            return await work(keys)

    try:
        return asyncio.run(main())
    except BastionError as exc:
        typer.echo(f"error: {action}{refusal(exc)}", err=True)
        raise typer.Exit(1) from None


async def _owner(keys: ApiKeys, email: str) -> User:
    try:
        address = normalize_email(email)
    except InvalidEmail as exc:
        raise BastionError(str(exc)) from None
    user = await find_user_by_email(keys.sessionmaker, keys.cipher, address)
    if user is None:
        raise BastionError(f"no account with the email {address}")
    return user


def _why_not(scopes: list[KeyScope], role: KeyRole, owner: User, email: str) -> str | None:
    """Why the combination is refused, naming the scope or role at fault, before the service is asked."""
    if KeyScope.admin in scopes and role is KeyRole.service:
        return "--scope admin is for user keys of administrators, not --role service keys"
    if KeyScope.admin in scopes and owner.role != Role.ADMIN.value:
        return (
            f"--scope admin is for administrators' keys, and {email} has the role {owner.role!r} "
            f"(`bastion users set-role --email {email} admin` first, if that is intended)"
        )
    if KeyScope.monitoring in scopes and role is not KeyRole.service:
        return "--scope monitoring is for service keys: add --role service"
    return None


_HEADERS = {
    "id": "ID",
    "name": "NAME",
    "user_id": "OWNER",
    "role": "ROLE",
    "scopes": "SCOPES",
    "state": "STATE",
    "created_at": "CREATED",
    "last_used_at": "LAST USED",
    "expires_at": "EXPIRES",
}


def _row(view: KeyView) -> dict[str, str]:
    return {
        "id": view.id,
        "name": view.name,
        "user_id": view.user_id,
        "role": view.role,
        "scopes": ",".join(view.scopes),
        "state": "revoked" if view.revoked_at else "active",
        "created_at": view.created_at.isoformat(timespec="seconds"),
        "last_used_at": view.last_used_at.isoformat(timespec="seconds") if view.last_used_at else "-",
        "expires_at": view.expires_at.isoformat(timespec="seconds") if view.expires_at else "-",
    }


@keys_app.command("create")
def create(
    email: Annotated[str, typer.Option("--email", help="The owner's account.")],
    name: Annotated[str, typer.Option("--name", help="What the key is for.")],
    scope: Annotated[list[KeyScope], typer.Option("--scope", help="Repeat for several scopes.")],
    role: Annotated[KeyRole, typer.Option(help="user or service.")] = KeyRole.user,
    expires_days: Annotated[int | None, typer.Option(min=1, max=3650, help="Expire after N days.")] = None,
    messages_per_hour: Annotated[int | None, typer.Option(min=1, max=1_000_000)] = None,
) -> None:
    """Create an API key; the key is printed once, on standard output.

    Example: bastion keys create --email ana@example.com --name ci --scope chat --expires-days 90
    """

    async def work(keys: ApiKeys) -> str:
        owner = await _owner(keys, email)
        if reason := _why_not(scope, role, owner, email):
            raise BastionError(reason)
        created = await keys.create(
            OPERATOR,
            name=name,
            scopes=[item.value for item in scope],
            role=role.value,
            expires_at=utcnow() + timedelta(days=expires_days) if expires_days else None,
            messages_per_hour=messages_per_hour,
            user_id=owner.id,
            context=CLI_CONTEXT,
        )
        return created.secret

    typer.echo(_run(work, action="keys create refused: "))


@keys_app.command("list")
def list_keys(
    email: Annotated[str | None, typer.Option("--email", help="Only this account's keys.")] = None,
    output: Annotated[Output, typer.Option("--format", help="text or json.")] = Output.text,
) -> None:
    """List keys (never their secrets): id, name, owner, role, scopes, state, created, last used, expires.

    Example: bastion keys list --email ana@example.com --format json
    """

    async def work(keys: ApiKeys) -> list[KeyView]:
        owner = (await _owner(keys, email)).id if email else None
        return await keys.list(OPERATOR, everyone=True, user_id=owner)

    rows = [_row(view) for view in _run(work)]
    show_rows(_HEADERS, rows, as_json=output is Output.json, empty="no API keys")


@keys_app.command("revoke")
def revoke(key_id: Annotated[str, typer.Argument(help="The key's id.")]) -> None:
    """Revoke a key; running instances refuse it within a second (with REDIS_URL).

    Example: bastion keys revoke 3f2a9c1d5e6b7a80
    """
    view = _run(lambda keys: keys.revoke(OPERATOR, key_id, context=CLI_CONTEXT), action="keys revoke: ")
    typer.echo(f"revoked {view.id}")


@keys_app.command("rotate")
def rotate(key_id: Annotated[str, typer.Argument(help="The key's id.")]) -> None:
    """Give a key a new secret (printed once); the old one works until the grace period ends.

    Example: bastion keys rotate 3f2a9c1d5e6b7a80
    """

    async def work(keys: ApiKeys) -> str:
        created = await keys.rotate(OPERATOR, key_id, context=CLI_CONTEXT)
        return created.secret

    typer.echo(_run(work, action="keys rotate: "))
