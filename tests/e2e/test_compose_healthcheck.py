# SPDX-License-Identifier: Apache-2.0
"""The compose file's healthcheck passes against a production server started as the container starts it.

No Docker daemon is needed: the test reads docker-compose.yml and the Dockerfile, and runs what they
would run with the environment they would give it: the Dockerfile's ENV, the api service's
environment with compose's ``${VAR:-default}`` defaults, the secrets as files (named by the
``*_FILE`` variables, written by `bastion secrets generate` as the guide says), the migrate
service's command, the image's CMD, then the healthcheck's command. Only PORT is changed (a free
port), and the database and Redis are the run's real servers instead of the compose services.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.e2e.conftest import clean_env
from tests.support.bastion_server import bastion_command
from tests.support.servers import free_port, wait_for_port

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis]
ROOT = Path(__file__).resolve().parents[2]
SECRETS_DIR = "/run/secrets/"
_DEFAULTED = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def interpolate(value: str) -> str:
    """Compose's ``${VAR:-default}`` with nothing set in the operator's shell: the defaults."""
    return _DEFAULTED.sub(lambda match: match.group(2) or "", value)


def dockerfile_runtime() -> tuple[dict[str, str], list[str]]:
    """The runtime stage's ENV and CMD."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    runtime = text.split("AS runtime", 1)[1]
    env: dict[str, str] = {}
    for line in runtime.splitlines():
        if line.startswith("ENV "):
            for pair in shlex.split(line[4:]):
                name, _, value = pair.partition("=")
                env[name] = value
    command = [line for line in runtime.splitlines() if line.startswith("CMD ")][-1]
    return env, json.loads(command[4:])


def as_local(command: list[str]) -> list[str]:
    """A container command (``bastion ...``) run by this checkout's interpreter."""
    assert command[0] == "bastion", command
    return [*bastion_command(), *command[1:]]


def container_env(
    service: Mapping[str, Any], secrets_dir: Path, image_env: Mapping[str, str]
) -> dict[str, str]:
    env = dict(image_env)
    for name, raw in service["environment"].items():
        value = interpolate(str(raw))
        env[name] = str(secrets_dir / value[len(SECRETS_DIR) :]) if value.startswith(SECRETS_DIR) else value
    return env


def test_compose_healthcheck_passes_against_a_production_server(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    api, migrate = compose["services"]["api"], compose["services"]["migrate"]
    image_env, cmd = dockerfile_runtime()
    assert image_env["ENVIRONMENT"] == "production"

    # Secrets as the guide writes them; every *_FILE the service names is one of its secrets.
    secrets_dir = tmp_path / "secrets"
    generated = subprocess.run(
        [*bastion_command(), "secrets", "generate", "--output-dir", str(secrets_dir)],
        env=clean_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert generated.returncode == 0, generated.stderr
    (secrets_dir / "DATABASE_URL").write_text(postgres_url + "\n")
    (secrets_dir / "REDIS_URL").write_text(redis_url + "\n")
    (secrets_dir / "OPENAI_API_KEY").write_text("")  # read by the app only when a model is called
    for name, value in api["environment"].items():
        if name.endswith("_FILE"):
            assert value.removeprefix(SECRETS_DIR) in api["secrets"], name

    port = free_port()
    env = clean_env({**container_env(api, secrets_dir, image_env), "PORT": str(port)})
    assert env["FORCE_HTTPS"] == "true" and env["HOST"] == "0.0.0.0"  # noqa: S104 - as in the container

    migrated = subprocess.run(
        as_local(migrate["command"]),
        env=clean_env({**container_env(migrate, secrets_dir, image_env)}),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert migrated.returncode == 0, migrated.stderr
    # The guide's deploy check passes on the compose defaults (the two TLS checks accepted on one
    # node, as docs/deploy.md explains; they do not fire here anyway, the servers are on loopback).
    checked = subprocess.run(
        [*bastion_command(), "check", "--deploy", "--ignore", "database-no-tls", "--ignore", "redis-no-tls"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr

    healthcheck = api["healthcheck"]["test"]
    assert healthcheck[0] == "CMD"
    log = (tmp_path / "api.log").open("wb")
    server = subprocess.Popen(as_local(cmd), env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, timeout=60, process=server)
        probe = subprocess.run(
            as_local(healthcheck[1:]), env=env, cwd=tmp_path, capture_output=True, text=True, check=False
        )
        assert probe.returncode == 0, probe.stdout + probe.stderr + (tmp_path / "api.log").read_text()
        assert probe.stdout.strip() == "healthy"
        # What the old probe met: a Host outside ALLOWED_HOSTS is refused, and FORCE_HTTPS
        # still redirects everything but a loopback /health.
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            assert client.get("/health").status_code == 400
            assert client.get("/health", headers={"Host": "localhost"}).status_code == 200
            redirected = client.get("/api/auth/me", headers={"Host": "localhost"})
            assert redirected.status_code == 308
            assert redirected.headers["location"] == "https://localhost/api/auth/me"
    finally:
        server.terminate()
        server.wait(timeout=15)
        log.close()
    # With the server gone, the probe says so (exit 1), as the container runtime needs.
    down = subprocess.run(as_local(healthcheck[1:]), env=env, capture_output=True, text=True, check=False)
    assert down.returncode == 1
    assert "unhealthy" in down.stderr
