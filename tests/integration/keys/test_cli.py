# SPDX-License-Identifier: Apache-2.0
"""`bastion keys create|list|revoke|rotate` against the database a running app uses."""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess

from bastion.db import migrate
from tests.conftest import SettingsFactory
from tests.integration.auth.helpers import assert_error, identity_app, identity_settings, user_session
from tests.integration.auth.test_cli_and_maintenance import cli_env, run_cli
from tests.integration.keys.helpers import key_header


async def test_keys_commands(make_settings: SettingsFactory) -> None:
    salt = secrets.token_urlsafe(32)
    # No cache: without Redis a revocation made by another process is seen on the next lookup.
    settings = identity_settings(make_settings, API_KEY_SALT=salt, API_KEY_CACHE_SECONDS=0)
    await asyncio.to_thread(migrate.upgrade, settings.database_url.get_secret_value())
    env = cli_env(settings, API_KEY_SALT=salt)
    async with identity_app(settings, migrate_first=False) as (_app, http):
        user_id, _ = await user_session(http, "owner@example.com")
        created = await asyncio.to_thread(
            run_cli, env, "keys", "create", "--email", "owner@example.com", "--name", "ci", "--scope", "chat"
        )
        assert created.returncode == 0, created.stderr
        key = created.stdout.strip()
        key_id = key.split("_")[1]
        assert (await http.get("/api/sessions", headers=key_header(key))).status_code == 200

        listed = await asyncio.to_thread(run_cli, env, "keys", "list", "--email", "owner@example.com")
        assert listed.returncode == 0 and key_id in listed.stdout and user_id in listed.stdout
        assert key not in listed.stdout and key.split("_", 2)[2] not in listed.stdout  # the whole secret

        rotated = await asyncio.to_thread(run_cli, env, "keys", "rotate", key_id)
        assert rotated.returncode == 0, rotated.stderr
        new = rotated.stdout.strip()
        assert new != key and new.startswith(f"bst_{key_id}_")
        for presented in (key, new):  # the old one is in its grace period
            assert (await http.get("/api/sessions", headers=key_header(presented))).status_code == 200

        revoked = await asyncio.to_thread(run_cli, env, "keys", "revoke", key_id)
        assert revoked.returncode == 0 and key_id in revoked.stdout
        for presented in (key, new):
            assert_error(await http.get("/api/sessions", headers=key_header(presented)), 401)

        missing = await asyncio.to_thread(run_cli, env, "keys", "revoke", "0" * 16)
        assert missing.returncode == 1 and "No such API key" in missing.stderr
        nobody = await asyncio.to_thread(
            run_cli, env, "keys", "create", "--email", "nobody@example.com", "--name", "x", "--scope", "chat"
        )
        assert nobody.returncode == 1 and "no account" in nobody.stderr
        service = await asyncio.to_thread(
            run_cli,
            env,
            "keys",
            "create",
            "--email",
            "owner@example.com",
            "--name",
            "svc",
            "--scope",
            "monitoring",
            "--role",
            "service",
            "--expires-days",
            "30",
        )
        assert service.returncode == 0 and service.stdout.startswith("bst_")


async def test_refusals_name_the_scope_or_role_and_why_and_lists_have_headers(
    make_settings: SettingsFactory,
) -> None:
    settings = identity_settings(make_settings)
    await asyncio.to_thread(migrate.upgrade, settings.database_url.get_secret_value())
    env = cli_env(settings, API_KEY_SALT=secrets.token_urlsafe(32))
    async with identity_app(settings, migrate_first=False) as (_app, http):
        user_id, _ = await user_session(http, "owner@example.com")

    async def keys(*args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(run_cli, env, "keys", *args)

    base = ("create", "--email", "owner@example.com", "--name", "k")
    refusals = {
        (
            "--scope",
            "admin",
        ): "--scope admin is for administrators' keys, and owner@example.com has the role 'user'",
        ("--scope", "admin", "--role", "service"): "--scope admin is for user keys of administrators",
        ("--scope", "monitoring"): "--scope monitoring is for service keys: add --role service",
    }
    for extra, reason in refusals.items():
        refused = await keys(*base, *extra)
        assert refused.returncode == 1 and refused.stdout == ""
        assert refused.stderr.startswith(f"error: keys create refused: {reason}"), refused.stderr
    unknown = await keys("create", "--email", "nobody@example.com", "--name", "k", "--scope", "chat")
    assert "keys create refused: no account with the email nobody@example.com" in unknown.stderr

    assert (await keys("list")).stdout.strip() == "no API keys"
    created = await keys(*base, "--scope", "chat", "--scope", "journal")
    assert created.returncode == 0, created.stderr
    header, row = (await keys("list")).stdout.splitlines()
    assert header.split() == [
        "ID",
        "NAME",
        "OWNER",
        "ROLE",
        "SCOPES",
        "STATE",
        "CREATED",
        "LAST",
        "USED",
        "EXPIRES",
    ]
    assert row.split()[:6] == [created.stdout.split("_")[1], "k", user_id, "user", "chat,journal", "active"]
    (listed,) = json.loads((await keys("list", "--format", "json")).stdout)
    assert listed["scopes"] == "chat,journal" and listed["user_id"] == user_id and listed["expires_at"] == "-"
