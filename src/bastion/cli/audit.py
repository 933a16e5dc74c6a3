# SPDX-License-Identifier: Apache-2.0
"""`bastion audit verify` and `bastion audit export` (docs/audit.md)."""

from __future__ import annotations

import asyncio
import csv
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import IO, Annotated, Any

import typer
from sqlalchemy import select

from bastion.audit.chain import ChainReport, verify
from bastion.audit.events import AuditEvent
from bastion.audit.models import AuditRecord
from bastion.audit.service import AuditService
from bastion.audit.sinks import DOCUMENT_FIELDS, build_fanout, document
from bastion.cli.common import Output, database_or_exit, private_output, settings_or_exit
from bastion.db.engine import create_engine, create_sessionmaker
from bastion.db.pages import keyset_pages
from bastion.settings import Settings

app = typer.Typer(no_args_is_help=True, help="Check and export the audit log.")


class ExportFormat(StrEnum):
    jsonl = "jsonl"
    csv = "csv"


def _run(settings: Settings, work: Callable[[Any], Awaitable[Any]]) -> Any:
    """Run ``work(sessionmaker)`` against the configured database, audit sinks attached."""

    async def main() -> Any:
        engine = create_engine(settings.database_url.get_secret_value())
        try:
            sessionmaker = create_sessionmaker(engine)
            fanout = build_fanout(settings).attach(sessionmaker)
            try:
                return await work(sessionmaker)
            finally:
                await fanout.aclose()
        finally:
            await engine.dispose()

    return asyncio.run(main())


@app.command("verify")
def verify_command(
    output: Annotated[Output, typer.Option("--format", help="text or json.")] = Output.text,
) -> None:
    """Check every audit chain from its anchor to its head; exit 1 naming the first broken record.

    Example: bastion audit verify --format json
    """
    settings = settings_or_exit()
    database_or_exit(settings)
    reports: list[ChainReport] = _run(settings, verify)
    if output is Output.json:
        typer.echo(
            json.dumps(
                [
                    {
                        "chain": r.chain,
                        "intact": r.intact,
                        "first_seq": r.first_seq,
                        "last_seq": r.last_seq,
                        "records": r.records,
                        "redacted_addresses": r.redacted_addresses,
                        "broken_record": r.broken_record,
                        "problems": r.problems,
                    }
                    for r in reports
                ],
                sort_keys=True,
            )
        )
    else:
        for r in reports:
            if r.intact:
                span = f"#{r.first_seq}..#{r.last_seq}" if r.records else "empty"
                erased = f", {r.redacted_addresses} address(es) erased" if r.redacted_addresses else ""
                typer.echo(f"{r.chain} chain intact: {r.records} record(s), {span}{erased}")
            else:
                typer.echo(f"{r.chain} chain BROKEN: {r.problems[0]}")
    if not all(r.intact for r in reports):
        raise typer.Exit(1)


def _when(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            "an ISO 8601 time, e.g. 2026-12-01T00:00:00+00:00", param_hint=option
        ) from None
    if moment.tzinfo is None:
        raise typer.BadParameter("give the time zone (e.g. +00:00 or Z)", param_hint=option)
    return moment


def _cell(value: Any) -> Any:
    return json.dumps(value, sort_keys=True, ensure_ascii=False) if isinstance(value, dict | list) else value


@app.command("export")
def export_command(
    since: Annotated[str | None, typer.Option(help="First time included (ISO 8601 with zone).")] = None,
    until: Annotated[str | None, typer.Option(help="First time excluded (ISO 8601 with zone).")] = None,
    output_format: Annotated[
        ExportFormat, typer.Option("--format", help="jsonl or csv.")
    ] = ExportFormat.jsonl,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write (default stdout).")
    ] = None,
) -> None:
    """Write the audit records of a time range, oldest first, as JSON lines or CSV (audited).

    Example: bastion audit export --since 2026-12-01T00:00:00Z --format csv -o december.csv
    """
    settings = settings_or_exit()
    database_or_exit(settings)
    start, end = _when(since, "--since"), _when(until, "--until")

    async def work(sessionmaker: Any) -> int:
        statement = select(AuditRecord)
        if start is not None:
            statement = statement.where(AuditRecord.timestamp >= start)
        if end is not None:
            statement = statement.where(AuditRecord.timestamp < end)
        stream: IO[str] = private_output(output) if output else sys.stdout
        count = 0
        try:
            writer = (
                csv.DictWriter(stream, fieldnames=DOCUMENT_FIELDS)
                if output_format is ExportFormat.csv
                else None
            )
            if writer is not None:
                writer.writeheader()
            async for page in keyset_pages(sessionmaker, statement, (AuditRecord.timestamp, AuditRecord.id)):
                for record in page:
                    values = document(record)
                    if writer is not None:
                        writer.writerow({name: _cell(value) for name, value in values.items()})
                    else:
                        stream.write(json.dumps(values, sort_keys=True, ensure_ascii=False) + "\n")
                    count += 1
        finally:
            if output:
                stream.close()
        await AuditService(sessionmaker=sessionmaker).record(
            AuditEvent.AUDIT_EXPORTED,
            actor_type="operator",
            details={"since": since, "until": until, "format": str(output_format), "records": count},
        )
        return count

    count: int = _run(settings, work)
    if output:
        typer.echo(f"{count} record(s) written to {output}", err=True)
