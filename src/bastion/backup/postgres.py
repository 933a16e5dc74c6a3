# SPDX-License-Identifier: Apache-2.0
"""PostgreSQL dumps and restores through the server's own client tools, pg_dump and pg_restore.

The custom format (``pg_dump -Fc``) streams to stdout and restores from stdin, so neither side
keeps the plaintext dump on disk. ``pg_restore --single-transaction`` makes a restore all or
nothing: a failure half way leaves the target as it was. The password goes to the tools in their
environment (PGPASSWORD), never on a command line that ``ps`` shows.
"""

from __future__ import annotations

import glob
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

from sqlalchemy import make_url

from bastion.backup.archive import CHUNK_BYTES

LIBPQ_SSL_MODES = frozenset({"disable", "allow", "prefer", "require", "verify-ca", "verify-full"})
_PASSTHROUGH = {"sslrootcert": "PGSSLROOTCERT", "sslcert": "PGSSLCERT", "sslkey": "PGSSLKEY"}


class ToolFailed(Exception):
    """pg_dump or pg_restore is missing or failed; the message carries its first error lines."""


def client_binary(name: str) -> str:
    """The newest installed ``name`` (pg_dump, pg_restore): the server's bindir, then PATH.

    A dump needs a pg_dump at least as new as the server, so the newest installed one is preferred
    over whatever comes first on PATH.
    """
    candidates: list[Path] = []
    if pg_config := shutil.which("pg_config"):
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)  # noqa: S603
        candidates.append(Path(out.stdout.strip()) / name)
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: _major(Path(p).parent.name))
    candidates += [Path(found) / name for found in reversed(versions)]
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    if on_path := shutil.which(name):
        return on_path
    raise ToolFailed(f"{name} is not installed: install the PostgreSQL client tools (postgresql-client)")


def _major(name: str) -> int:
    return int(name) if name.isdigit() else -1


def libpq_environment(url: str) -> tuple[str, dict[str, str]]:
    """(database name, PG* environment) for the tools, from a SQLAlchemy DATABASE_URL."""
    parsed = make_url(url)
    env = {"PGCONNECT_TIMEOUT": "10", "LC_ALL": "C"}
    for value, name in (
        (parsed.host, "PGHOST"),
        (parsed.port, "PGPORT"),
        (parsed.username, "PGUSER"),
        (parsed.password, "PGPASSWORD"),
    ):
        if value is not None:
            env[name] = str(value)
    query = {key: value if isinstance(value, str) else value[-1] for key, value in parsed.query.items()}
    mode = query.get("sslmode") or query.get("ssl")
    if mode is not None:
        env["PGSSLMODE"] = (
            mode if mode in LIBPQ_SSL_MODES else ("require" if mode.lower() == "true" else "disable")
        )
    for key, name in _PASSTHROUGH.items():
        if key in query:
            env[name] = query[key]
    return parsed.database or "", env


def dump(url: str, sink: Callable[[bytes], None]) -> None:
    """Stream a custom-format dump of the database into ``sink``, chunk by chunk."""
    database, env = libpq_environment(url)
    command = [client_binary("pg_dump"), "--format=custom", "--no-owner", "--no-acl", f"--dbname={database}"]
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, env=env)  # noqa: S603
        assert process.stdout is not None  # noqa: S101 - stdout=PIPE always gives one
        with process.stdout:
            while chunk := process.stdout.read(CHUNK_BYTES):
                sink(chunk)
        if process.wait() != 0:
            raise ToolFailed(f"pg_dump failed: {_first_lines(errors)}")


def restore(url: str, chunks: Iterable[bytes], *, replace: bool) -> None:
    """Feed a custom-format dump to pg_restore in one transaction; with ``replace``, objects that
    already exist are dropped first (``--clean --if-exists``)."""
    database, env = libpq_environment(url)
    command = [
        client_binary("pg_restore"),
        "--single-transaction",
        "--exit-on-error",
        "--no-owner",
        "--no-acl",
        f"--dbname={database}",
    ]
    if replace:
        command += ["--clean", "--if-exists"]
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(  # noqa: S603
            command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errors, env=env
        )
        assert process.stdin is not None  # noqa: S101 - stdin=PIPE always gives one
        try:
            with process.stdin:
                for chunk in chunks:
                    process.stdin.write(chunk)
        except BrokenPipeError:
            pass  # pg_restore stopped early: its exit status and messages say why
        except BaseException:
            process.kill()  # an archive chunk failed: the open transaction is never committed
            process.wait()
            raise
        if process.wait() != 0:
            raise ToolFailed(f"pg_restore failed (the database is unchanged): {_first_lines(errors)}")


def _first_lines(errors: IO[bytes], count: int = 3) -> str:
    errors.seek(0)
    text = errors.read().decode("utf-8", "replace")
    lines = [line for line in text.splitlines() if line.strip()]
    return "; ".join(lines[:count]) or "no message"
