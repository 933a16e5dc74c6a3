# SPDX-License-Identifier: Apache-2.0
"""Entry point of the `bastion` command."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from bastion import __version__
from bastion.cli import db, secrets, users
from bastion.cli.common import settings_or_exit

app = typer.Typer(help="Bastion: a security-hardened backend for AI chat applications.", no_args_is_help=True)
app.add_typer(db.app, name="db")
app.add_typer(secrets.app, name="secrets")
app.add_typer(users.app, name="users")
app.add_typer(users.keys_app, name="keys")


class CertReqs(StrEnum):
    none = "none"
    optional = "optional"
    required = "required"


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


@app.command()
def check() -> None:
    """Deploy check: refuse what production must never run with, and list risky choices."""
    settings = settings_or_exit()
    warnings = settings.warnings()
    typer.echo(f"environment: {settings.environment}")
    for warning in warnings:
        typer.echo(f"warning: {warning}")
    typer.echo("ok" if not warnings else f"ok with {len(warnings)} warning(s)")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Listen address (default HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (default PORT).")] = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes.")] = 1,
    ssl_certfile: Annotated[str | None, typer.Option(help="TLS certificate (PEM).")] = None,
    ssl_keyfile: Annotated[str | None, typer.Option(help="TLS private key (PEM).")] = None,
    ssl_ca_certs: Annotated[str | None, typer.Option(help="CA bundle for client certificates.")] = None,
    ssl_cert_reqs: Annotated[CertReqs, typer.Option(help="Client certificate requirement.")] = CertReqs.none,
    migrate: Annotated[
        bool | None,
        typer.Option("--migrate/--no-migrate", help="Apply migrations first (default in development)."),
    ] = None,
) -> None:
    """Run the service with uvicorn."""
    import ssl

    import uvicorn

    from bastion.db import migrate as migrations
    from bastion.observability.logging import configure_logging

    settings = settings_or_exit()
    configure_logging(settings)
    if (ssl_certfile is None) != (ssl_keyfile is None):
        typer.echo("--ssl-certfile and --ssl-keyfile go together", err=True)
        raise typer.Exit(2)
    if migrate if migrate is not None else settings.environment == "development":
        migrations.upgrade(settings.database_url.get_secret_value())
    if workers > 1 and settings.redis_url is None:
        typer.echo(
            f"warning: {workers} workers without REDIS_URL: in-process limits apply per worker "
            f"(a limit of N allows up to {workers}xN)",
            err=True,
        )
    cert_reqs = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}
    uvicorn.run(
        "bastion.app:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        ssl_ca_certs=ssl_ca_certs,
        ssl_cert_reqs=cert_reqs[ssl_cert_reqs.value],
        # Bastion writes its own redacted access log; uvicorn's would print raw query strings.
        access_log=False,
        server_header=False,
        # Forwarded headers are believed only from TRUSTED_PROXIES, by Bastion itself.
        proxy_headers=False,
        log_config=None,
    )
