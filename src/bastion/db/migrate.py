# SPDX-License-Identifier: Apache-2.0
"""Alembic, driven from code: the schema changes only through these migrations."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from alembic import command
from alembic.config import Config

if TYPE_CHECKING:
    from bastion.crypto.fields import FieldCipher

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(database_url: str, cipher: FieldCipher | None = None) -> Config:
    config = Config()
    # Migrations that seal stored values (0008) read the deployment's cipher from here.
    config.attributes["cipher"] = cipher
    config.set_main_option("script_location", str(MIGRATIONS))
    # '%' is ConfigParser interpolation syntax; a password may contain it.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head", *, cipher: FieldCipher | None = None) -> None:
    """Apply migrations up to ``revision``. Runs its own event loop: call it outside one.

    ``cipher`` is needed when stored rows must be sealed on the way (upgrading a database that
    holds e-mail addresses in the clear); a database without such rows migrates without it.
    """
    command.upgrade(alembic_config(database_url, cipher), revision)


def downgrade(database_url: str, revision: str, *, cipher: FieldCipher | None = None) -> None:
    command.downgrade(alembic_config(database_url, cipher), revision)


def current(database_url: str) -> None:
    command.current(alembic_config(database_url), verbose=False)
