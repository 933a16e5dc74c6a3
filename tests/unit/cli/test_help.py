# SPDX-License-Identifier: Apache-2.0
"""Every `bastion` command explains itself: `--help` works and shows an example."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from bastion.cli.main import app


def commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    children = getattr(command, "commands", None)
    if children:
        for name, child in children.items():
            yield from commands(child, (*path, name))
    else:
        yield path


ALL = sorted(commands(typer.main.get_command(app)))


def test_every_command_is_found() -> None:
    assert {("db", "backup"), ("db", "restore"), ("keys", "create"), ("purge",)} <= set(ALL)


@pytest.mark.parametrize("path", ALL, ids=" ".join)
def test_help_shows_an_example(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    examples = [line for line in result.output.splitlines() if "Example: " in line]
    assert examples and all("bastion " in line for line in examples), result.output
