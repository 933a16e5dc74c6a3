# SPDX-License-Identifier: Apache-2.0
"""The access line: Bastion's own fields as they are, everything a client chose scrubbed."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from bastion.app import create_app
from bastion.db import migrate
from tests.conftest import SettingsFactory
from tests.support.logs import access_lines, logged_lines

JWT = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ1MSJ9.c2lnbmF0dXJl"  # pragma: allowlist secret
KEY = "bst_pub123_Zq8Xv7Wn6Ms5Lr4Kp3"  # pragma: allowlist secret
CONFIGURED = "sk-live-configured-secret-0002"  # pragma: allowlist secret


async def _logged(make_settings: SettingsFactory, level: str, calls: Any) -> tuple[str, list[dict[str, Any]]]:
    settings = make_settings(LOG_LEVEL=level, OPENAI_API_KEY=CONFIGURED)
    await asyncio.to_thread(migrate.upgrade, settings.database_url.get_secret_value())
    app = create_app(settings)

    @app.get("/probe/items/{item_id}")
    async def item(item_id: str) -> dict[str, str]:
        return {"id": item_id}

    @app.get("/probe/crash/{item_id}")
    async def crash(item_id: str) -> None:
        raise ValueError(f"lookup of {item_id} failed: password={CONFIGURED} {JWT}")

    return await logged_lines(app, settings, calls)


async def test_route_templates_are_logged_as_they_are_and_paths_and_queries_scrubbed(
    make_settings: SettingsFactory,
) -> None:
    async def calls(http: httpx.AsyncClient) -> None:
        assert (await http.get("/health")).status_code == 200
        assert (await http.get(f"/probe/items/{JWT}?token=q-secret-77&page=2")).status_code == 200
        assert (await http.get(f"/probe/items/{KEY}")).status_code == 200
        assert (await http.get(f"/no/such/{KEY}")).status_code == 404

    output, lines = await _logged(make_settings, "INFO", calls)
    health, jwt_path, key_path, unmatched = access_lines(lines)
    assert (health["route"], health["path"], health["method"], health["status"]) == (
        "/health",
        "/health",
        "GET",
        200,
    )
    assert health["client"] == "127.0.0.1" and isinstance(health["duration_ms"], float)
    assert jwt_path["route"] == key_path["route"] == "/probe/items/{item_id}"
    assert jwt_path["path"] == "/probe/items/[REDACTED]"
    assert jwt_path["query"] == "token=[REDACTED]&page=2"
    assert key_path["path"] == "/probe/items/bst_[REDACTED]"
    assert unmatched["route"] == "unmatched" and unmatched["path"] == "/no/such/bst_[REDACTED]"
    for secret in (JWT, "Zq8Xv7Wn6Ms5Lr4Kp3", "q-secret-77"):
        assert secret not in output


async def test_header_values_at_debug_and_exception_messages_are_scrubbed(
    make_settings: SettingsFactory,
) -> None:
    async def calls(http: httpx.AsyncClient) -> None:
        headers = {
            "Authorization": f"Bearer {JWT}",
            "X-Forwarded-Note": f"next=/x&api_key={KEY}",
            "X-Trace-Note": f"upstream {CONFIGURED} said no",
        }
        assert (await http.get("/health", headers=headers)).status_code == 200
        assert (await http.get(f"/probe/crash/{KEY}", headers=headers)).status_code == 500

    output, lines = await _logged(make_settings, "DEBUG", calls)
    health, crash = access_lines(lines)
    assert health["headers"]["authorization"] == "[REDACTED]"
    assert health["headers"]["x-forwarded-note"] == "next=/x&api_key=[REDACTED]"
    assert health["headers"]["x-trace-note"] == "upstream [REDACTED] said no"
    assert crash["status"] == 500 and crash["route"] == "/probe/crash/{item_id}"
    [error] = [line for line in lines if line.get("event") == "unhandled_exception"]
    assert "ValueError: lookup of bst_[REDACTED] failed: password=[REDACTED]" in error["exception"]
    for secret in (JWT, "Zq8Xv7Wn6Ms5Lr4Kp3", CONFIGURED):
        assert secret not in output


async def test_a_credential_sent_as_request_id_or_method_is_not_logged(
    make_settings: SettingsFactory,
) -> None:
    answers: list[httpx.Response] = []

    async def calls(http: httpx.AsyncClient) -> None:
        answers.append(await http.get("/health", headers={"X-Request-ID": KEY}))
        answers.append(await http.get("/health", headers={"X-Request-ID": "trace-0001-abc"}))
        answers.append(await http.request("SIG:METHODSECRET42", "/health"))

    output, lines = await _logged(make_settings, "INFO", calls)
    smuggled, kept, method = access_lines(lines)
    assert (
        answers[0].headers["x-request-id"] != KEY
        and smuggled["request_id"] == answers[0].headers["x-request-id"]
    )
    assert kept["request_id"] == "trace-0001-abc"
    assert method["method"] == "SIG:[REDACTED]" and method["status"] == 405
    assert "Zq8Xv7Wn6Ms5Lr4Kp3" not in output and "METHODSECRET42" not in output
