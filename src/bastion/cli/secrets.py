# SPDX-License-Identifier: Apache-2.0
"""`bastion secrets`: generate every secret Bastion needs with a CSPRNG."""

from __future__ import annotations

import json
from enum import StrEnum
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


@app.command()
def generate(
    single: Annotated[str | None, typer.Option("--single", help="Only this secret, e.g. SECRET_KEY.")] = None,
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.env,
    jwt_algorithm: Annotated[
        Algorithm, typer.Option("--jwt-algorithm", help="Kind of JWT signing key to make.")
    ] = Algorithm.EdDSA,
) -> None:
    """Print fresh secrets for every setting that needs one (to standard output only)."""
    if single is not None:
        name = single.upper()
        if name not in material.GENERATORS:
            typer.echo(f"Unknown secret {single!r}; choose from: {', '.join(material.GENERATORS)}", err=True)
            raise typer.Exit(2)
        algorithm = jwt_algorithm.value if name != "JWT_PRIVATE_KEYS" or jwt_algorithm != "HS256" else "EdDSA"
        values = {name: material.GENERATORS[name](algorithm)}
    else:
        values = material.generate_all(jwt_algorithm.value)
    if fmt is Format.json:
        typer.echo(json.dumps(values, indent=2))
    elif fmt is Format.yaml:
        typer.echo(yaml.safe_dump(values, sort_keys=False, default_flow_style=False).rstrip())
    else:
        typer.echo("\n".join(_env_line(name, value) for name, value in values.items()))
