# SPDX-License-Identifier: Apache-2.0
"""`bastion users export|erase` and `bastion purge` as real processes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from sqlalchemy import select

from bastion.auth.models import User
from tests.conftest import SettingsFactory
from tests.integration.auth.helpers import audit_events, bearer, identity_app, identity_settings, user_session
from tests.integration.auth.test_cli_and_maintenance import cli_env, run_cli


async def test_operators_export_erase_and_purge(make_settings: SettingsFactory, tmp_path: Path) -> None:
    settings = identity_settings(make_settings)
    async with identity_app(settings) as (app, http):
        user_id, tokens = await user_session(http, "iris@example.com")
        wrote = await http.post(
            "/api/journal", json={"content": "iris kept this"}, headers=bearer(tokens["access_token"])
        )
        assert wrote.status_code == 201, wrote.text
        env = cli_env(settings)

        printed = await asyncio.to_thread(run_cli, env, "users", "export", "--email", "iris@example.com")
        assert printed.returncode == 0, printed.stderr
        document = json.loads(printed.stdout)
        assert document["account"]["id"] == user_id
        assert [e["content"] for e in document["journal_entries"]] == ["iris kept this"]
        target = tmp_path / "iris.json"
        saved = await asyncio.to_thread(
            run_cli, env, "users", "export", "--email", "iris@example.com", "--output", str(target)
        )
        assert saved.returncode == 0, saved.stderr
        assert json.loads(target.read_text())["account"]["email"] == "iris@example.com"
        assert target.stat().st_mode & 0o777 == 0o600
        unknown = await asyncio.to_thread(run_cli, env, "users", "export", "--email", "nobody@example.com")
        assert unknown.returncode == 1 and "no account" in unknown.stderr

        erase = ("users", "erase", "--email", "iris@example.com")
        unconfirmed = await asyncio.to_thread(run_cli, env, *erase)
        assert unconfirmed.returncode == 2 and "--yes" in unconfirmed.stderr
        erased = await asyncio.to_thread(run_cli, env, *erase, "--yes")
        assert erased.returncode == 0, erased.stderr
        assert f"erased {user_id}" in erased.stdout and "1 journal entries" in erased.stdout
        async with app.state.sessionmaker() as db:
            assert (await db.scalars(select(User).where(User.id == user_id))).all() == []
        [done] = [r for r in await audit_events(app, "account_erased") if r.result == "success"]
        assert done.actor_type == "operator" and done.target_id == user_id and done.request_id == "cli"

        purged = await asyncio.to_thread(run_cli, env, "purge", "--format", "json")
        assert purged.returncode == 0, purged.stderr
        assert json.loads(purged.stdout) == {
            "access_records": 0,
            "chat_messages": 0,
            "chat_sessions": 0,
            "request_records": 0,
            "security_records": 0,
        }
        text = await asyncio.to_thread(run_cli, env, "purge")
        assert text.returncode == 0 and "security_records: 0" in text.stdout
