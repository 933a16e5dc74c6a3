# SPDX-License-Identifier: Apache-2.0
"""What pg_dump and pg_restore are given: libpq settings from DATABASE_URL, the password never in argv."""

from __future__ import annotations

from bastion.backup.postgres import libpq_environment


def test_the_url_becomes_libpq_settings() -> None:
    url = "postgresql+asyncpg://bastion:s3cr%40t@db.internal:6432/chat"  # pragma: allowlist secret
    database, env = libpq_environment(f"{url}?ssl=verify-full&sslrootcert=/etc/ca.pem")
    assert database == "chat"
    assert env["PGHOST"] == "db.internal" and env["PGPORT"] == "6432" and env["PGUSER"] == "bastion"
    assert env["PGPASSWORD"] == "s3cr@t"  # pragma: allowlist secret
    assert env["PGSSLMODE"] == "verify-full" and env["PGSSLROOTCERT"] == "/etc/ca.pem"


def test_asyncpg_ssl_flags_map_to_libpq_modes() -> None:
    assert libpq_environment("postgresql+asyncpg://u@h/d?ssl=true")[1]["PGSSLMODE"] == "require"
    assert libpq_environment("postgresql+asyncpg://u@h/d?sslmode=require")[1]["PGSSLMODE"] == "require"
    assert libpq_environment("postgresql+asyncpg://u@h/d?ssl=false")[1]["PGSSLMODE"] == "disable"
    _, plain = libpq_environment("postgresql+asyncpg://u@h/d")
    assert "PGSSLMODE" not in plain and "PGPASSWORD" not in plain
