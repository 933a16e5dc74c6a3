# SPDX-License-Identifier: Apache-2.0
"""Configuration mistakes are refused with the variable named, exit 2 and no traceback.

Every case runs the real command (`bastion check` and `bastion serve`) in a fresh directory.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import run_bastion
from tests.support.servers import free_port

pytestmark = pytest.mark.e2e

CASES = [
    ({"SESSION_SECRET": "short"}, "SESSION_SECRET is too short: at least 32 characters"),
    ({"CSRF_SECRET": "x" * 31}, "CSRF_SECRET is too short: at least 32 characters"),
    ({"REDIS_URL": "localhost:6379"}, "REDIS_URL is malformed"),
    ({"REDIS_URL": "redis://cache:port/0"}, "REDIS_URL is malformed"),
    ({"DATABASE_URL": "postgresql://u:secret-pw@db.example.org/app"}, "use postgresql+asyncpg://"),
    ({"DATABASE_URL": "sqlite:///./var/x.db"}, "use sqlite+aiosqlite://"),
    (
        {"DATABASE_URL": "mysql+aiomysql://u:secret-pw@db/app"},
        "DATABASE_URL scheme 'mysql+aiomysql' is not supported",
    ),
    ({"DATABASE_URL": "::not a url::"}, "DATABASE_URL is not a database URL"),
    ({"AUDIT_LOG_SINK": "db,kafka"}, "AUDIT_LOG_SINK: Value error, each sink is db, stdout"),
    ({"SENTRY_DSN": "ftp://key@sentry.example.org/1"}, "SENTRY_DSN is not a Sentry DSN"),
    ({"INJECTION_ACTION": "deny"}, "INJECTION_ACTION: Value error, must be one of log, flag, block"),
    ({"LICENSE_URL": "https://example.org/terms\r\nX-Evil: 1"}, "LICENSE_URL"),
    ({"LOGIN_MAX_FAILURES": "5"}, "LOGIN_MAX_FAILURES no longer exists: use LOGIN_DELAY_AFTER_FAILURES"),
]


@pytest.mark.parametrize(
    ("env", "named"), CASES, ids=[named.split()[0] + str(i) for i, (_, named) in enumerate(CASES)]
)
@pytest.mark.parametrize("command", [["check"], ["serve", "--port", "1"]])
def test_a_bad_setting_is_refused_by_name(
    workdir: Path, env: dict[str, str], named: str, command: list[str]
) -> None:
    result = run_bastion(*command, cwd=workdir, env=env)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert named in output, output
    assert "Traceback" not in output
    assert "secret-pw" not in output  # a URL's password is never printed


def test_an_unreachable_database_is_one_line_naming_its_host(workdir: Path) -> None:
    port = free_port()
    env = {"DATABASE_URL": f"postgresql+asyncpg://bastion:secret-pw@127.0.0.1:{port}/bastion"}
    for command in (["serve", "--port", str(free_port())], ["db", "upgrade"]):
        result = run_bastion(*command, cwd=workdir, env=env)
        output = result.stdout + result.stderr
        assert result.returncode == 2, output
        assert f"127.0.0.1:{port}" in output and "DATABASE_URL" in output, output
        assert "Traceback" not in output and "secret-pw" not in output


def test_warnings_name_an_unused_key_and_a_misspelled_variable(workdir: Path) -> None:
    result = run_bastion(
        "check", cwd=workdir, env={"OPENAI_API_KEY": "sk-unused-" + "a" * 20, "RATE_LIMIT_PER_MINUIT": "5"}
    )
    assert result.returncode == 0, result.stderr
    assert "OPENAI_API_KEY is set but LLM_PROVIDER=offline" in result.stdout
    assert (
        "RATE_LIMIT_PER_MINUIT is not a Bastion setting: did you mean RATE_LIMIT_PER_MINUTE?" in result.stdout
    )
