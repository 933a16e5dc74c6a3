# SPDX-License-Identifier: Apache-2.0
"""SQLite snapshots and restores through SQLite's online backup API.

The backup API copies a consistent snapshot while the service keeps writing (WAL included), which
copying the file does not. A restore decrypts into a private file beside the target, checks its
integrity, and copies it into the target with the same API: the target is locked and rewritten
as one operation, its WAL accounted for, and a failure leaves it as it was.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from sqlalchemy import make_url

from bastion.backup.archive import CHUNK_BYTES

PAGES_PER_STEP = 1024


class SnapshotFailed(Exception):
    """The SQLite file could not be read or written; the message says why."""


def database_path(url: str) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        raise SnapshotFailed("DATABASE_URL names no SQLite file to back up or restore")
    return Path(database)


@contextlib.contextmanager
def _private_directory(beside: Path) -> Iterator[Path]:
    # 0700, on the target's file system: the plaintext copy never leaves the operator's directory.
    beside.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=beside.parent, prefix=".bastion-backup-") as directory:
        yield Path(directory)


def dump(url: str, sink: Callable[[bytes], None]) -> None:
    """Snapshot the database with the backup API and stream the snapshot into ``sink``."""
    path = database_path(url)
    if not path.is_file():
        raise SnapshotFailed(f"{path} does not exist")
    with _private_directory(path) as directory:
        snapshot = directory / "snapshot.db"
        try:
            with contextlib.closing(_read_only(path)) as source:
                _copy(source, snapshot)
        except sqlite3.Error as exc:
            raise SnapshotFailed(f"reading {path} failed: {exc}") from exc
        with snapshot.open("rb") as copy:
            while chunk := copy.read(CHUNK_BYTES):
                sink(chunk)


def tables(url: str) -> list[str]:
    """The tables the target database holds (none when the file does not exist)."""
    path = database_path(url)
    if not path.exists():
        return []
    connection = _read_only(path)
    try:
        rows = connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
        ).fetchall()
    except sqlite3.Error as exc:
        raise SnapshotFailed(f"{path} is not a readable SQLite database: {exc}") from exc
    finally:
        connection.close()
    return [str(name) for (name,) in rows]


def restore(url: str, chunks: Iterable[bytes]) -> None:
    """Write the snapshot to a private file, check it, then copy it into the target database."""
    path = database_path(url)
    with _private_directory(path) as directory:
        snapshot = directory / "restore.db"
        descriptor = os.open(snapshot, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
        try:
            with contextlib.closing(sqlite3.connect(snapshot)) as source:
                (verdict,) = source.execute("PRAGMA integrity_check").fetchone()
                if verdict != "ok":
                    raise SnapshotFailed(f"the restored snapshot fails SQLite's integrity check: {verdict}")
                # Owner-only, as the service creates it, before SQLite opens it.
                os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
                _copy(source, path)
        except sqlite3.Error as exc:
            raise SnapshotFailed(f"restoring into {path} failed: {exc}") from exc


def _read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)


def _copy(source: sqlite3.Connection, destination: Path) -> None:
    """Copy ``source`` into the database at ``destination`` with the backup API (one locked step
    per PAGES_PER_STEP pages; the destination changes only as a whole)."""
    with contextlib.closing(sqlite3.connect(destination)) as target:
        source.backup(target, pages=PAGES_PER_STEP)
