# SPDX-License-Identifier: Apache-2.0
"""`bastion check`: every configuration check in every environment; `--deploy` gates a deployment.

Plain `bastion check` lists what the checks find and exits 0 (production settings that Bastion
refuses still exit 2, as `serve` would). `bastion check --deploy` reports production refusals as
findings with their ids too, and exits 1 when a finding is at or above `--fail-level`.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy import make_url

from bastion.cli.common import encryption_keys_or_exit, settings_or_exit
from bastion.deploycheck.registry import Finding, Severity, failing
from bastion.settings import AUDITING, Settings


class Level(StrEnum):
    info = "info"
    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"
    never = "never"

    @property
    def severity(self) -> Severity | None:
        return None if self is Level.never else Severity[self.name.upper()]


class OutputFormat(StrEnum):
    text = "text"
    json = "json"


def _missing_sqlite_file(settings: Settings) -> bool:
    url = make_url(settings.database_url.get_secret_value())
    database = url.database or ""
    return url.get_backend_name() == "sqlite" and not (database and Path(database).exists())


def _secret_statuses(settings: Settings, notes: list[str]) -> Any:
    """Secret ages from the database, when it can be read without changing anything."""
    from bastion.cli.secrets import secret_statuses

    # Read-only: a check records nothing, and does not create a SQLite file that is not there yet.
    if _missing_sqlite_file(settings):
        notes.append("the SQLite database does not exist yet: secret ages were not checked")
        return None
    if settings.secret("DATABASE_ENCRYPTION_KEY") is None:
        notes.append("DATABASE_ENCRYPTION_KEY is missing: the database was not read")
        return None
    if not encryption_keys_or_exit(settings, record=False, unreachable_ok=True):
        notes.append(
            "the database is not reachable: DATABASE_ENCRYPTION_KEY and secret ages were not checked"
        )
        return None
    statuses = secret_statuses(settings)
    if statuses is None:
        notes.append("secret ages are not recorded yet (run `bastion db upgrade`)")
    return statuses


def check(
    deploy: Annotated[
        bool,
        typer.Option(
            "--deploy",
            help="Audit for a production deployment: refusals become findings, exit 1 at --fail-level.",
        ),
    ] = False,
    url: Annotated[
        str | None,
        typer.Option(help="Also check this running instance from the outside, e.g. https://api.example.org."),
    ] = None,
    http_url: Annotated[
        str | None,
        typer.Option(help="Where plain http should redirect to --url (default http://HOST of --url)."),
    ] = None,
    ca_file: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="Trust this CA too when checking --url (PEM)."),
    ] = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Workers per instance `serve` will run.")] = 1,
    fail_level: Annotated[
        Level | None,
        typer.Option(help="Exit 1 on a finding at or above this severity (--deploy: medium; else never)."),
    ] = None,
    ignore: Annotated[
        list[str] | None,
        typer.Option(help="A check id to accept for this deployment (repeatable); reported as ignored."),
    ] = None,
    fmt: Annotated[OutputFormat, typer.Option("--format", help="text or json.")] = OutputFormat.text,
) -> None:
    """Audit the effective configuration (and with --url a running instance) as a security reviewer would.

    Each finding has a stable id, a severity and a one-line fix (docs/deploy.md lists them all).

    Example: bastion check --deploy --url https://api.example.org --format json
    """
    token = AUDITING.set(deploy)
    try:
        settings = settings_or_exit()
    finally:
        AUDITING.reset(token)
    notes: list[str] = []
    statuses = _secret_statuses(settings, notes)
    findings = settings.findings(lambda _: True, secret_statuses=statuses, workers=workers)
    if url is not None:
        from bastion.deploycheck.live import Target, probe

        findings += probe(Target(url, http_url=http_url, ca_file=ca_file))
    accepted = set(ignore or ())
    ignored = [finding for finding in findings if finding.id in accepted]
    findings = [finding for finding in findings if finding.id not in accepted]
    level = (fail_level or (Level.medium if deploy else Level.never)).severity
    failed = failing(findings, level)
    if fmt is OutputFormat.json:
        body = {
            "environment": settings.environment,
            "deploy": deploy,
            "url": url,
            "fail_level": level.label if level is not None else None,
            "passed": not failed,
            "findings": [finding.as_dict() for finding in findings],
            "ignored": [finding.as_dict() for finding in ignored],
            "notes": notes,
        }
        typer.echo(json.dumps(body, indent=2))
    else:
        _print(settings, findings, ignored, notes, failed, level)
    if failed:
        raise typer.Exit(1)


def _print(
    settings: Settings,
    findings: list[Finding],
    ignored: list[Finding],
    notes: list[str],
    failed: list[Finding],
    level: Severity | None,
) -> None:
    typer.echo(f"environment: {settings.environment}")
    for finding in sorted(findings, key=lambda item: -item.severity):
        typer.echo(f"warning: {finding.message} [{finding.id}, {finding.severity.label}]")
        typer.echo(f"  fix: {finding.fix}")
    for finding in ignored:
        typer.echo(f"ignored: {finding.message} [{finding.id}, {finding.severity.label}]")
    for note in notes:
        typer.echo(f"note: {note}")
    if level is None:
        typer.echo("ok" if not findings else f"ok with {len(findings)} warning(s)")
    elif failed:
        ids = ", ".join(sorted({finding.id for finding in failed}))
        typer.echo(f"failed: {len(failed)} finding(s) at or above {level.label}: {ids}")
    else:
        typer.echo(f"passed: no finding at or above {level.label} ({len(findings)} below)")
