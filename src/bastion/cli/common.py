# SPDX-License-Identifier: Apache-2.0
"""Helpers shared by the commands: settings and the database, with a readable refusal, never a traceback."""

from __future__ import annotations

import asyncio
import json
import os
from enum import StrEnum
from pathlib import Path
from typing import IO, Any, NoReturn

import typer
from sqlalchemy import make_url, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from bastion.crypto.fields import FieldCipher
from bastion.crypto.keycheck import EncryptionKeyRefused, check_encryption_keys
from bastion.db import migrate
from bastion.db.engine import create_engine
from bastion.errors import BastionError, InvalidField
from bastion.settings import ConfigurationError, Settings, load_settings


class Output(StrEnum):
    """``--format`` of commands whose output is data: lines for people, JSON for scripts."""

    text = "text"
    json = "json"


def settings_or_exit() -> Settings:
    try:
        return load_settings()
    except ConfigurationError as exc:
        typer.echo(exc.render(), err=True)
        raise typer.Exit(2) from None


DATABASE_CHECK_SECONDS = 10.0


def database_or_exit(settings: Settings) -> None:
    """Reach DATABASE_URL once before any work: an unreachable database is one line and exit 2.

    The line names the host and port (or the SQLite file) and why, never the URL's password.
    """
    url = settings.database_url.get_secret_value()
    where = _database_location(url)

    async def probe() -> None:
        engine = create_engine(url)
        try:
            async with asyncio.timeout(DATABASE_CHECK_SECONDS), engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        finally:
            await engine.dispose()

    try:
        asyncio.run(probe())
    except (OSError, TimeoutError, SQLAlchemyError) as exc:
        _unreachable(where, exc)


def _unreachable(where: str, exc: BaseException) -> NoReturn:
    reason = "timed out" if isinstance(exc, TimeoutError) else _reason(exc)
    typer.echo(f"error: cannot reach the database named by DATABASE_URL at {where}: {reason}", err=True)
    raise typer.Exit(2) from None


def _database_location(url: str) -> str:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return parsed.database or ":memory:"
    return f"{parsed.host or 'localhost'}:{parsed.port or 5432}/{parsed.database or ''}"


def _reason(exc: BaseException) -> str:
    # The driver's own error, first line, without anything that could echo the URL's password.
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    return (
        f"{type(cause).__name__}: {str(cause).splitlines()[0][:200]}" if str(cause) else type(cause).__name__
    )


def encryption_keys_or_exit(settings: Settings, *, record: bool = True, unreachable_ok: bool = False) -> bool:
    """Refuse (one line, exit 2) when DATABASE_ENCRYPTION_KEY cannot open the stored data.

    Names the key ids that are different or missing, never key material. With ``record`` the check
    value of a key id seen for the first time is stored. A schema without the check table (not yet
    migrated) is not refused: `bastion db upgrade` creates it and checks then. Returns whether the
    database was reached; with ``unreachable_ok`` an unreachable database is not an error.
    """
    cipher = FieldCipher.for_settings(settings)

    async def verify() -> None:
        engine = create_engine(settings.database_url.get_secret_value())
        try:
            async with asyncio.timeout(DATABASE_CHECK_SECONDS):
                await check_encryption_keys(engine, cipher, record=record)
        finally:
            await engine.dispose()

    try:
        asyncio.run(verify())
    except EncryptionKeyRefused as exc:
        typer.echo(exc.one_line(), err=True)
        raise typer.Exit(2) from None
    except (OSError, TimeoutError, SQLAlchemyError) as exc:
        if unreachable_ok:
            return False
        _unreachable(_database_location(settings.database_url.get_secret_value()), exc)
    return True


def upgrade_or_exit(settings: Settings, revision: str = "head") -> None:
    """Migrate the database with the deployment's cipher, keys checked before anything is sealed.

    The configured keys are verified against what the database already holds first (without
    recording new key ids), so a wrong DATABASE_ENCRYPTION_KEY is refused before a migration seals
    stored rows under it; after the migration the check runs again and records new key ids.
    """
    encryption_keys_or_exit(settings, record=False)
    migrate.upgrade(
        settings.database_url.get_secret_value(), revision, cipher=FieldCipher.for_settings(settings)
    )
    encryption_keys_or_exit(settings)


def private_output(path: Path, mode: str = "w") -> IO[Any]:
    """``path`` opened for writing (truncated), created readable by its owner only: exports hold
    personal data and audit records."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    if "b" in mode:
        return os.fdopen(descriptor, mode)
    return os.fdopen(descriptor, mode, encoding="utf-8", newline="")


def show_rows(headers: dict[str, str], rows: list[dict[str, str]], *, as_json: bool, empty: str) -> None:
    """Print data rows: a JSON list for scripts, or a table with a header line (``empty`` when none)."""
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    else:
        typer.echo(table(headers, rows) if rows else empty)


def table(headers: dict[str, str], rows: list[dict[str, str]]) -> str:
    """Rows as aligned columns under a header line; ``headers`` maps each row key to its title."""
    widths = {name: max([len(title), *(len(row[name]) for row in rows)]) for name, title in headers.items()}
    lines = [headers, *rows]
    return "\n".join("  ".join(line[name].ljust(widths[name]) for name in headers).rstrip() for line in lines)


def refusal(exc: BastionError) -> str:
    """Why the service refused, in full: a refused field names the rule it broke, not only
    "the request is invalid"."""
    if isinstance(exc, InvalidField):
        return exc.detail_message
    return exc.message
