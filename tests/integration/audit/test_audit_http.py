# SPDX-License-Identifier: Apache-2.0
"""The audit log through the service: what each action records (and never records), the admin
API, access records for every request, rate-limit violations, and `bastion audit` as a process."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from pathlib import Path

from sqlalchemy import select

from bastion.audit.models import AccessRecord, AuditRecord
from bastion.audit.sinks import document
from tests.conftest import SettingsFactory
from tests.integration.auth.helpers import (
    PASSWORD,
    assert_error,
    audit_events,
    bearer,
    identity_app,
    identity_settings,
    make_admin,
    user_session,
)
from tests.integration.auth.test_cli_and_maintenance import cli_env, run_cli


async def stored(app, model):  # type: ignore[no-untyped-def]
    async with app.state.sessionmaker() as session:
        return list((await session.scalars(select(model))).all())


async def test_actions_record_their_events_with_request_facts_and_no_secrets(
    make_settings: SettingsFactory,
) -> None:
    settings = identity_settings(make_settings)
    async with identity_app(settings, client=("203.0.113.9", 4000)) as (app, http):
        admin_id, admin_tokens = await make_admin(app, http, "root@example.com")
        user_id, tokens = await user_session(http, "ana@example.com")
        wrong = "Wrong-password-42!"
        refused = await http.post("/api/auth/login", json={"email": "ana@example.com", "password": wrong})
        assert_error(refused, 401)
        made = await http.post(
            "/api/keys",
            json={"name": "ana's laptop", "scopes": ["chat"]},
            headers=bearer(tokens["access_token"]),
        )
        assert made.status_code == 201, made.text
        key = made.json()
        bad_key = await http.get("/api/sessions", headers={"X-API-Key": key["key"][:-4] + "AAAA"})
        assert bad_key.status_code == 401
        bad_token = await http.get("/api/auth/me", headers=bearer(tokens["access_token"][:-6] + "AAAAAA"))
        assert bad_token.status_code == 401
        refreshed = await http.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert refreshed.status_code == 200
        read = await http.get(f"/api/admin/users/{user_id}", headers=bearer(admin_tokens["access_token"]))
        assert read.status_code == 200
        revoked = await http.delete(f"/api/keys/{key['id']}", headers=bearer(tokens["access_token"]))
        assert revoked.status_code in (200, 204), revoked.text
        out = await http.post("/api/auth/logout", headers=bearer(refreshed.json()["access_token"]))
        assert out.status_code == 204

        records = await audit_events(app)
        by_type = {}
        for record in records:
            by_type.setdefault(record.event_type, []).append(record)
        failures = by_type["auth_failure"]
        assert {r.details["method"] for r in failures} == {"password", "api_key", "token"}
        login_failure = next(r for r in failures if r.details["method"] == "password")
        assert login_failure.result == "failure" and login_failure.ip_address == "203.0.113.9"
        assert (login_failure.method, login_failure.route) == ("POST", "/api/auth/login")
        assert login_failure.status_code == 401
        assert next(r for r in failures if r.details["method"] == "api_key").status_code == 401
        assert login_failure.request_id and login_failure.latency_ms is not None
        assert by_type["auth_success"][-1].actor_id == user_id
        assert by_type["api_key_created"][0].target_id == key["id"]
        assert by_type["api_key_revoked"][0].target_id == key["id"]
        assert by_type["token_refreshed"][0].chain == "access"
        [admin_read] = by_type["admin_user_read"]
        assert (admin_read.actor_id, admin_read.target_id) == (admin_id, user_id)
        assert admin_read.route == "/api/admin/users/{user_id}"
        assert "logout" in by_type and "user_registered" in by_type
        # Never a body, password, token or key in any stored record.
        text = json.dumps([document(r) for r in records], default=str)
        for secret in (
            PASSWORD,
            wrong,
            key["key"],
            tokens["access_token"],
            tokens["refresh_token"],
            "ana@example.com",
        ):
            assert secret not in text


async def test_admins_query_the_log_by_type_actor_address_result_and_time(
    make_settings: SettingsFactory,
) -> None:
    settings = identity_settings(make_settings)
    async with identity_app(settings, client=("198.51.100.7", 4000)) as (app, http):
        _admin_id, admin_tokens = await make_admin(app, http, "root@example.com")
        admin = bearer(admin_tokens["access_token"])
        for _ in range(7):
            await http.post(
                "/api/auth/login", json={"email": "nobody@example.com", "password": "Not-it-at-all-1"}
            )
        page = await http.get(
            "/api/admin/audit", params={"event_type": "auth_failure", "limit": 3}, headers=admin
        )
        assert page.status_code == 200, page.text
        body = page.json()
        assert len(body["items"]) == 3 and body["next"]
        seen = [item["id"] for item in body["items"]]
        while body["next"]:
            body = (
                await http.get(
                    "/api/admin/audit",
                    params={"event_type": "auth_failure", "limit": 3, "after": body["next"]},
                    headers=admin,
                )
            ).json()
            seen += [item["id"] for item in body["items"]]
        assert len(seen) == len(set(seen)) == 7
        stamps = [
            item["timestamp"] for item in (await http.get("/api/admin/audit", headers=admin)).json()["items"]
        ]
        assert stamps == sorted(stamps, reverse=True)
        by_address = (
            await http.get("/api/admin/audit", params={"ip_address": "198.51.100.7"}, headers=admin)
        ).json()
        assert by_address["items"] and all(i["ip_address"] == "198.51.100.7" for i in by_address["items"])
        mapped = (
            await http.get("/api/admin/audit", params={"ip_address": "::ffff:198.51.100.7"}, headers=admin)
        ).json()
        # Each search is itself audited, from the admin's address: the first search is in the second.
        searches = [i for i in mapped["items"] if i["event_type"] == "audit_queried"]
        assert searches and searches[0]["details"]["by_ip"] is True
        assert [i["id"] for i in mapped["items"] if i["event_type"] != "audit_queried"] == [
            i["id"] for i in by_address["items"] if i["event_type"] != "audit_queried"
        ]
        failed = (await http.get("/api/admin/audit", params={"result": "failure"}, headers=admin)).json()[
            "items"
        ]
        assert {i["result"] for i in failed} == {"failure"}
        first = failed[-1]["timestamp"]
        later = (
            await http.get("/api/admin/audit", params={"since": first, "result": "failure"}, headers=admin)
        ).json()
        assert len(later["items"]) == len(failed)
        none = (
            await http.get("/api/admin/audit", params={"until": first, "result": "failure"}, headers=admin)
        ).json()
        assert none["items"] == []
        for bad in (
            {"ip_address": "not-an-ip"},
            {"result": "maybe"},
            {"since": "2026-01-01T00:00:00"},  # no zone
            {"after": "12.zz"},
            {"limit": 0},
            {"event_type": "DROP TABLE"},
        ):
            assert_error(await http.get("/api/admin/audit", params=bad, headers=admin), 422)
        _user_id, tokens = await user_session(http, "ana@example.com")
        assert_error(await http.get("/api/admin/audit", headers=bearer(tokens["access_token"])), 403)
        assert_error(await http.get("/api/admin/audit"), 401)


async def test_every_request_leaves_an_access_record(make_settings: SettingsFactory) -> None:
    settings = identity_settings(make_settings, ACCESS_LOG_FLUSH_SECONDS=0.05)
    async with identity_app(settings) as (app, http):
        user_id, tokens = await user_session(http, "ana@example.com")
        for _ in range(3):
            assert (await http.get("/api/auth/me", headers=bearer(tokens["access_token"]))).status_code == 200
        assert (await http.get("/health")).status_code == 200
        assert (await http.get("/no/such/place")).status_code == 404
        await app.state.access_log.flush()
        records = await stored(app, AccessRecord)
        mine = [r for r in records if r.route == "/api/auth/me"]
        assert len(mine) == 4 and {r.user_id for r in mine} == {user_id}  # user_session reads it once too
        assert all(
            r.status_code == 200 and r.method == "GET" and r.latency_ms >= 0 and r.request_id for r in mine
        )
        assert not [r for r in records if r.route == "/health"]
        assert [r.status_code for r in records if r.route == "unmatched"] == [404]  # never the raw path


async def test_rate_limit_violations_are_audited_once_per_window(make_settings: SettingsFactory) -> None:
    settings = identity_settings(make_settings, RATE_LIMIT_LOGIN="3/minute;burst=3")
    async with identity_app(settings, client=("192.0.2.55", 4000)) as (app, http):
        answers = [
            (
                await http.post("/api/auth/login", json={"email": "x@example.com", "password": "whatever-1"})
            ).status_code
            for _ in range(8)
        ]
        assert answers.count(429) >= 4
        [violation] = await audit_events(app, "rate_limit_exceeded")
        assert violation.result == "failure" and violation.ip_address == "192.0.2.55"
        assert violation.details["policy"] == "login" and violation.status_code == 429


async def test_the_audit_commands_verify_and_export(make_settings: SettingsFactory, tmp_path: Path) -> None:
    settings = identity_settings(make_settings)
    async with identity_app(settings) as (app, http):
        await user_session(http, "ana@example.com")
        await http.post(
            "/api/auth/login", json={"email": "ana@example.com", "password": "Wrong-password-42!"}
        )
        env = cli_env(settings)
        checked = await asyncio.to_thread(run_cli, env, "audit", "verify")
        assert checked.returncode == 0, checked.stderr
        assert "security chain intact" in checked.stdout and "access chain intact" in checked.stdout
        as_json = json.loads(
            (await asyncio.to_thread(run_cli, env, "audit", "verify", "--format", "json")).stdout
        )
        assert all(chain["intact"] for chain in as_json)

        lines = (await asyncio.to_thread(run_cli, env, "audit", "export")).stdout.splitlines()
        exported = [json.loads(line) for line in lines]
        assert [e["event_type"] for e in exported][:3] == ["user_registered", "auth_success", "auth_failure"]
        target = tmp_path / "audit.csv"
        saved = await asyncio.to_thread(
            run_cli,
            env,
            "audit",
            "export",
            "--format",
            "csv",
            "--since",
            exported[1]["timestamp"],
            "-o",
            str(target),
        )
        assert saved.returncode == 0, saved.stderr
        assert target.stat().st_mode & 0o777 == 0o600
        rows = list(csv.DictReader(io.StringIO(target.read_text())))
        assert rows[0]["event_type"] == "auth_success" and "hash" in rows[0]
        assert (
            await asyncio.to_thread(run_cli, env, "audit", "export", "--since", "yesterday")
        ).returncode == 2
        assert "audit_exported" in {r.event_type for r in await audit_events(app)}

        async with app.state.sessionmaker.begin() as session:
            victim = (
                await session.scalars(select(AuditRecord).where(AuditRecord.event_type == "auth_failure"))
            ).one()
            victim.details = {"reason": "nothing happened"}
        broken = await asyncio.to_thread(run_cli, env, "audit", "verify")
        assert broken.returncode == 1 and victim.id in broken.stdout and "edited" in broken.stdout
