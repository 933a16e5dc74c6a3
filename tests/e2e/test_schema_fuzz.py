# SPDX-License-Identifier: Apache-2.0
"""The OpenAPI document is the contract, checked by schemathesis against a real server.

Schemathesis generates requests from Bastion's own OpenAPI document (examples, boundary values,
random and deliberately invalid data, and stateful sequences that follow the links it infers) and
sends them to a real `bastion serve` process as a user, an administrator and an API key, with
every check it has: no 5xx, every status and header documented, answers matching their schemas,
invalid data refused, valid data accepted, unsupported methods 405 with Allow. The few answers
a schema cannot predict are named, with their reasons, in schemathesis.toml; nothing else is
excluded, and any finding fails the test.
"""

from __future__ import annotations

import json
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
CONFIG = Path(__file__).resolve().parents[2] / "schemathesis.toml"
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


@pytest.fixture
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str], Path]]:
    """A fresh server for each caller (one caller's fuzzing may revoke, disable or block what the
    next would use), with a user, an admin and a user's key; yields its URL, the credentials and
    the file collecting the server's output."""
    workdir: Path = tmp_path_factory.mktemp("fuzz")
    env = {**LIFTED, "ENVIRONMENT": "development"}
    with bastion_server(workdir, env) as (url, log):
        admin = run_bastion(
            "users",
            "create-admin",
            "--email",
            "fuzz-admin@example.com",
            cwd=workdir,
            env=env,
            stdin=f"{PASSWORD}\n{PASSWORD}\n",
        )
        assert admin.returncode == 0, admin.stderr
        with httpx.Client(base_url=url, timeout=10) as http:
            http.post("/api/auth/register", json={"email": "fuzz@example.com", "password": PASSWORD})
        user = login(url, "fuzz@example.com")
        with httpx.Client(base_url=url, timeout=10) as http:
            created = http.post(
                "/api/keys",
                json={"name": "fuzz", "scopes": ["chat", "voice", "completions", "profile"]},
                headers={"Authorization": f"Bearer {user}"},
            )
            assert created.status_code == 201, created.text
        yield (
            url,
            {
                "user": f"Authorization: Bearer {user}",
                "admin": f"Authorization: Bearer {login(url, 'fuzz-admin@example.com')}",
                "api key": f"X-API-Key: {created.json()['key']}",
            },
            log,
        )


def server_report(log: Path) -> str:
    """What the server said that explains a failed run: warnings, errors, the slowest requests."""
    events: list[dict[str, object]] = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            events.append({"event": line, "level": "raw"})
    notable = [e for e in events if e.get("level") not in ("info", "debug")]
    timed = [e for e in events if isinstance(e.get("duration_ms"), (int, float))]
    slowest = sorted(timed, key=lambda e: -float(e["duration_ms"]))[:10]  # type: ignore[arg-type]
    lines = [json.dumps(e)[:400] for e in (*notable[-30:], *slowest)]
    return "\n--- server: warnings, errors, slowest requests ---\n" + "\n".join(lines)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("caller", ["user", "admin", "api key"])
def test_every_operation_keeps_the_contract(
    server: tuple[str, dict[str, str], Path], tmp_path: Path, caller: str
) -> None:
    """Every operation, valid and invalid data, single requests and sequences: no finding at all."""
    url, credentials, log = server
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("schemathesis")),
            "--config-file",
            str(CONFIG),
            "run",
            f"{url}/openapi.json",
            "--checks",
            "all",
            "--max-examples",
            "15",
            "--generation-deterministic",
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--exclude-path-regex",
            r"^/api/auth/(logout|logout-all|password)$",
            # Longer than any wait of the server's own (SQLite's lock wait and the writer queue give
            # up after 10 s with a 503): a slow answer is then seen as the server gave it.
            "--request-timeout",
            "30",
            "--header",
            credentials[caller],
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
    assert result.returncode == 0, output[-6000:] + server_report(log)
    assert "generated" in output and ", 0 passed" not in output, output[-3000:]
