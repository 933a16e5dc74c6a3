# SPDX-License-Identifier: Apache-2.0
"""The `bastion` command."""

from __future__ import annotations

from bastion.cli.main import app


def main() -> None:
    app()


__all__ = ["app", "main"]
