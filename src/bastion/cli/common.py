# SPDX-License-Identifier: Apache-2.0
"""Helpers shared by the commands: settings loaded with a readable refusal instead of a traceback."""

from __future__ import annotations

import typer

from bastion.settings import ConfigurationError, Settings, load_settings


def settings_or_exit() -> Settings:
    try:
        return load_settings()
    except ConfigurationError as exc:
        typer.echo(exc.render(), err=True)
        raise typer.Exit(2) from None
