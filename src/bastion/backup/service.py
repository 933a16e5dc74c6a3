# SPDX-License-Identifier: Apache-2.0
"""Backing up and restoring the deployment's database as encrypted archives (``bastion db``).

A backup is sealed under the newest DATABASE_ENCRYPTION_KEY (a key derived for backups only) and
written to ``PATH.partial`` first, renamed to PATH only once complete: a failed dump never leaves
something that looks like a backup. A restore reads the whole archive once to verify it (header
authentication, every chunk, size and checksum) before it touches the database, then restores
from a second, again verified, pass, so nothing unverified is ever acted upon.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import make_url, text

from bastion.backup import postgres, sqlite
from bastion.backup.archive import (
    ArchiveHeader,
    ArchiveRefused,
    ArchiveWriter,
    plaintext,
    private_file,
    verify,
)
from bastion.db.engine import create_engine

SQLITE = "sqlite"
POSTGRESQL = "postgresql"


class BackupFailed(Exception):
    """The backup or restore could not be done; the message says why, the database is unchanged."""


class TargetNotEmpty(BackupFailed):
    """The restore target holds tables and replacing them was not confirmed."""


@dataclass(frozen=True, slots=True)
class Target:
    url: str
    keys: Mapping[str, bytes]
    environment: str

    @property
    def kind(self) -> str:
        backend = make_url(self.url).get_backend_name()
        if backend not in (SQLITE, POSTGRESQL):
            raise BackupFailed(f"backups support SQLite and PostgreSQL, not {backend}")
        return backend


def backup(target: Target, path: Path, *, chunk_bytes: int | None = None) -> ArchiveHeader:
    """Write an encrypted archive of the database to ``path`` (0600); returns its header."""
    kind = target.kind
    partial = path.with_name(path.name + ".partial")
    try:
        with private_file(partial) as out:
            writer = ArchiveWriter(
                out,
                keys=target.keys,
                environment=target.environment,
                database=kind,
                **({"chunk_bytes": chunk_bytes} if chunk_bytes else {}),
            )
            (sqlite.dump if kind == SQLITE else postgres.dump)(target.url, writer.write)
            header = writer.finish()
            os.fsync(out.fileno())
        os.replace(partial, path)
    except (sqlite.SnapshotFailed, postgres.ToolFailed, OSError) as exc:
        partial.unlink(missing_ok=True)
        raise BackupFailed(str(exc)) from exc
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return header


def inspect(target: Target, path: Path) -> ArchiveHeader:
    """Verify the whole archive with this deployment's keys (raises ``ArchiveRefused``)."""
    try:
        with path.open("rb") as source:
            header = verify(source, keys=target.keys, environment=target.environment)
    except OSError as exc:
        raise BackupFailed(f"cannot read {path}: {exc.strerror or exc}") from exc
    if header.database != target.kind:
        raise ArchiveRefused(
            f"the archive holds a {header.database} database and DATABASE_URL names {target.kind}"
        )
    return header


def tables(target: Target) -> list[str]:
    """The tables the target database holds now."""
    if target.kind == SQLITE:
        try:
            return sqlite.tables(target.url)
        except sqlite.SnapshotFailed as exc:
            raise BackupFailed(str(exc)) from exc

    async def listed() -> list[str]:
        engine = create_engine(target.url)
        try:
            async with engine.connect() as connection:
                rows = await connection.execute(
                    text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1")
                )
                return [str(name) for (name,) in rows]
        finally:
            await engine.dispose()

    return asyncio.run(listed())


def restore(target: Target, path: Path, *, replace: bool) -> ArchiveHeader:
    """Verify the archive, refuse a non-empty target unless ``replace``, then restore it."""
    header = inspect(target, path)
    present = tables(target)
    if present and not replace:
        shown = ", ".join(present[:5]) + (", ..." if len(present) > 5 else "")
        raise TargetNotEmpty(
            f"the target database is not empty ({len(present)} table(s): {shown}); "
            "a restore replaces them: pass --yes to confirm"
        )
    try:
        with path.open("rb") as source:
            chunks = plaintext(source, keys=target.keys, environment=target.environment)
            if target.kind == SQLITE:
                sqlite.restore(target.url, chunks)
            else:
                postgres.restore(target.url, chunks, replace=bool(present))
    except (sqlite.SnapshotFailed, postgres.ToolFailed, OSError) as exc:
        raise BackupFailed(str(exc)) from exc
    return header
