# SPDX-License-Identifier: Apache-2.0
"""The `bastion` command as an operator runs it: real processes, real files, real server."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import yaml

from bastion import __version__
from bastion.crypto import material
from tests.e2e.conftest import bastion_server, get, run_bastion, run_factory

pytestmark = pytest.mark.e2e

WEAK_PRODUCTION = {
    "ENVIRONMENT": "production",
    "DEBUG": "true",
    "ALLOWED_ORIGINS": "*",
    "REQUIRE_API_KEY": "false",
    "SECRET_KEY": "changeme",
}


def test_version(workdir: Path) -> None:
    result = run_bastion("version", cwd=workdir)
    assert result.returncode == 0
    assert result.stdout.strip() == __version__


@pytest.mark.parametrize("fmt", ["env", "json", "yaml"])
def test_secrets_generate_every_secret(workdir: Path, fmt: str) -> None:
    result = run_bastion("secrets", "generate", "--format", fmt, cwd=workdir)
    assert result.returncode == 0, result.stderr
    if fmt == "json":
        values = json.loads(result.stdout)
    elif fmt == "yaml":
        values = yaml.safe_load(result.stdout)
    else:
        values = {}
        for line in result.stdout.splitlines():
            name, _, value = line.partition("=")
            values[name] = value.strip("'")
    assert set(values) == set(material.GENERATORS)
    for name in ("SECRET_KEY", "SESSION_SECRET", "CSRF_SECRET", "API_KEY_SALT"):
        assert material.weakness(values[name]) is None
    material.parse_signing_keyset(values["JWT_PRIVATE_KEYS"], "EdDSA")
    material.parse_encryption_keys(values["DATABASE_ENCRYPTION_KEY"])
    # Two runs never repeat a value.
    again = run_bastion("secrets", "generate", "--format", "json", cwd=workdir)
    assert not set(json.loads(again.stdout).values()) & set(values.values())


def test_generated_env_file_starts_production(workdir: Path) -> None:
    generated = run_bastion("secrets", "generate", cwd=workdir).stdout
    (workdir / ".env").write_text(
        generated + "\nENVIRONMENT=production\nALLOWED_ORIGINS=https://app.example.org\n"
        "ALLOWED_HOSTS=api.example.org\n"
    )
    result = run_bastion("check", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert "environment: production" in result.stdout
    assert "warning: DATABASE_URL is SQLite" in result.stdout


def test_secrets_generate_single_and_unknown(workdir: Path) -> None:
    single = run_bastion("secrets", "generate", "--single", "csrf_secret", "--format", "json", cwd=workdir)
    assert list(json.loads(single.stdout)) == ["CSRF_SECRET"]
    rsa = run_bastion(
        "secrets",
        "generate",
        "--single",
        "JWT_PRIVATE_KEYS",
        "--jwt-algorithm",
        "RS256",
        "--format",
        "json",
        cwd=workdir,
    )
    material.parse_signing_keyset(json.loads(rsa.stdout)["JWT_PRIVATE_KEYS"], "RS256")
    unknown = run_bastion("secrets", "generate", "--single", "NOPE", cwd=workdir)
    assert unknown.returncode == 2
    assert "Unknown secret" in unknown.stderr


@pytest.mark.parametrize("command", [["check"], ["serve"], ["db", "upgrade"]])
def test_production_refusal_lists_every_problem_without_traceback(workdir: Path, command: list[str]) -> None:
    result = run_bastion(*command, cwd=workdir, env=WEAK_PRODUCTION)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    assert "Bastion refuses to start in production: 9 configuration problem(s)" in result.stderr
    for expected in (
        "DEBUG must be false",
        "ALLOWED_ORIGINS",
        "REQUIRE_API_KEY must be true",
        "JWT_PRIVATE_KEYS is missing",
        "DATABASE_ENCRYPTION_KEY is missing",
        "SESSION_SECRET is missing",
        "CSRF_SECRET is missing",
        "API_KEY_SALT is missing",
        "SECRET_KEY is too weak",
    ):
        assert expected in result.stderr


def test_uvicorn_factory_refuses_the_same_way(workdir: Path) -> None:
    result = run_factory(workdir, WEAK_PRODUCTION, "--port", "1")
    assert result.returncode != 0
    assert "DEBUG must be false" in result.stderr
    assert "Traceback" not in result.stderr


def test_db_upgrade_on_sqlite_file(workdir: Path) -> None:
    env = {"DATABASE_URL": f"sqlite+aiosqlite:///{workdir}/data/app.db"}
    result = run_bastion("db", "upgrade", cwd=workdir, env=env)
    assert result.returncode == 0, result.stderr
    database = workdir / "data" / "app.db"
    assert stat.S_IMODE(database.stat().st_mode) == 0o600
    current = run_bastion("db", "current", cwd=workdir, env=env)
    assert "(head)" in current.stdout + current.stderr


@pytest.mark.postgres
def test_db_upgrade_on_postgres(workdir: Path, postgres_url: str) -> None:
    result = run_bastion("db", "upgrade", cwd=workdir, env={"DATABASE_URL": postgres_url})
    assert result.returncode == 0, result.stderr
    assert "(head)" in run_bastion("db", "current", cwd=workdir, env={"DATABASE_URL": postgres_url}).stdout


def test_serve_on_embedded_defaults(workdir: Path) -> None:
    """What `make serve` does on a fresh machine: migrate, generate dev secrets, answer /health."""
    with bastion_server(workdir) as (url, log_path):
        response = get(f"{url}/health?access_token=leaky-token-value-1")
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}
        assert "server" not in response.headers
        ready = get(f"{url}/health/ready")
        assert ready.json() == {
            "status": "ready",
            "checks": {"database": "ok", "redis": "disabled"},
            "model": "offline",
        }
    secrets_file = workdir / "var" / "secrets.json"
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((workdir / "var" / "bastion.db").stat().st_mode) == 0o600
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    access = [line for line in lines if line.get("event") == "request"]
    assert access and all(line.get("request_id") for line in access)
    assert access[0]["query"] == "access_token=[REDACTED]"
    assert "leaky-token-value-1" not in log_path.read_text()
    assert any(line.get("event") == "in_process_state" for line in lines)
    # Secrets are reused on restart, not regenerated.
    before = secrets_file.read_text()
    with bastion_server(workdir) as (url, _log):
        assert get(f"{url}/health").status_code == 200
    assert secrets_file.read_text() == before


@pytest.mark.postgres
@pytest.mark.redis
def test_serve_on_postgres_and_redis(workdir: Path, postgres_url: str, redis_url: str) -> None:
    env = {"DATABASE_URL": postgres_url, "REDIS_URL": redis_url, "ENVIRONMENT": "development"}
    with bastion_server(workdir, env) as (url, log_path):
        ready = get(f"{url}/health/ready")
        assert ready.json() == {
            "status": "ready",
            "checks": {"database": "ok", "redis": "ok"},
            "model": "offline",
        }
    output = log_path.read_text()
    assert postgres_url.split("@")[0].split(":")[-1] not in output  # the database password
    assert '"database": "postgresql"' in output


def test_python_dash_m(workdir: Path) -> None:
    assert run_bastion("--help", cwd=workdir).returncode == 0


def test_secrets_written_as_private_files_for_name_file(workdir: Path) -> None:
    target = workdir / "secrets"
    result = run_bastion("secrets", "generate", "--output-dir", str(target), cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in target.iterdir()) == sorted(material.GENERATORS)
    for path in target.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    env = {f"{name}_FILE": str(target / name) for name in material.GENERATORS}
    env.update(
        ENVIRONMENT="production", ALLOWED_ORIGINS="https://app.example.org", ALLOWED_HOSTS="api.example.org"
    )
    assert run_bastion("check", cwd=workdir, env=env).returncode == 0
    again = run_bastion("secrets", "generate", "--output-dir", str(target), cwd=workdir)
    assert again.returncode == 2
    assert "Refusing to overwrite" in again.stderr


def test_container_files_keep_state_private() -> None:
    root = Path(__file__).resolve().parents[2]
    compose = yaml.safe_load((root / "docker-compose.yml").read_text())
    services = compose["services"]
    for internal in ("db", "redis"):
        assert "ports" not in services[internal]  # reachable from the internal network only
        assert services[internal]["networks"] == ["internal"]
    assert compose["networks"]["internal"]["internal"] is True
    assert all(port.startswith("127.0.0.1:") for port in services["api"]["ports"])
    assert not any("PASSWORD=" in str(v) for v in services["api"]["environment"].values())
    dockerfile = (root / "Dockerfile").read_text()
    assert dockerfile.count("FROM ") == 2
    assert "USER 1000:1000" in dockerfile
    ignored = (root / ".dockerignore").read_text().split()
    for entry in (".env", ".git", "var/"):
        assert entry in ignored
    example = (root / ".env.example").read_text()
    for line in example.splitlines():
        name, sep, value = line.lstrip("# ").partition("=")
        if sep and (name in material.GENERATORS or name == "OPENAI_API_KEY"):
            assert value == "change-me", line
