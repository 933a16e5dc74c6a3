# SPDX-License-Identifier: Apache-2.0
"""Entry point of the `bastion` command."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from bastion import __version__
from bastion.cli import api_keys as _api_keys  # noqa: F401 - registers `bastion keys create|list|revoke|rotate`
from bastion.cli import audit, blocks, check, db, guard, health, retention, secrets, signatures, users
from bastion.cli.common import database_or_exit, encryption_keys_or_exit, settings_or_exit, upgrade_or_exit
from bastion.settings import PROMETHEUS_MULTIPROC_DIR, Settings

app = typer.Typer(help="Bastion: a security-hardened backend for AI chat applications.", no_args_is_help=True)
app.add_typer(audit.app, name="audit")
app.add_typer(blocks.app, name="blocks")
app.add_typer(db.app, name="db")
app.add_typer(guard.app, name="guard")
app.add_typer(secrets.app, name="secrets")
app.add_typer(users.app, name="users")
app.add_typer(users.keys_app, name="keys")
app.command("purge")(retention.purge)
app.command("check")(check.check)
app.command("healthcheck")(health.healthcheck)
app.command("verify-signature")(signatures.verify_signature)


class CertReqs(StrEnum):
    none = "none"
    optional = "optional"
    required = "required"


@app.command()
def version() -> None:
    """Print the version.

    Example: bastion version
    """
    typer.echo(__version__)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Listen address (default HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (default PORT).")] = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes.")] = 1,
    ssl_certfile: Annotated[str | None, typer.Option(help="TLS certificate (PEM).")] = None,
    ssl_keyfile: Annotated[str | None, typer.Option(help="TLS private key (PEM).")] = None,
    ssl_ca_certs: Annotated[str | None, typer.Option(help="CA bundle for client certificates.")] = None,
    ssl_cert_reqs: Annotated[CertReqs, typer.Option(help="Client certificate requirement.")] = CertReqs.none,
    uds: Annotated[
        str | None, typer.Option(help="Listen on this unix socket instead of HOST:PORT (behind nginx).")
    ] = None,
    migrate: Annotated[
        bool | None,
        typer.Option("--migrate/--no-migrate", help="Apply migrations first (default in development)."),
    ] = None,
) -> None:
    """Run the service with uvicorn.

    Example: bastion serve --workers 4 --uds /run/bastion/bastion.sock
    """
    import ssl

    import uvicorn

    from bastion.cli.tls import hardened_ssl_context
    from bastion.observability.logging import configure_logging
    from bastion.web.header_deadline import PROTOCOL as HEADER_DEADLINE_PROTOCOL
    from bastion.web.tls_extension import PROTOCOL as TLS_PROTOCOL

    settings = settings_or_exit()
    configure_logging(settings)
    if (ssl_certfile is None) != (ssl_keyfile is None):
        typer.echo("--ssl-certfile and --ssl-keyfile go together", err=True)
        raise typer.Exit(2)
    database_or_exit(settings)
    if migrate if migrate is not None else settings.environment == "development":
        upgrade_or_exit(settings)
    else:
        encryption_keys_or_exit(settings)
    if workers > 1 and settings.redis_url is None:
        typer.echo(
            f"warning: {workers} workers without REDIS_URL: in-process limits apply per worker "
            f"(a limit of N allows up to {workers}xN)",
            err=True,
        )
    cert_reqs = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}
    with _worker_metrics(settings, workers):
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
            # TLS 1.2+ with ECDHE+AEAD suites only: uvicorn builds the context, we restrict it.
            ssl_context_factory=hardened_ssl_context if ssl_certfile else None,
            # uvicorn does not fill in the ASGI TLS extension; this protocol adds the verified client
            # certificate to each request's scope, for mutual-TLS service identities.
            # Both close a connection whose headers are not complete within REQUEST_HEADER_TIMEOUT_SECONDS
            # (uvicorn itself waits for ever: slowloris).
            http=TLS_PROTOCOL if ssl_certfile else HEADER_DEADLINE_PROTOCOL,
            # Named, not "auto": auto falls back to the asyncio loop without a word when uvloop is
            # missing, so a deployment could run a server other than the one measured
            # (docs/performance.md). Both protocols above are httptools'.
            loop="uvloop",
            uds=uds,
            # Bastion writes its own redacted access log; uvicorn's would print raw query strings.
            access_log=False,
            server_header=False,
            # Forwarded headers are believed only from TRUSTED_PROXIES, by Bastion itself.
            proxy_headers=False,
            log_config=None,
        )


@contextlib.contextmanager
def _worker_metrics(settings: Settings, workers: int) -> Iterator[None]:
    """With several workers: one metrics directory for all of them, and PROMETHEUS_PORT served here.

    prometheus_client reads PROMETHEUS_MULTIPROC_DIR when a process first imports it, so it is
    put in the environment before uvicorn spawns the workers (fresh interpreters that inherit it).
    The directory is new and empty for each run (an inherited one is replaced: counts of another
    run must not add to this one's) and removed when the server stops. The PROMETHEUS_PORT
    listener binds here, once, before any worker starts, and serves the merge of every worker.
    """
    if workers == 1:
        yield
        return
    from bastion.observability.exporter import ExporterThread, MetricsExporter
    from bastion.observability.multiprocess import new_directory

    directory = new_directory()
    os.environ[PROMETHEUS_MULTIPROC_DIR] = str(directory)
    listener: ExporterThread | None = None
    try:
        if settings.prometheus_port is not None:
            from bastion.observability.multiprocess import WorkerFiles

            exporter = MetricsExporter(
                WorkerFiles(directory),
                None,
                host=settings.prometheus_host,
                port=settings.prometheus_port,
                extra_headers=settings.license_headers,
            )
            listener = ExporterThread(exporter)
            try:
                listener.start()
            except OSError as exc:
                typer.echo(
                    f"PROMETHEUS_PORT {settings.prometheus_host}:{settings.prometheus_port} cannot be "
                    f"opened ({exc.strerror})",
                    err=True,
                )
                raise typer.Exit(2) from None
        yield
    finally:
        if listener is not None:
            listener.stop()
        shutil.rmtree(directory, ignore_errors=True)


@app.command("nginx-config")
def nginx_config(
    domain: Annotated[str, typer.Option(help="The public host name.")],
    upstream: Annotated[
        str, typer.Option(help="Where Bastion listens: unix:/path/to.sock or a loopback address:port.")
    ] = "127.0.0.1:8000",
    output: Annotated[
        str | None, typer.Option(help="Write the config here instead of standard output.")
    ] = None,
    ssl_certificate: Annotated[str, typer.Option(help="Certificate chain (PEM).")] = (
        "/etc/letsencrypt/live/{domain}/fullchain.pem"
    ),
    ssl_certificate_key: Annotated[str, typer.Option(help="Private key (PEM).")] = (
        "/etc/letsencrypt/live/{domain}/privkey.pem"
    ),
    ssl_trusted_certificate: Annotated[
        str | None, typer.Option(help="Issuer chain for OCSP stapling verification.")
    ] = "/etc/letsencrypt/live/{domain}/chain.pem",
    listen: Annotated[str, typer.Option(help="Address nginx listens on.")] = "0.0.0.0",  # noqa: S104 # nosec B104 # nginx faces the public
    http_port: Annotated[int, typer.Option(min=1, max=65535)] = 80,
    https_port: Annotated[int, typer.Option(min=1, max=65535)] = 443,
    resolver: Annotated[str, typer.Option(help="DNS resolvers for OCSP stapling.")] = "1.1.1.1 9.9.9.9",
    pid_file: Annotated[str, typer.Option()] = "/run/nginx.pid",
    error_log: Annotated[str, typer.Option()] = "/var/log/nginx/error.log",
    access_log: Annotated[str, typer.Option()] = "/var/log/nginx/access.log",
    temp_dir: Annotated[str | None, typer.Option(help="Directory for nginx's temporary files.")] = None,
    user: Annotated[str | None, typer.Option(help="User the nginx workers run as.")] = None,
) -> None:
    """Write a hardened nginx reverse-proxy config (TLS 1.2/1.3, HSTS, http->https) for Bastion.

    Example: bastion nginx-config --domain chat.example.org --output /etc/nginx/conf.d/bastion.conf
    """
    from bastion.app import voice_body_bytes
    from bastion.cli.nginx import NginxConfigError, NginxOptions, render

    settings = settings_or_exit()
    try:
        text = render(
            NginxOptions(
                domain=domain,
                upstream=upstream,
                certificate=ssl_certificate,
                certificate_key=ssl_certificate_key,
                trusted_certificate=ssl_trusted_certificate or None,
                listen=listen,
                http_port=http_port,
                https_port=https_port,
                # The same ceilings Bastion enforces, so nginx refuses what Bastion would refuse.
                body_bytes=settings.max_request_body_bytes,
                voice_body_bytes=voice_body_bytes(settings),
                resolver=resolver,
                pid_file=pid_file,
                error_log=error_log,
                access_log=access_log,
                temp_dir=temp_dir,
                user=user,
            )
        )
    except NginxConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if output is None:
        typer.echo(text, nl=False)
    else:
        Path(output).write_text(text, encoding="utf-8")
        typer.echo(f"wrote {output}", err=True)
