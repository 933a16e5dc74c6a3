# SPDX-License-Identifier: Apache-2.0
"""`bastion secrets`: generate every secret Bastion needs with a CSPRNG."""

from __future__ import annotations

import json
import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
import yaml

from bastion.crypto import material

app = typer.Typer(help="Generate secrets.", no_args_is_help=True)


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
    """Print fresh secrets for every setting that needs one, or write them as files."""
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
