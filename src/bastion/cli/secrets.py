# SPDX-License-Identifier: Apache-2.0
"""`bastion secrets`: generate every secret Bastion needs with a CSPRNG; rotate them; report their age."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Coroutine
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
import yaml
from sqlalchemy.exc import SQLAlchemyError

from bastion.cli.common import DATABASE_CHECK_SECONDS, database_or_exit, settings_or_exit
from bastion.crypto import material
from bastion.db.engine import create_engine, create_sessionmaker
from bastion.db.types import utcnow
from bastion.rotation.service import Rotated, SecretStatus, rotatable_name, rotate, rotation_warnings, status
from bastion.rotation.store import RotationRefused, cipher_of
from bastion.settings import Settings

app = typer.Typer(help="Generate, rotate and report on secrets.", no_args_is_help=True)
T = TypeVar("T")


class Format(StrEnum):
    env = "env"
    json = "json"
    yaml = "yaml"


class Algorithm(StrEnum):
    EdDSA = "EdDSA"
    RS256 = "RS256"
    HS256 = "HS256"


def _env_line(name: str, value: str) -> str:
    # Single quotes keep a JSON keyset literal in .env files and POSIX shells.
    return f"{name}='{value}'" if any(c in value for c in ' "{}$') else f"{name}={value}"


def _write_files(directory: Path, values: dict[str, str]) -> None:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    existing = [name for name in values if (directory / name).exists()]
    if existing:
        typer.echo(f"Refusing to overwrite existing secret files: {', '.join(existing)}", err=True)
        raise typer.Exit(2)
    for name, value in values.items():
        fd = os.open(directory / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(value + "\n")
        typer.echo(f"wrote {directory / name}")


@app.command()
def generate(
    single: Annotated[str | None, typer.Option("--single", help="Only this secret, e.g. SECRET_KEY.")] = None,
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.env,
    jwt_algorithm: Annotated[
        Algorithm, typer.Option("--jwt-algorithm", help="Kind of JWT signing key to make.")
    ] = Algorithm.EdDSA,
    output_dir: Annotated[
        Path | None,
        typer.Option(
            "--output-dir", help="Write one file per secret (mode 0600) for NAME_FILE, instead of printing."
        ),
    ] = None,
) -> None:
    """Print fresh secrets for every setting that needs one, or write them as files.

    Example: bastion secrets generate --output-dir /run/secrets/bastion
    """
    if single is not None:
        name = single.upper()
        if name not in material.GENERATORS:
            typer.echo(f"Unknown secret {single!r}; choose from: {', '.join(material.GENERATORS)}", err=True)
            raise typer.Exit(2)
        algorithm = jwt_algorithm.value if name != "JWT_PRIVATE_KEYS" or jwt_algorithm != "HS256" else "EdDSA"
        values = {name: material.GENERATORS[name](algorithm)}
    else:
        values = material.generate_all(jwt_algorithm.value)
    if output_dir is not None:
        _write_files(output_dir, values)
        return
    if fmt is Format.json:
        typer.echo(json.dumps(values, indent=2))
    elif fmt is Format.yaml:
        typer.echo(yaml.safe_dump(values, sort_keys=False, default_flow_style=False).rstrip())
    else:
        typer.echo("\n".join(_env_line(name, value) for name, value in values.items()))


class StatusFormat(StrEnum):
    text = "text"
    json = "json"


def _refuse(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def _with_database(settings: Settings, work: Callable[[Settings], Coroutine[Any, Any, T]]) -> T:
    """Run ``work`` against DATABASE_URL: refusals and a schema without the table are one line, exit 2."""
    database_or_exit(settings)
    try:
        return asyncio.run(work(settings))
    except RotationRefused as exc:
        raise _refuse(str(exc)) from None
    except SQLAlchemyError as exc:
        raise _refuse(
            f"the database cannot hold secret versions ({type(exc).__name__}); run `bastion db upgrade` first"
        ) from None


async def _status(settings: Settings) -> list[SecretStatus]:
    engine = create_engine(settings.database_url.get_secret_value())
    try:
        async with asyncio.timeout(DATABASE_CHECK_SECONDS):
            return await status(create_sessionmaker(engine), settings)
    finally:
        await engine.dispose()


def secret_statuses(settings: Settings) -> list[SecretStatus] | None:
    """Every secret's age for the deploy check; None when the database cannot tell (unreachable,
    or not migrated yet). Reads only."""
    try:
        return asyncio.run(_status(settings))
    except (OSError, TimeoutError, SQLAlchemyError, RotationRefused, ValueError):
        return None


@app.command("rotate")
def rotate_command(
    name: Annotated[
        str, typer.Argument(help="SESSION_SECRET, CSRF_SECRET, API_KEY_SALT or SECRET_KEY (HS256).")
    ],
    grace_days: Annotated[
        int | None,
        typer.Option(
            "--grace-days", min=0, max=90, help="How long the previous value verifies (SECRET_GRACE_DAYS)."
        ),
    ] = None,
    emergency: Annotated[
        bool,
        typer.Option(
            "--emergency", help="No grace, and every session of every user ends (incident response)."
        ),
    ] = False,
) -> None:
    """Make a new value current on every instance; the previous one verifies during the grace period.

    Example: bastion secrets rotate SESSION_SECRET --grace-days 7
    """
    from bastion.cli.users import CLI_CONTEXT, identity_runtime

    settings = settings_or_exit()
    if emergency and grace_days:
        raise _refuse("--emergency rotates with no grace; leave out --grace-days")
    try:
        rotatable_name(name, settings)
        cipher_of(settings)
    except RotationRefused as exc:
        raise _refuse(str(exc)) from None
    grace = timedelta(days=settings.secret_grace_days if grace_days is None else grace_days)

    async def work(settings: Settings) -> Rotated:
        async with identity_runtime(settings) as runtime:
            return await rotate(
                runtime.sessionmaker,
                settings,
                name,
                grace=grace,
                emergency=emergency,
                end_sessions=lambda: runtime.service().end_all_sessions(
                    CLI_CONTEXT, reason="emergency_rotation"
                ),
                audit=runtime.audit,
            )

    done = _with_database(settings, work)
    typer.echo(f"rotated {done.name}: new version {done.version}, current on every instance within a minute")
    if done.previous_until is not None:
        typer.echo(f"the previous value verifies until {done.previous_until.isoformat()}")
    else:
        typer.echo("the previous value no longer verifies")
    if done.sessions_ended is not None:
        typer.echo(f"ended every session ({done.sessions_ended} open); everyone signs in again")


@app.command("status")
def status_command(
    fmt: Annotated[StatusFormat, typer.Option("--format", help="text or json.")] = StatusFormat.text,
) -> None:
    """Each secret's source, version id, age and the grace end of its previous value; never a value.

    Example: bastion secrets status --format json
    """
    settings = settings_or_exit()
    found = _with_database(settings, _status)
    now = utcnow()
    period = settings.secret_rotation_days
    warnings = rotation_warnings(found, now, period)
    if fmt is StatusFormat.json:
        body = {
            "rotation_days": period,
            "secrets": [item.as_dict(now, period) for item in found],
            "warnings": warnings,
        }
        typer.echo(json.dumps(body, indent=2))
        return
    typer.echo(f"{'NAME':<18} {'SOURCE':<9} {'VERSION':<20} {'AGE':>8}  PREVIOUS VERIFIES UNTIL")
    for item in found:
        age = item.age_days(now)
        typer.echo(
            f"{item.name:<18} {item.source or 'unrecorded':<9} {item.version or '-':<20} "
            f"{f'{age:.1f}d' if age is not None else '-':>8}  "
            f"{item.previous_until.isoformat() if item.previous_until else '-'}"
        )
    for warning in warnings:
        typer.echo(f"warning: {warning}")
