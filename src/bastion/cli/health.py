# SPDX-License-Identifier: Apache-2.0
"""`bastion healthcheck`: the container's probe of its own instance, with the deployment's settings.

A probe written as a fixed URL breaks on the first real configuration: ALLOWED_HOSTS refuses a Host
of 127.0.0.1 (400), and a non-default PORT or HOST is missed. This one reads the same settings
`bastion serve` runs with, connects over loopback and names a host ALLOWED_HOSTS accepts. Plain
http from loopback to GET /health is answered even with FORCE_HTTPS (bastion.web.https).
"""

from __future__ import annotations

import http.client
from typing import Annotated

import typer

from bastion.cli.common import settings_or_exit
from bastion.settings import Settings

# Where a wildcard listen address is reached from inside the same machine.
LOOPBACK_FOR = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}  # noqa: S104  # nosec B104 - mapped to loopback, never bound


def probe_host(settings: Settings) -> str:
    """A Host header value ALLOWED_HOSTS accepts: an exact name, else a name under a wildcard."""
    for entry in settings.allowed_hosts:
        if "*" not in entry:
            return entry
    for entry in settings.allowed_hosts:
        if entry.startswith("*."):
            return "healthcheck" + entry[1:]
    return "localhost"


def healthcheck(
    timeout: Annotated[float, typer.Option(min=0.1, max=60, help="Seconds to wait for the answer.")] = 2.0,
) -> None:
    """Exit 0 when this instance answers GET /health with 200 (HEALTHCHECK of the image and compose).

    Example: docker compose exec api bastion healthcheck
    """
    settings = settings_or_exit()
    address = LOOPBACK_FOR.get(settings.host, settings.host)
    connection = http.client.HTTPConnection(address, settings.port, timeout=timeout)
    try:
        connection.request("GET", "/health", headers={"Host": probe_host(settings)})
        status = connection.getresponse().status
    except OSError as exc:
        typer.echo(f"unhealthy: {address}:{settings.port} did not answer ({type(exc).__name__})", err=True)
        raise typer.Exit(1) from None
    finally:
        connection.close()
    if status != 200:
        typer.echo(f"unhealthy: GET /health answered {status}", err=True)
        raise typer.Exit(1)
    typer.echo("healthy")
