# SPDX-License-Identifier: Apache-2.0
"""`bastion db`: schema migrations."""

from __future__ import annotations

from typing import Annotated

import typer

from bastion.cli.common import database_or_exit, settings_or_exit, upgrade_or_exit
from bastion.crypto.fields import FieldCipher
from bastion.db import migrate

app = typer.Typer(help="Database schema.", no_args_is_help=True)


@app.command()
def upgrade(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
    """Apply migrations (to the newest by default)."""
    settings = settings_or_exit()
    database_or_exit(settings)
    upgrade_or_exit(settings, revision)
    typer.echo(f"database at revision {revision}")


@app.command()
def downgrade(revision: Annotated[str, typer.Argument(help="Target revision, e.g. -1 or base.")]) -> None:
    """Revert migrations down to a revision."""
    settings = settings_or_exit()
    database_or_exit(settings)
    migrate.downgrade(
        settings.database_url.get_secret_value(), revision, cipher=FieldCipher.for_settings(settings)
    )


@app.command()
def current() -> None:
    """Show the applied revision."""
    settings = settings_or_exit()
    database_or_exit(settings)
    migrate.current(settings.database_url.get_secret_value())
