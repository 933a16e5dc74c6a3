# SPDX-License-Identifier: Apache-2.0
"""`bastion check --deploy` as a real process: the hardened example of docs/deploy.md passes, a
deliberately weak configuration fails with the expected ids (human and JSON), and `--url` checks
real served instances (TLS with production settings, and a weak plain-http one)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.crypto import material
from bastion.deploycheck.live import tls_findings
from tests.e2e.conftest import run_bastion
from tests.support.bastion_server import bastion_serve
from tests.support.pki import TestCA
from tests.support.servers import free_port
from tests.support.tls_control import permissive_server

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(
    r"<!-- hardened-production-example -->\s*```sh\n(.*?)```\s*<!-- /hardened-production-example -->", re.S
)


def hardened_example(secrets_dir: Path) -> dict[str, str]:
    """docs/deploy.md's hardened production example, its /run/secrets files written under ``secrets_dir``."""
    lines = BLOCK.search((ROOT / "docs" / "deploy.md").read_text())
    assert lines is not None, "docs/deploy.md lost its hardened-production-example block"
    env = dict(
        line.split("=", 1) for line in lines.group(1).splitlines() if line and not line.startswith("#")
    )
    files = {**material.generate_all("EdDSA"), "OPENAI_API_KEY": material.token()}
    files["AUDIT_LOG_SINK_TOKEN"] = material.token()
    files["REDIS_URL"] = f"rediss://:{material.token()}@redis.internal:6380/0"
    # A database that refuses the connection (nothing listens): the check says so in a note and
    # judges the configuration alone; the URL has the documented shape.
    files["DATABASE_URL"] = (
        f"postgresql+asyncpg://bastion:{material.token()}@127.0.0.1:{free_port()}/bastion?ssl=verify-full"
    )
    secrets_dir.mkdir()
    for name, value in env.items():
        if name.endswith("_FILE"):
            target = secrets_dir / Path(value).name
            target.write_text(files[Path(value).name] + "\n")
            env[name] = str(target)
    return env


WEAK = {
    "ENVIRONMENT": "production",
    "DEBUG": "true",
    "ALLOWED_ORIGINS": "*",
    "REQUIRE_API_KEY": "false",
    "SESSION_SECRET": "0123456789" * 4,
    "ENABLE_DOCS": "true",
    "INJECTION_ACTION": "log",
    "OPENAI_API_KEY": "sk-" + "a1B2" * 10,
    "RATE_LIMIT_FAIL_MODE": "open",
    "PROMETHEUS_PORT": "9100",
    "PROMETHEUS_HOST": "0.0.0.0",  # noqa: S104 - the weakness under test
    "AUDIT_LOG_SINK": "stdout",
    "RETENTION_DAYS_ACCESS": "5000",
    "AUTH_CACHE_SECONDS": "30",
}
WEAK_IDS = {
    "debug-on",
    "cors-wildcard",
    "require-api-key-off",
    "secret-missing",
    "secret-weak",
    "secret-reused",
    "https-not-enforced",
    "docs-exposed",
    "metrics-open",
    "database-sqlite",
    "redis-missing",
    "workers-without-redis",
    "rate-limit-fail-open",
    "audit-db-missing",
    "retention-long",
    "auth-cache-long",
    "injection-action-log",
    "llm-offline",
    "openai-key-unused",
}


def weak_env(tmp_path: Path) -> dict[str, str]:
    shared = material.token()
    return {
        **WEAK,
        "CSRF_SECRET": shared,
        "API_KEY_SALT": shared,
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'weak.db'}",
    }


def test_the_hardened_example_passes(workdir: Path) -> None:
    env = hardened_example(workdir / "secrets")
    text = run_bastion("check", "--deploy", cwd=workdir, env=env)
    assert text.returncode == 0, text.stdout + text.stderr
    assert "environment: production" in text.stdout
    assert "warning:" not in text.stdout
    assert "passed: no finding at or above medium (0 below)" in text.stdout
    assert "note: the database is not reachable" in text.stdout
    document = run_bastion(
        "check", "--deploy", "--format", "json", "--fail-level", "info", cwd=workdir, env=env
    )
    assert document.returncode == 0, document.stdout + document.stderr
    body = json.loads(document.stdout)
    assert body["passed"] is True and body["findings"] == [] and body["fail_level"] == "info"
    assert body["environment"] == "production"


