# SPDX-License-Identifier: Apache-2.0
"""A DATABASE_ENCRYPTION_KEY that cannot open the stored data is refused by key id, as the operator
sees it: `bastion db upgrade`, `bastion check`, `bastion serve` and the uvicorn factory, on SQLite
and PostgreSQL, exit with one line naming the key id and never the key material."""

from __future__ import annotations

import base64
import secrets
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import run_bastion, run_factory
from tests.support.servers import free_port

pytestmark = pytest.mark.e2e


def key(kid: str) -> str:
    return f"{kid}:{base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()}"


def assert_refused(result: subprocess.CompletedProcess[str], kid: str, setting: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert f"'{kid}'" in output and "DATABASE_ENCRYPTION_KEY" in output, output
    assert "Traceback" not in output
    assert setting.split(":", 1)[1] not in output  # the key material is never printed


def test_a_different_key_under_a_recorded_kid_is_refused(workdir: Path, database_url: str) -> None:
    first = {"DATABASE_URL": database_url, "DATABASE_ENCRYPTION_KEY": key("k1")}
    assert run_bastion("db", "upgrade", cwd=workdir, env=first).returncode == 0
    assert run_bastion("check", cwd=workdir, env=first).returncode == 0
    wrong = key("k1")
    env = {"DATABASE_URL": database_url, "DATABASE_ENCRYPTION_KEY": wrong}
    for command in (["db", "upgrade"], ["check"], ["serve", "--port", str(free_port())]):
        assert_refused(run_bastion(*command, cwd=workdir, env=env), "k1", wrong)
    factory = run_factory(workdir, env, "--port", str(free_port()))
    output = factory.stdout + factory.stderr
    assert factory.returncode != 0, output
    assert "'k1'" in output and "Traceback" not in output, output
    assert wrong.split(":", 1)[1] not in output


def test_a_missing_kid_that_data_still_uses_is_refused_and_rotation_starts(workdir: Path) -> None:
    database_url = f"sqlite+aiosqlite:///{workdir}/app.db"
    old = key("old")
    env = {"DATABASE_URL": database_url, "DATABASE_ENCRYPTION_KEY": old}
    assert run_bastion("db", "upgrade", cwd=workdir, env=env).returncode == 0
    # A rotated JWT signing key is stored sealed under the encryption key 'old'.
    rotated = run_bastion("keys", "rotate-signing", cwd=workdir, env=env)
    assert rotated.returncode == 0, rotated.stderr
    new = key("new")
    dropped = {"DATABASE_URL": database_url, "DATABASE_ENCRYPTION_KEY": new}
    for command in (["check"], ["db", "upgrade"]):
        assert_refused(run_bastion(*command, cwd=workdir, env=dropped), "old", old)
    both = {"DATABASE_URL": database_url, "DATABASE_ENCRYPTION_KEY": f"{new},{old}"}
    result = run_bastion("db", "upgrade", cwd=workdir, env=both)
    assert result.returncode == 0, result.stderr
    assert run_bastion("check", cwd=workdir, env=both).returncode == 0
