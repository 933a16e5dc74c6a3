# SPDX-License-Identifier: Apache-2.0
"""`bastion db rekey`: every sealed value moves to the newest key, resumably, readable throughout."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from bastion.crypto import material
from bastion.crypto.fields import FieldCipher
from bastion.crypto.keycheck import EncryptionKeyRefused, check_encryption_keys
from bastion.crypto.rekey import census, kids_in_use, rekey
from bastion.db.engine import create_engine, create_sessionmaker
from tests.conftest import SettingsFactory
from tests.integration.auth.helpers import bearer, identity_app, identity_settings, login, user_session
from tests.integration.auth.test_cli_and_maintenance import run_cli
from tests.integration.keys.helpers import create_key

ROOMY = {"RATE_LIMIT_JOURNAL_CREATE": "1000/minute", "RATE_LIMIT_JOURNAL_READ": "1000/minute"}


def named_key(kid: str) -> str:
    return f"{kid}:" + material.encryption_key().split(":", 1)[1]


async def seed(http: httpx.AsyncClient, people: int) -> list[dict[str, str]]:
    """Accounts with a journal entry, a titled chat session with a message, and a named key each."""
    made = []
    for n in range(people):
        email = f"person{n}@example.com"
        _, tokens = await user_session(http, email)
        auth = bearer(tokens["access_token"])
        entry = await http.post(
            "/api/journal", json={"title": f"t{n}", "content": f"entry {n}"}, headers=auth
        )
        assert entry.status_code == 201, entry.text
        session = (await http.post("/api/sessions", json={"title": f"s{n}"}, headers=auth)).json()
        sent = await http.post(
            f"/api/sessions/{session['id']}/messages", json={"content": f"m{n}"}, headers=auth
        )
        assert sent.status_code == 200, sent.text
        await create_key(http, tokens["access_token"], name=f"app {n}", scopes=["journal"])
        made.append({"email": email, "entry": entry.json()["id"], "session": session["id"]})
    return made


async def read_back(http: httpx.AsyncClient, made: list[dict[str, str]]) -> None:
    """Everything opens: sign-in by address (blind index), entries, titles, messages, key names."""
    for n, person in enumerate(made):
        tokens = await login(http, person["email"])
        auth = bearer(tokens["access_token"])
        me = await http.get("/api/auth/me", headers=auth)
        assert me.json()["email"] == person["email"]
        entry = await http.get(f"/api/journal/{person['entry']}", headers=auth)
        assert entry.json()["content"] == f"entry {n}", entry.text
        history = await http.get(f"/api/sessions/{person['session']}/messages", headers=auth)
        assert history.json()["items"][0]["content"] == f"m{n}"
        assert (await http.get(f"/api/sessions/{person['session']}", headers=auth)).json()["title"] == f"s{n}"
        assert [key["name"] for key in (await http.get("/api/keys", headers=auth)).json()["items"]] == [
            f"app {n}"
        ]


async def test_rekey_moves_everything_to_the_new_key_and_the_old_one_can_go(
    make_settings: SettingsFactory, database_url: str
) -> None:
    old, new = named_key("old"), named_key("new")

    def settings_with(keys: str) -> Any:
        return identity_settings(
            make_settings, DATABASE_URL=database_url, DATABASE_ENCRYPTION_KEY=keys, **ROOMY
        )

    async with identity_app(settings_with(old)) as (_app, http):
        made = await seed(http, 3)
    rotated = settings_with(f"{new},{old}")
    cipher = FieldCipher.for_settings(rotated)
    engine = create_engine(database_url)
    try:
        before = await census(engine)
        assert "old" in kids_in_use(before)
        async with identity_app(rotated) as (_app, http):
            await read_back(http, made)  # both keys listed: readable before the rekey
            # An interrupted run: the progress callback fails after the first batch.
            calls = 0

            def interrupt(_name: str, _done: int) -> None:
                nonlocal calls
                calls += 1
                if calls == 2:
                    raise KeyboardInterrupt

            sessionmaker = create_sessionmaker(engine)
            raw = material.parse_encryption_keys(f"{new},{old}")
            with pytest.raises(KeyboardInterrupt):
                await rekey(engine, sessionmaker, cipher, raw_keys=raw, batch_size=1, progress=interrupt)
            halfway = kids_in_use(await census(engine))
            assert {"old", "new"} <= halfway
            await read_back(http, made)  # readable in the middle of it
            reports = await rekey(engine, sessionmaker, cipher, raw_keys=raw, batch_size=2)
            assert all(not report.unreadable for report in reports.values())
            assert sum(report.resealed for report in reports.values()) > 0
            again = await rekey(engine, sessionmaker, cipher, raw_keys=raw)
            assert sum(report.resealed for report in again.values()) == 0  # idempotent
        after = await census(engine)
        assert kids_in_use(after) <= {"new"}
        assert all(label in ("v2.new", "index new", "new") for tally in after.values() for label in tally)
        # The old key id is no longer needed: the deployment starts and reads everything without it.
        only_new = settings_with(new)
        await check_encryption_keys(engine, FieldCipher.for_settings(only_new))
        async with identity_app(only_new) as (_app, http):
            await read_back(http, made)
    finally:
        await engine.dispose()


async def test_without_a_rekey_the_old_key_cannot_be_dropped(
    make_settings: SettingsFactory, tmp_path: Any
) -> None:
    old, new = named_key("old"), named_key("new")
    settings = identity_settings(make_settings, DATABASE_ENCRYPTION_KEY=old)
    async with identity_app(settings) as (_app, http):
        await seed(http, 1)
    engine = create_engine(settings.database_url.get_secret_value())
    try:
        with pytest.raises(EncryptionKeyRefused) as refused:
            await check_encryption_keys(engine, FieldCipher.from_setting(new, environment="test"))
        assert refused.value.missing == ["old"]
    finally:
        await engine.dispose()


async def test_a_value_that_fails_to_open_is_named_and_left_alone(make_settings: SettingsFactory) -> None:
    old, new = named_key("old"), named_key("new")
    settings = identity_settings(make_settings, DATABASE_ENCRYPTION_KEY=old, **ROOMY)
    async with identity_app(settings) as (_app, http):
        made = await seed(http, 2)
    url = settings.database_url.get_secret_value()
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            # A content sealed for another entry: it can never open here.
            await connection.execute(
                text(
                    "UPDATE journal_entries SET content_ciphertext = "
                    "(SELECT content_ciphertext FROM journal_entries WHERE id = :a) WHERE id = :b"
                ),
                {"a": made[0]["entry"], "b": made[1]["entry"]},
            )
        cipher = FieldCipher.from_setting(f"{new},{old}", environment="test")
        raw = material.parse_encryption_keys(f"{new},{old}")
        reports = await rekey(engine, create_sessionmaker(engine), cipher, raw_keys=raw)
        assert [r.split(" ")[0] for r in reports["journal_entries.content_ciphertext"].unreadable] == [
            made[1]["entry"]
        ]
        assert "old" in kids_in_use(await census(engine))  # the damaged value still names its key
    finally:
        await engine.dispose()
    # The command says so and exits 1; --check lists what each key id protects.
    env = {
        "ENVIRONMENT": "test",
        "DATABASE_URL": url,
        "VAR_DIR": str(settings.var_dir),
        "DATABASE_ENCRYPTION_KEY": f"{new},{old}",
    }
    run = await asyncio.to_thread(run_cli, env, "db", "rekey")
    assert run.returncode == 1, run.stderr
    assert "unreadable" in run.stdout and made[1]["entry"] in run.stdout
    assert "entry 1" not in run.stdout + run.stderr
    checked = await asyncio.to_thread(run_cli, env, "db", "rekey", "--check")
    assert checked.returncode == 0, checked.stderr
    assert "key id 'new': active" in checked.stdout
    assert "key id 'old': still protects stored values" in checked.stdout
    as_json = await asyncio.to_thread(run_cli, env, "db", "rekey", "--check", "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    counted = json.loads(as_json.stdout)
    assert counted["key_ids"] == {"new": "active", "old": "in_use"} and counted["legacy_values"] == 0
    assert all(isinstance(count, int) for tally in counted["columns"].values() for count in tally.values())
