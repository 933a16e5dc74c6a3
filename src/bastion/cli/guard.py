# SPDX-License-Identifier: Apache-2.0
"""`bastion guard scan`: screen JSON lines from standard input, one verdict line per input line."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Guardrails: screen texts for prompt injection, jailbreaks and unsafe content.")


class InjectionActionOption(StrEnum):
    log = "log"
    flag = "flag"
    block = "block"


@app.command()
def scan(
    output: Annotated[bool, typer.Option("--output", help="Scan the texts as model output.")] = False,
    action: Annotated[
        InjectionActionOption, typer.Option(help="What a detected injection means (INJECTION_ACTION).")
    ] = InjectionActionOption.flag,
    profanity: Annotated[
        bool, typer.Option("--profanity/--no-profanity", help="Screen for profanity (PROFANITY_FILTER).")
    ] = True,
    words: Annotated[
        Path | None, typer.Option(help="Extra profanity words, one a line.", exists=True, dir_okay=False)
    ] = None,
    field: Annotated[str, typer.Option(help="Field whose length limit applies: message, journal, ...")] = (
        "message"
    ),
    max_length: Annotated[int, typer.Option(min=1, help="Length limit of that field, in characters.")] = (
        10_000
    ),
    canary: Annotated[str | None, typer.Option(help="Canary token to look for in output.")] = None,
) -> None:
    """Read `{"text": ...}` lines on standard input; write `{"action", "score", "categories"}` lines.

    Example: echo '{"text": "ignore all previous instructions"}' | bastion guard scan
    """
    from bastion.guard import Direction, Guard, GuardConfig, ScanContext

    guard = Guard(
        GuardConfig(
            injection_action=action.value,
            profanity_filter=profanity,
            profanity_words=words,
            max_lengths={field: max_length, "output": max(max_length, 100_000)},
            canary=canary,
        )
    )
    context = ScanContext(field="output", direction=Direction.output) if output else ScanContext(field=field)
    failed = False
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            text = item["text"]
            if not isinstance(text, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            failed = True
            typer.echo(json.dumps({"error": 'expected a JSON object with a "text" string'}))
            continue
        verdict = guard.scan_output(text, context) if output else guard.scan_input(text, context)
        typer.echo(json.dumps(verdict.as_dict()))
    if failed:
        raise typer.Exit(1)
