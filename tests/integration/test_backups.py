# SPDX-License-Identifier: Apache-2.0
"""`bastion db backup` / `bastion db restore` on SQLite and PostgreSQL, as real processes: a database
populated through the API survives backup, wipe and restore with its sealed values readable and its
audit chain intact; tampered archives and wrong keys are refused and change nothing."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path
from typing import Any

from sqlalchemy import make_url

from bastion.crypto import material
from bastion.settings import Settings
from tests.conftest import SettingsFactory, _admin_execute
from tests.integration.auth.helpers import bearer, identity_app, identity_settings, login, user_session
from tests.integration.auth.test_cli_and_maintenance import cli_env, run_cli
from tests.integration.keys.helpers import create_key, key_header

NOTE = "The knot in my chest loosened by the river."
MESSAGE = "I feel anxious about tomorrow."


async def populate(settings: Settings) -> dict[str, Any]:
    """Users, an API key, a journal entry and a chat exchange, all through the API."""
    async with identity_app(settings) as (_app, http):
        _, tokens = await user_session(http, "writer@example.com")
        await user_session(http, "reader@example.com")
        auth = bearer(tokens["access_token"])
        key = await create_key(http, tokens["access_token"], scopes=["chat"])
        entry = await http.post("/api/journal", json={"title": "Tuesday", "content": NOTE}, headers=auth)
        assert entry.status_code == 201, entry.text
        session = (await http.post("/api/sessions", json={}, headers=auth)).json()
        reply = await http.post(
            f"/api/sessions/{session['id']}/messages", json={"content": MESSAGE}, headers=auth
        )
        assert reply.status_code == 200, reply.text
        return {"key": key["key"], "entry": entry.json()["id"], "session": session["id"]}


async def read_back(settings: Settings, made: dict[str, Any]) -> None:
    """Everything ``populate`` wrote opens again: e-mail lookup, password, key, journal, chat."""
    async with identity_app(settings, migrate_first=False) as (_app, http):
        tokens = await login(http, "writer@example.com")  # found by the e-mail's blind index
        await login(http, "reader@example.com")
        auth = bearer(tokens["access_token"])
        me = (await http.get("/api/auth/me", headers=auth)).json()
        assert me["email"] == "writer@example.com"  # a sealed column, decrypted
        entry = (await http.get(f"/api/journal/{made['entry']}", headers=auth)).json()
        assert entry["content"] == NOTE and entry["title"] == "Tuesday"
        history = (await http.get(f"/api/sessions/{made['session']}/messages", headers=auth)).json()
        assert [m["role"] for m in history["items"]] == ["user", "assistant"]
        assert history["items"][0]["content"] == MESSAGE
        assert (await http.get("/api/sessions", headers=key_header(made["key"]))).status_code == 200


async def journal_titles(settings: Settings) -> list[str]:
    async with identity_app(settings, migrate_first=False) as (_app, http):
        tokens = await login(http, "writer@example.com")
        listed = (await http.get("/api/journal", headers=bearer(tokens["access_token"]))).json()
        return sorted(item["title"] for item in listed["items"])


async def wipe(url: str) -> None:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        for suffix in ("", "-wal", "-shm"):
            Path(f"{parsed.database}{suffix}").unlink(missing_ok=True)
    else:
        admin = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
        await _admin_execute(admin, "DROP SCHEMA public CASCADE; CREATE SCHEMA public")


async def cli(env: dict[str, str], *args: str) -> Any:
    return await asyncio.to_thread(run_cli, env, *args)


async def test_a_populated_database_round_trips(
    make_settings: SettingsFactory, database_url: str, tmp_path: Path
) -> None:
    settings = identity_settings(make_settings, DATABASE_URL=database_url)
    made = await populate(settings)
    env = cli_env(settings)
    archive = tmp_path / "bastion.bak"

    backed_up = await cli(env, "db", "backup", str(archive), "--format", "json")
    assert backed_up.returncode == 0, backed_up.stderr
    facts = json.loads(backed_up.stdout)
    assert facts["database"] == make_url(database_url).get_backend_name()
    assert facts["key_id"] == next(iter(material.parse_encryption_keys(env["DATABASE_ENCRYPTION_KEY"])))
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    assert NOTE.encode() not in archive.read_bytes() and b"writer@example.com" not in archive.read_bytes()
    again = await cli(env, "db", "backup", str(archive))
    assert again.returncode == 1 and "already exists" in again.stderr

    await wipe(database_url)
    restored = await cli(env, "db", "restore", str(archive))  # an empty target needs no --yes
    assert restored.returncode == 0, restored.stderr
    assert f"sha256 {facts['sha256']}" in restored.stdout
    await read_back(settings, made)

    verified = await cli(env, "audit", "verify", "--format", "json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    chains = {report["chain"]: report for report in json.loads(verified.stdout)}
    assert all(report["intact"] for report in chains.values())
    assert chains["security"]["records"] > 0
    exported = await cli(env, "audit", "export", "--output", str(tmp_path / "audit.jsonl"))
    assert exported.returncode == 0, exported.stderr
    events = [json.loads(line)["event_type"] for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert events.count("database_restored") == 1

    # Restoring over a database that holds tables needs --yes; with it, the archive replaces them.
    refused = await cli(env, "db", "restore", str(archive))
    assert refused.returncode == 1 and "not empty" in refused.stderr and "--yes" in refused.stderr
    replaced = await cli(env, "db", "restore", str(archive), "--yes")
    assert replaced.returncode == 0, replaced.stderr
    await read_back(settings, made)


async def test_tampered_archives_and_wrong_keys_change_nothing(
    make_settings: SettingsFactory, database_url: str, tmp_path: Path
) -> None:
    settings = identity_settings(make_settings, DATABASE_URL=database_url)
    await populate(settings)
    env = cli_env(settings)
    archive = tmp_path / "bastion.bak"
    assert (await cli(env, "db", "backup", str(archive))).returncode == 0
    # Written after the backup: a restore that went ahead would lose it.
    async with identity_app(settings, migrate_first=False) as (_app, http):
        tokens = await login(http, "writer@example.com")
        auth = bearer(tokens["access_token"])
        later = await http.post("/api/journal", json={"title": "Wednesday", "content": NOTE}, headers=auth)
        assert later.status_code == 201
    before = await journal_titles(settings)
    assert before == ["Tuesday", "Wednesday"]

    spoiled = bytearray(archive.read_bytes())
    spoiled[len(spoiled) // 2] ^= 0x01
    tampered = tmp_path / "tampered.bak"
    tampered.write_bytes(bytes(spoiled))
    truncated = tmp_path / "truncated.bak"
    truncated.write_bytes(archive.read_bytes()[:-100])
    kid = next(iter(material.parse_encryption_keys(env["DATABASE_ENCRYPTION_KEY"])))
    impostor = f"{kid}:{material.encryption_key().split(':', 1)[1]}"  # the same key id, other material

    attempts: list[tuple[dict[str, str], Path, str]] = [
        (env, tampered, "failed authentication: the archive was altered or damaged"),
        (env, truncated, "truncated"),
        (
            {**env, "DATABASE_ENCRYPTION_KEY": material.encryption_key()},
            archive,
            f"sealed under key id {kid!r}, which DATABASE_ENCRYPTION_KEY does not list",
        ),
        ({**env, "DATABASE_ENCRYPTION_KEY": impostor}, archive, "header failed authentication"),
    ]
    for attempt_env, path, reason in attempts:
        result = await cli(attempt_env, "db", "restore", str(path), "--yes")
        assert result.returncode == 1, result.stdout
        assert "archive refused, the database is unchanged" in result.stderr and reason in result.stderr
        assert "Traceback" not in result.stderr
    assert await journal_titles(settings) == before
    verified = await cli(env, "audit", "verify")
    assert verified.returncode == 0, verified.stdout
