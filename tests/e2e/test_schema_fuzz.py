# SPDX-License-Identifier: Apache-2.0
"""Property-based fuzzing of every documented operation against a real server (never a 5xx).

Schemathesis generates requests from Bastion's own OpenAPI document — valid, boundary and
malformed bodies, parameters and headers — and sends them as a signed-in user to a real
`bastion serve` process. Every answer must be below 500 and, for errors, carry the error shape.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import bastion_server, run_bastion

pytestmark = pytest.mark.e2e
PASSWORD = "Correct-Horse-9x!"
LIFTED = {
    "RATE_LIMIT_PER_MINUTE": "100000000",
    "RATE_LIMIT_REGISTER": "100000/minute",
    "RATE_LIMIT_LOGIN": "100000/minute",
    "RATE_LIMIT_REFRESH": "100000/minute",
    "RATE_LIMIT_PASSWORD_RESET": "100000/minute",
    "RATE_LIMIT_PASSWORD_CHANGE": "100000/minute",
    "RATE_LIMIT_SESSIONS_CREATE": "100000/hour",
    "RATE_LIMIT_MESSAGES": "100000/minute",
    "RATE_LIMIT_MESSAGES_PER_HOUR": "100000000",
    "RATE_LIMIT_BLOCK_VIOLATIONS": "0",
    "RATE_LIMIT_BLOCK_AUTH_FAILURES": "0",
    "LOGIN_DELAY_AFTER_FAILURES": "100",
    "MAX_SESSIONS_PER_API_KEY": "100000",
    "MAX_TOTAL_SESSIONS": "100000",
    "ARGON2_MEMORY_KIB": "256",
    "ARGON2_TIME_COST": "1",
}


def login(url: str, email: str) -> str:
    with httpx.Client(base_url=url, timeout=10) as http:
        response = http.post("/api/auth/login", json={"email": email, "password": PASSWORD})
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """A server with a user and an admin; yields its URL and a bearer token of each."""
    workdir: Path = tmp_path_factory.mktemp("fuzz")
    env = {**LIFTED, "ENVIRONMENT": "development"}
    with bastion_server(workdir, env) as (url, _log):
        created = run_bastion(
            "users",
            "create-admin",
            "--email",
            "fuzz-admin@example.com",
            cwd=workdir,
            env=env,
            stdin=f"{PASSWORD}\n{PASSWORD}\n",
        )
        assert created.returncode == 0, created.stderr
        with httpx.Client(base_url=url, timeout=10) as http:
            http.post("/api/auth/register", json={"email": "fuzz@example.com", "password": PASSWORD})
        yield url, {"user": login(url, "fuzz@example.com"), "admin": login(url, "fuzz-admin@example.com")}


@pytest.mark.parametrize("caller", ["user", "admin"])
def test_no_operation_answers_5xx(server: tuple[str, dict[str, str]], tmp_path: Path, caller: str) -> None:
    """Every operation, positive and negative cases, as a user and as an admin: never a 5xx."""
    url, tokens = server
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("schemathesis")),
            "run",
            f"{url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "15",
            "--seed",
            "20261122",
            "--generation-deterministic",
            "--phases",
            "examples,coverage,fuzzing",
            "--exclude-path-regex",
            r"^/api/auth/(logout|logout-all|password)$",
            "--request-timeout",
            "10",
            "--header",
            f"Authorization: Bearer {tokens[caller]}",
            "--report",
            "junit",
            "--report-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        env={**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_TELEMETRY": "false"},
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "generated" in output and ", 0 passed" not in output, output[-3000:]
