# SPDX-License-Identifier: Apache-2.0
"""`bastion db`: schema migrations, re-encryption, and (in ``cli.backups``) backups."""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from typing import Annotated

import typer

from bastion.audit.events import AuditEvent, Result
from bastion.audit.service import AuditService
from bastion.cli import backups
from bastion.cli.common import (
    Output,
    database_or_exit,
    encryption_keys_or_exit,
    settings_or_exit,
    upgrade_or_exit,
)
from bastion.crypto.fields import FieldCipher
from bastion.crypto.material import parse_encryption_keys
from bastion.crypto.rekey import DEFAULT_BATCH, ColumnReport, census, kids_in_use
from bastion.crypto.rekey import due as count_due
from bastion.crypto.rekey import rekey as run_rekey
from bastion.db import migrate
from bastion.db.engine import create_engine, create_sessionmaker

app = typer.Typer(help="Database schema, stored encryption, backups.", no_args_is_help=True)
app.command()(backups.backup)
app.command()(backups.restore)


@app.command()
def upgrade(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
    """Apply migrations (to the newest by default).

    Example: bastion db upgrade
    """
    settings = settings_or_exit()
    database_or_exit(settings)
    upgrade_or_exit(settings, revision)
    typer.echo(f"database at revision {revision}")


@app.command()
def downgrade(revision: Annotated[str, typer.Argument(help="Target revision, e.g. -1 or base.")]) -> None:
    """Revert migrations down to a revision.

    Example: bastion db downgrade -1
    """
    settings = settings_or_exit()
    database_or_exit(settings)
    migrate.downgrade(
        settings.database_url.get_secret_value(), revision, cipher=FieldCipher.for_settings(settings)
    )


@app.command()
def current() -> None:
    """Show the applied revision.

    Example: bastion db current
    """
    settings = settings_or_exit()
    database_or_exit(settings)
    migrate.current(settings.database_url.get_secret_value())


@app.command()
def rekey(
    check: Annotated[
        bool, typer.Option("--check", help="Only count the values each key id protects; change nothing.")
    ] = False,
    batch_size: Annotated[int, typer.Option(min=1, max=10_000, help="Rows per transaction.")] = DEFAULT_BATCH,
    output: Annotated[Output, typer.Option("--format", help="text or json (with --check).")] = Output.text,
) -> None:
    """Re-seal every stored value under the newest DATABASE_ENCRYPTION_KEY (safe while serving).

    Interrupted, it resumes: run it again. With --check, how many values each key id still protects,
    so an old key id is removed from DATABASE_ENCRYPTION_KEY only when nothing needs it.

    Example: bastion db rekey --check
    """
    settings = settings_or_exit()
    database_or_exit(settings)
    encryption_keys_or_exit(settings, record=False)
    cipher = FieldCipher.for_settings(settings)
    raw_keys = parse_encryption_keys(settings.secret("DATABASE_ENCRYPTION_KEY") or "")

    async def run() -> int:
        engine = create_engine(settings.database_url.get_secret_value())
        try:
            if check:
                return _report_census(await census(engine), cipher, output)
            total = await count_due(engine, cipher)  # the bar's length: what this run re-seals
            sessionmaker = create_sessionmaker(engine)
            with typer.progressbar(length=total, label="re-sealing", file=sys.stderr) as bar:
                reports = await run_rekey(
                    engine,
                    sessionmaker,
                    cipher,
                    raw_keys=raw_keys,
                    batch_size=batch_size,
                    progress=lambda _name, done: bar.update(done),
                )
            await AuditService(sessionmaker=sessionmaker).record(
                AuditEvent.DATABASE_REKEYED,
                result=Result.FAILURE if any(r.unreadable for r in reports.values()) else Result.SUCCESS,
                actor_type="operator",
                details={
                    "key_id": cipher.active_kid,
                    "resealed": sum(r.resealed for r in reports.values()),
                    "unreadable": sum(len(r.unreadable) for r in reports.values()),
                },
            )
            return _report_rekey(reports)
        finally:
            await engine.dispose()

    raise typer.Exit(asyncio.run(run()))


def _report_census(counts: dict[str, Counter[str]], cipher: FieldCipher, output: Output) -> int:
    used = kids_in_use(counts)
    legacy = sum(
        count for tally in counts.values() for label, count in tally.items() if label.startswith("v1.")
    )
    if output is Output.json:
        states = {
            kid: "active" if kid == cipher.active_kid else "in_use" if kid in used else "unused"
            for kid in cipher.kids
        }
        body = {"columns": {name: dict(tally) for name, tally in counts.items()}, "key_ids": states}
        typer.echo(json.dumps({**body, "legacy_values": legacy}, indent=2, sort_keys=True))
        return 0
    for name, tally in counts.items():
        described = ", ".join(f"{label}: {count}" for label, count in sorted(tally.items())) or "empty"
        typer.echo(f"{name}\t{described}")
    for kid in cipher.kids:
        if kid == cipher.active_kid:
            typer.echo(f"key id {kid!r}: active (seals new values)")
        elif kid in used:
            typer.echo(
                f"key id {kid!r}: still protects stored values; run `bastion db rekey` before removing it"
            )
        else:
            typer.echo(f"key id {kid!r}: protects nothing; remove it from DATABASE_ENCRYPTION_KEY")
    if legacy:
        typer.echo(f"{legacy} value(s) in the older v1 format: `bastion db rekey` re-seals them")
    return 0


def _report_rekey(reports: dict[str, ColumnReport]) -> int:
    failed = 0
    for name, report in reports.items():
        line = f"{name}\tre-sealed {report.resealed}"
        if report.changed:
            line += f", {report.changed} changed meanwhile (run again)"
        if report.unreadable:
            failed += len(report.unreadable)
            line += f", {len(report.unreadable)} unreadable: {', '.join(report.unreadable[:5])}"
        typer.echo(line)
    if failed:
        typer.echo(f"error: {failed} stored value(s) failed to open and were left as they are", err=True)
        return 1
    return 0
