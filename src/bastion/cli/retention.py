# SPDX-License-Identifier: Apache-2.0
"""`bastion purge`: delete what is past its retention period, for cron (docs/privacy.md).

The same purge `bastion serve` runs every MAINTENANCE_INTERVAL_SECONDS; running it again finds
nothing more, so cron and the served instances may both run it.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer

from bastion.cli.common import Output, database_or_exit, settings_or_exit
from bastion.db.engine import create_engine, create_sessionmaker
from bastion.privacy.retention import RetentionPeriods, RetentionPurge


def purge(
    output: Annotated[Output, typer.Option("--format", help="text or json.")] = Output.text,
) -> None:
    """Delete expired chat sessions and messages (RETENTION_DAYS_APP), access records
    (RETENTION_DAYS_ACCESS) and security records (RETENTION_DAYS_SECURITY); print the counts.

    Example: bastion purge --format json
    """
    settings = settings_or_exit()
    database_or_exit(settings)

    async def main() -> dict[str, int]:
        engine = create_engine(settings.database_url.get_secret_value())
        try:
            purge = RetentionPurge(
                sessionmaker=create_sessionmaker(engine), periods=RetentionPeriods.from_settings(settings)
            )
            return await purge.run()
        finally:
            await engine.dispose()

    counts = asyncio.run(main())
    if output is Output.json:
        typer.echo(json.dumps(counts, sort_keys=True))
        return
    for kind, count in counts.items():
        typer.echo(f"{kind}: {count}")
