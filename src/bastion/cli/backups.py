# SPDX-License-Identifier: Apache-2.0
"""`bastion db backup PATH` and `bastion db restore PATH`: encrypted archives (docs/backups.md)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from sqlalchemy.exc import SQLAlchemyError

from bastion.audit.events import AuditEvent
from bastion.audit.service import AuditService
from bastion.backup import service
from bastion.backup.archive import ArchiveHeader, ArchiveRefused
from bastion.cli.common import Output, database_or_exit, encryption_keys_or_exit, settings_or_exit
from bastion.crypto.material import parse_encryption_keys
from bastion.db.engine import create_engine, create_sessionmaker
from bastion.settings import Settings


def _target(settings: Settings) -> service.Target:
    return service.Target(
        url=settings.database_url.get_secret_value(),
        keys=parse_encryption_keys(settings.secret("DATABASE_ENCRYPTION_KEY") or ""),
        environment=str(settings.environment),
    )


def _facts(header: ArchiveHeader) -> dict[str, Any]:
    return {
        "database": header.database,
        "key_id": header.key_id,
        "format": header.format,
        "created_at": header.created_at,
        "bytes": header.size,
        "sha256": header.sha256,
    }


def _record(settings: Settings, event: AuditEvent, header: ArchiveHeader) -> None:
    """Audit the operation in the database it concerns (ids and checksum, never the path)."""

    async def record() -> None:
        engine = create_engine(settings.database_url.get_secret_value())
        try:
            await AuditService(sessionmaker=create_sessionmaker(engine)).record(
                event, actor_type="operator", details=_facts(header)
            )
        finally:
            await engine.dispose()

    try:
        asyncio.run(record())
    except SQLAlchemyError as exc:
        typer.echo(f"warning: the audit record of this {event} could not be stored: {exc}", err=True)


def _refuse(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def _report(action: str, path: Path, header: ArchiveHeader, output: Output) -> None:
    if output is Output.json:
        typer.echo(json.dumps({"action": action, "path": str(path), **_facts(header)}, sort_keys=True))
    else:
        typer.echo(
            f"{action} {path}: {header.database}, {header.size} bytes, key id {header.key_id!r}, "
            f"sha256 {header.sha256}"
        )


def backup(
    path: Annotated[Path, typer.Argument(help="Where to write the archive (must not exist).")],
    output: Annotated[Output, typer.Option("--format", help="text or json.")] = Output.text,
) -> None:
    """Write an encrypted, checksummed archive of the database (safe while serving).

    PostgreSQL is dumped with pg_dump, SQLite through its online backup API; the archive is sealed
    under a key derived from the newest DATABASE_ENCRYPTION_KEY and written owner-only (0600).

    Example: bastion db backup /var/backups/bastion-$(date +%F).bak
    """
    settings = settings_or_exit()
    if path.exists():
        _refuse(f"{path} already exists: backups never overwrite a file, choose a new name")
    database_or_exit(settings)
    # The archive is only as useful as the key that reads the values stored in it.
    encryption_keys_or_exit(settings, record=False)
    try:
        header = service.backup(_target(settings), path)
    except service.BackupFailed as exc:
        _refuse(f"backup failed, nothing was written: {exc}")
    _record(settings, AuditEvent.DATABASE_BACKED_UP, header)
    _report("backup written to", path, header, output)


def restore(
    path: Annotated[Path, typer.Argument(help="An archive written by `bastion db backup`.")],
    yes: Annotated[bool, typer.Option("--yes", help="Replace a database that already holds tables.")] = False,
    output: Annotated[Output, typer.Option("--format", help="text or json.")] = Output.text,
) -> None:
    """Verify an archive completely, then restore it into the database DATABASE_URL names.

    Nothing is touched unless the archive's header, every chunk and its checksum verify under a
    configured DATABASE_ENCRYPTION_KEY. A database that already holds tables is replaced only with
    --yes. Stop the service first.

    Example: bastion db restore /var/backups/bastion-2026-12-01.bak --yes
    """
    settings = settings_or_exit()
    if not path.is_file():
        _refuse(f"{path} is not a file")
    database_or_exit(settings)
    try:
        header = service.restore(_target(settings), path, replace=yes)
    except ArchiveRefused as exc:
        _refuse(f"archive refused, the database is unchanged: {exc}")
    except service.TargetNotEmpty as exc:
        _refuse(f"restore refused, the database is unchanged: {exc}")
    except service.BackupFailed as exc:
        _refuse(f"restore failed: {exc}")
    encryption_keys_or_exit(settings, record=False)  # the restored values open under these keys
    _record(settings, AuditEvent.DATABASE_RESTORED, header)
    _report("restored from", path, header, output)
