# SPDX-License-Identifier: Apache-2.0
"""`bastion users` and `bastion keys`: accounts and JWT signing keys from the command line.

Passwords are read from the terminal (or standard input) twice, never from an argument: arguments
end up in shell history and in the process list.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bastion.audit.events import AuditEvent
from bastion.audit.service import AuditService
from bastion.auth.api_key_service import build_api_keys
from bastion.auth.emails import InvalidEmail, normalize_email
from bastion.auth.keyring import rotate_signing_key, settings_only_keyring
from bastion.auth.principal import Role
from bastion.auth.runtime import IdentityRuntime, load_secrets
from bastion.auth.service import Context, find_user_by_email
from bastion.cli.common import encryption_keys_or_exit, private_output, refusal, settings_or_exit
from bastion.db.engine import create_engine, create_sessionmaker
from bastion.db.types import utcnow
from bastion.errors import BastionError, PasswordRejected
from bastion.privacy.erasure import AccountErasure, Erased
from bastion.privacy.export import AccountExport
from bastion.ratelimit.components import build_rate_limiting
from bastion.redis_client import connect as connect_redis
from bastion.settings import Settings

app = typer.Typer(help="User accounts.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys and JWT signing keys.", no_args_is_help=True)

T = TypeVar("T")
CLI_CONTEXT = Context(ip=None, request_id="cli")


@asynccontextmanager
async def identity_runtime(settings: Settings) -> AsyncIterator[IdentityRuntime]:
    engine = create_engine(settings.database_url.get_secret_value())
    # The shared state (login locks, revocations) is in Redis when configured: `unlock` must reach it.
    redis = connect_redis(settings.redis_url.get_secret_value()) if settings.redis_url is not None else None
    sessionmaker = create_sessionmaker(engine)
    runtime = IdentityRuntime(
        settings=settings,
        sessionmaker=sessionmaker,
        redis=redis,
        keyring=settings_only_keyring(settings, utcnow()),
        # Invitation codes are hashed under the current SESSION_SECRET, which may be a rotated one.
        secrets=await load_secrets(sessionmaker, settings, fallback=True),
    )
    try:
        yield runtime
    finally:
        runtime.hashing.close()
        if redis is not None:
            await redis.aclose()
        await engine.dispose()


def _run(work: Callable[[IdentityRuntime], Awaitable[T]]) -> T:
    settings = settings_or_exit()
    # Addresses are found by a blind index under DATABASE_ENCRYPTION_KEY: with a wrong key no
    # account would be found (and create-admin would make a second one), so refuse first.
    encryption_keys_or_exit(settings, record=False)

    async def main() -> T:
        async with identity_runtime(settings) as runtime:
            return await work(runtime)

    try:
        return asyncio.run(main())
    except PasswordRejected as exc:
        typer.echo("password refused: " + "; ".join(exc.messages), err=True)
        raise typer.Exit(1) from None
    except BastionError as exc:
        typer.echo(f"error: {refusal(exc)}", err=True)
        raise typer.Exit(1) from None


def _email(raw: str) -> str:
    try:
        return normalize_email(raw)
    except InvalidEmail as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


async def _user_id(runtime: IdentityRuntime, email: str) -> str:
    user = await find_user_by_email(runtime.sessionmaker, runtime.cipher, email)
    if user is None:
        raise BastionError("no account with that email")
    return user.id


@app.command("create-admin")
def create_admin(email: Annotated[str, typer.Option("--email", help="The administrator's email.")]) -> None:
    """Create an administrator; the password is asked twice (prompt and confirmation).

    Example: bastion users create-admin --email admin@example.org
    """
    _create(email, Role.ADMIN)


def _create(email: str, role: Role) -> None:
    address = _email(email)
    password: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    user = _run(lambda rt: rt.service().create_user(address, password, role, CLI_CONTEXT))
    typer.echo(f"created {role.value} {user.id}")


@app.command("create")
def create(
    email: Annotated[str, typer.Option("--email", help="The new account's email.")],
    role: Annotated[Role, typer.Option("--role", help="user, admin or service.")] = Role.USER,
) -> None:
    """Create an account (with REGISTRATION=closed, how accounts come to be); the password is asked twice.

    Example: bastion users create --email ana@example.org
    """
    _create(email, role)


@app.command("invite")
def invite(
    email: Annotated[
        str | None, typer.Option("--email", help="Only this address may use the invitation.")
    ] = None,
) -> None:
    """Print an invitation code to register with (REGISTRATION=invite); valid INVITATION_DAYS, shown once.

    Example: bastion users invite --email ana@example.org
    """
    address = _email(email) if email is not None else None

    async def work(rt: IdentityRuntime) -> str:
        lifetime = timedelta(days=rt.settings.invitation_days)
        invited = await rt.service().invite(address, CLI_CONTEXT, actor_id=None, lifetime=lifetime)
        return f"{invited.code}\nvalid until {invited.expires_at.isoformat()}"

    typer.echo(_run(work))


@app.command()
def disable(email: Annotated[str, typer.Option("--email")]) -> None:
    """Disable an account: every session ends at once.

    Example: bastion users disable --email ana@example.org
    """
    address = _email(email)

    async def work(rt: IdentityRuntime) -> None:
        await rt.service().set_active(await _user_id(rt, address), False, CLI_CONTEXT, actor_id=None)

    _run(work)
    typer.echo("disabled")


@app.command()
def enable(email: Annotated[str, typer.Option("--email")]) -> None:
    """Re-enable a disabled account.

    Example: bastion users enable --email ana@example.org
    """
    address = _email(email)

    async def work(rt: IdentityRuntime) -> None:
        await rt.service().set_active(await _user_id(rt, address), True, CLI_CONTEXT, actor_id=None)

    _run(work)
    typer.echo("enabled")


@app.command()
def unlock(
    email: Annotated[str | None, typer.Option("--email", help="The account's email.")] = None,
    user_id: Annotated[str | None, typer.Option("--id", help="The account's id.")] = None,
) -> None:
    """Lift an account's login lock (audited). Reaches running instances through REDIS_URL only.

    Example: bastion users unlock --email ana@example.org
    """
    if (email is None) == (user_id is None):
        typer.echo("error: give exactly one of --email and --id", err=True)
        raise typer.Exit(2)
    address = _email(email) if email is not None else None

    async def work(rt: IdentityRuntime) -> None:
        target = await _user_id(rt, address) if address is not None else str(user_id)
        await rt.service().unlock(target, CLI_CONTEXT, actor_id=None)

    _run(work)
    if settings_or_exit().redis_url is None:
        typer.echo("note: without REDIS_URL each running instance keeps its own locks (restart lifts them)")
    typer.echo("unlocked")


@app.command("set-role")
def set_role(
    email: Annotated[str, typer.Option("--email")],
    role: Annotated[Role, typer.Option("--role", help="user, admin or service.")],
) -> None:
    """Change an account's role (its sessions end; the new role applies from the next login).

    Example: bastion users set-role --email ana@example.org --role admin
    """
    address = _email(email)

    async def work(rt: IdentityRuntime) -> None:
        await rt.service().set_role(await _user_id(rt, address), role, CLI_CONTEXT, actor_id=None)

    _run(work)
    typer.echo(f"role set to {role.value}")


@app.command("export")
def export(
    email: Annotated[str, typer.Option("--email", help="The account's email.")],
    output: Annotated[
        Path | None, typer.Option("--output", help="Write to this file (0600) instead of standard output.")
    ] = None,
) -> None:
    """Everything an account holds, as the JSON document of GET /api/me/export (audited).

    Example: bastion users export --email ana@example.org --output ana.json
    """
    address = _email(email)

    async def work(rt: IdentityRuntime) -> None:
        user_id = await _user_id(rt, address)
        pieces = await AccountExport(identity=rt.service()).document(user_id)
        await rt.audit.record(
            AuditEvent.ACCOUNT_EXPORTED,
            actor_type="operator",
            target_type="user",
            target_id=user_id,
            request_id=CLI_CONTEXT.request_id,
        )
        if output is None:
            async for piece in pieces:
                sys.stdout.buffer.write(piece)
            sys.stdout.buffer.write(b"\n")
            sys.stdout.flush()
            return
        with private_output(output, "wb") as file:
            async for piece in pieces:
                file.write(piece)

    _run(work)


@app.command("erase")
def erase(
    email: Annotated[str, typer.Option("--email", help="The account's email.")],
    yes: Annotated[
        bool, typer.Option("--yes", help="Confirm: the account and everything it holds are erased for good.")
    ] = False,
) -> None:
    """Erase an account and everything it holds, as DELETE /api/admin/users/{id} does (audited).

    Example: bastion users erase --email ana@example.org --yes
    """
    address = _email(email)
    if not yes:
        typer.echo("error: erasure cannot be undone: add --yes to confirm", err=True)
        raise typer.Exit(2)

    async def work(rt: IdentityRuntime) -> Erased:
        user_id = await _user_id(rt, address)
        async with cli_erasure(rt) as erasure:
            return await erasure.erase(user_id, CLI_CONTEXT, actor_id=None)

    erased = _run(work)
    typer.echo(
        f"erased {erased.user_id}: {erased.chat_sessions} chat sessions, {erased.journal_entries} "
        f"journal entries, {erased.api_keys} API keys, {erased.sessions_ended} sessions ended"
    )


@asynccontextmanager
async def cli_erasure(rt: IdentityRuntime) -> AsyncIterator[AccountErasure]:
    """Erasure from a command: through REDIS_URL it reaches what running instances share (the
    denylist, the key cache version, the session quota); without it those free themselves."""
    settings, redis = rt.settings, rt.redis
    keys = build_api_keys(settings, sessionmaker=rt.sessionmaker, redis=redis)
    limiting = build_rate_limiting(settings, redis=redis, sessionmaker=None) if redis is not None else None
    try:
        yield AccountErasure(
            identity=rt.service(),
            quota=limiting.sessions if limiting is not None else None,
            keys_changed=keys.owner_changed,
        )
    finally:
        if limiting is not None:
            await limiting.aclose()


def rotate_audited(
    settings: Settings,
    rotate: Callable[[async_sessionmaker[AsyncSession]], Awaitable[str]],
    *,
    event: AuditEvent,
    target_type: str,
    details: dict[str, object],
) -> str:
    """Run one key rotation against the database and audit it; the new key id."""

    async def main() -> str:
        engine = create_engine(settings.database_url.get_secret_value())
        try:
            sessionmaker = create_sessionmaker(engine)
            kid = await rotate(sessionmaker)
            await AuditService(sessionmaker=sessionmaker).record(
                event,
                actor_type="operator",
                target_type=target_type,
                target_id=kid,
                request_id=CLI_CONTEXT.request_id,
                details=details,
            )
            return kid
        finally:
            await engine.dispose()

    return asyncio.run(main())


@keys_app.command("rotate-signing")
def rotate_signing() -> None:
    """Add a new JWT signing key: it signs from now on; older keys verify for JWT_KEY_GRACE_DAYS.

    Example: bastion keys rotate-signing
    """
    settings = settings_or_exit()
    try:
        kid = rotate_audited(
            settings,
            lambda sessionmaker: rotate_signing_key(sessionmaker, settings),
            event=AuditEvent.SIGNING_KEY_ROTATED,
            target_type="signing_key",
            details={"algorithm": settings.jwt_algorithm, "grace_days": settings.jwt_key_grace_days},
        )
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"new signing key {kid}; running instances pick it up within a minute")