def test_a_weak_configuration_fails_with_the_expected_ids(workdir: Path) -> None:
    env = weak_env(workdir)
    text = run_bastion("check", "--deploy", "--workers", "4", cwd=workdir, env=env)
    assert text.returncode == 1, text.stdout + text.stderr
    assert "Traceback" not in text.stdout + text.stderr
    ids_in_text = set(
        re.findall(r"^warning: .* \[([a-z-]+), (?:critical|high|medium|low|info)\]$", text.stdout, re.M)
    )
    assert ids_in_text == WEAK_IDS
    failed_line = text.stdout.strip().splitlines()[-1]
    assert failed_line.startswith("failed: ") and "at or above medium" in failed_line
    assert "  fix: set DEBUG=false" in text.stdout
    assert "0123456789" not in text.stdout + text.stderr  # names the setting, never its value

    document = run_bastion("check", "--deploy", "--workers", "4", "--format", "json", cwd=workdir, env=env)
    assert document.returncode == 1
    body = json.loads(document.stdout)
    assert body["passed"] is False
    assert {finding["id"] for finding in body["findings"]} == WEAK_IDS
    severities = {finding["id"]: finding["severity"] for finding in body["findings"]}
    assert severities["debug-on"] == "critical" and severities["openai-key-unused"] == "low"
    assert all(finding["fix"] and finding["source"] == "config" for finding in body["findings"])

    # The same configuration is refused by a plain check (as `serve` would refuse it) ...
    assert run_bastion("check", cwd=workdir, env=env).returncode == 2
    # ... and accepted findings are reported as ignored, not dropped; --fail-level moves the gate.
    critical = [f["id"] for f in body["findings"] if f["severity"] == "critical"]
    ignored = [arg for check_id in critical for arg in ("--ignore", check_id)]
    gated = run_bastion(
        "check", "--deploy", "--fail-level", "critical", "--format", "json", *ignored, cwd=workdir, env=env
    )
    assert gated.returncode == 0, gated.stdout
    assert {f["id"] for f in json.loads(gated.stdout)["ignored"]} == set(critical)


def test_plain_check_shows_warnings_in_development(workdir: Path) -> None:
    result = run_bastion("check", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert "environment: development" in result.stdout
    for check_id in ("environment-not-production", "secret-generated", "database-sqlite", "llm-offline"):
        assert f"[{check_id}, " in result.stdout
    assert result.stdout.strip().splitlines()[-1].startswith("ok with ")


# -- a running instance -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA(tmp_path_factory.mktemp("pki"))


def production_serving_env() -> dict[str, str]:
    return {
        **material.generate_all("EdDSA"),
        "ENVIRONMENT": "production",
        "ALLOWED_HOSTS": "localhost",
        "ALLOWED_ORIGINS": "https://app.example.org",
        "FORCE_HTTPS": "true",
    }


@pytest.fixture(scope="module")
def hardened_instance(pki: TestCA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int]]:
    """A production instance over TLS, and one on plain http with the same settings (redirecting)."""
    server = pki.issue("server", "localhost", dns=("localhost",))
    tls_args = ["--migrate", "--ssl-certfile", str(server.cert), "--ssl-keyfile", str(server.key)]
    deployment = tmp_path_factory.mktemp("deployment")
    env = production_serving_env()
    with (
        bastion_serve(deployment, env=env, args=tls_args) as tls_port,
        bastion_serve(deployment, env=env) as http_port,
    ):
        yield tls_port, http_port


def live(workdir: Path, *args: str) -> dict[str, object]:
    result = run_bastion("check", "--format", "json", *args, cwd=workdir)
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def live_ids(body: dict[str, object]) -> set[str]:
    findings = body["findings"]
    assert isinstance(findings, list)
    return {finding["id"] for finding in findings if finding["source"] == "live"}


def test_a_hardened_instance_passes_the_live_checks(
    workdir: Path, pki: TestCA, hardened_instance: tuple[int, int]
) -> None:
    tls_port, http_port = hardened_instance
    body = live(
        workdir,
        "--url",
        f"https://localhost:{tls_port}",
        "--http-url",
        f"http://localhost:{http_port}",
        "--ca-file",
        str(pki.files.cert),
    )
    assert live_ids(body) == set(), body["findings"]


def test_live_checks_name_what_a_weak_instance_exposes(
    workdir: Path, pki: TestCA, hardened_instance: tuple[int, int], tmp_path: Path
) -> None:
    tls_port, _ = hardened_instance
    # A development-style instance: plain http, docs on, any origin. As the --http-url of the
    # hardened TLS instance it is a plain-http port that answers instead of redirecting.
    weak = {
        "ENVIRONMENT": "test",
        "ALLOWED_ORIGINS": "*",
        "ENABLE_DOCS": "true",
        "ALLOWED_HOSTS": "localhost",
    }
    with bastion_serve(tmp_path, env=weak) as port:
        plain = live(workdir, "--url", f"http://localhost:{port}")
        redirect = live(
            workdir,
            "--url",
            f"https://localhost:{tls_port}",
            "--http-url",
            f"http://localhost:{port}",
            "--ca-file",
            str(pki.files.cert),
        )
    assert live_ids(plain) == {"live-plain-http", "live-docs-exposed", "live-cors-foreign-origin"}
    assert live_ids(redirect) == {"live-no-https-redirect"}
    unreachable = live(workdir, "--url", f"https://localhost:{free_port()}", "--deploy")
    assert "live-unreachable" in live_ids(unreachable)


def test_tls_probes_find_old_protocols_and_weak_suites(
    pki: TestCA, hardened_instance: tuple[int, int]
) -> None:
    # The control accepts everything; the served instance (bastion serve --ssl-*) refuses it all.
    with permissive_server(pki, rsa_key=True) as control:
        found = list(tls_findings("localhost", control))
    assert {finding.id for finding in found} == {"live-tls-old-protocol", "live-tls-weak-cipher"}
    messages = " ".join(finding.message for finding in found)
    assert "TLSv1.1" in messages and "without forward secrecy" in messages
    assert list(tls_findings("localhost", hardened_instance[0])) == []
