# SPDX-License-Identifier: Apache-2.0
"""GET /api/admin/alerts and acknowledge, fed by failed sign-ins through the real routes."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import SettingsFactory
from tests.integration.alerts_support import NO_LOGIN_THROTTLE
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
from tests.support.clock import FakeClock

LOGIN = "/api/auth/login"


async def fail_logins(http: httpx.AsyncClient, email: str, times: int, **headers: str) -> None:
    for _ in range(times):
        refused = await http.post(
            LOGIN, json={"email": email, "password": "Wrong-Password-1!"}, headers=headers
        )
        assert refused.status_code == 401, refused.text


async def listed(app: FastAPI, http: httpx.AsyncClient, token: str, query: str = "") -> dict[str, Any]:
    await app.state.anomaly.drain()
    response = await http.get(f"/api/admin/alerts{query}", headers=bearer(token))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_failed_logins_raise_an_alert_admins_list_page_and_acknowledge(
    make_settings: SettingsFactory, database_url: str
) -> None:
    settings = identity_settings(make_settings, DATABASE_URL=database_url, **NO_LOGIN_THROTTLE)
    async with identity_app(settings) as (app, http):
        app.state.anomaly.clock = FakeClock()  # no window may end mid-test
        _, admin = await make_admin(app, http, "admin@example.org")
        token = admin["access_token"]
        await user_session(http, "victim@example.org")
        await fail_logins(http, "nobody@example.org", 10)
        assert (await listed(app, http, token))["items"] == []  # ten: at the threshold
        await fail_logins(http, "victim@example.org", 1)  # the eleventh from this address
        [by_ip] = (await listed(app, http, token))["items"]
        assert (by_ip["kind"], by_ip["subject"], by_ip["count"], by_ip["status"]) == (
            "auth_failures_ip",
            "ip:127.0.0.1",
            11,
            "open",
        )
        assert "victim" not in str(by_ip)  # accounts by id, never by address
        await fail_logins(http, "victim@example.org", 10)  # eleven against this account
        items = (await listed(app, http, token))["items"]
        assert [item["kind"] for item in items] == [
            "auth_failures_account",
            "auth_failures_ip",
        ]  # newest first
        # Filters, and pages of one linked by the cursor.
        only = await listed(app, http, token, "?kind=auth_failures_account")
        assert [item["kind"] for item in only["items"]] == ["auth_failures_account"]
        first = await listed(app, http, token, "?limit=1")
        second = await listed(app, http, token, f"?limit=1&after={first['next']}")
        assert [first["items"][0]["id"], second["items"][0]["id"]] == [item["id"] for item in items]
        third = await listed(app, http, token, f"?limit=1&after={second['next']}")
        assert third == {"items": [], "next": None}
        # Acknowledge: idempotent, audited once.
        url = f"/api/admin/alerts/{by_ip['id']}/acknowledge"
        acknowledged = await http.post(url, headers=bearer(token))
        assert acknowledged.status_code == 200
        assert acknowledged.json()["status"] == "acknowledged" and acknowledged.json()["acknowledged_by"]
        again = await http.post(url, headers=bearer(token))
        assert again.status_code == 200 and again.json() == acknowledged.json()
        assert len(await audit_events(app, "alert_acknowledged")) == 1
        raised = await audit_events(app, "alert_raised")
        assert sorted(flag for r in raised for flag in r.anomaly_flags) == sorted(
            ["auth_failures_account", by_ip["kind"]]
        )
        assert {r.ip_address for r in raised if by_ip["kind"] in r.anomaly_flags} == {
            by_ip["subject"].removeprefix("ip:")
        }
        still_open = await listed(app, http, token, "?status=open")
        assert [item["kind"] for item in still_open["items"]] == ["auth_failures_account"]
        done = await listed(app, http, token, "?status=acknowledged")
        assert [item["id"] for item in done["items"]] == [by_ip["id"]]


async def test_only_admins_see_and_acknowledge_alerts(make_settings: SettingsFactory) -> None:
    async with identity_app(identity_settings(make_settings)) as (app, http):
        _, admin = await make_admin(app, http, "admin@example.org")
        _, user = await user_session(http, "user@example.org")
        alert_url = "/api/admin/alerts/" + "a" * 32 + "/acknowledge"
        for method, path in (("GET", "/api/admin/alerts"), ("POST", alert_url)):
            assert_error(await http.request(method, path), 401, "unauthorized")
            assert_error(
                await http.request(method, path, headers=bearer(user["access_token"])), 403, "forbidden"
            )
        assert_error(await http.post(alert_url, headers=bearer(admin["access_token"])), 404, "not_found")


@pytest.mark.parametrize(
    "query",
    ["?status=closed", "?kind=nothing", "?limit=0", "?limit=101", "?after=abc", "?after=1.xyz"],
)
async def test_bad_filters_are_a_422(make_settings: SettingsFactory, query: str) -> None:
    async with identity_app(identity_settings(make_settings)) as (app, http):
        _, admin = await make_admin(app, http, "admin@example.org")
        response = await http.get(f"/api/admin/alerts{query}", headers=bearer(admin["access_token"]))
        assert_error(response, 422, "validation_error")


async def test_an_admin_signing_in_from_a_new_network_raises_an_alert(make_settings: SettingsFactory) -> None:
    # The test client plays a trusted proxy, so X-Forwarded-For names each sign-in's network.
    settings = identity_settings(make_settings, TRUSTED_PROXIES="127.0.0.1")
    async with identity_app(settings) as (app, http):
        admin_id, admin = await make_admin(app, http, "admin@example.org")  # the first: remembered
        token = admin["access_token"]
        await user_session(http, "user@example.org")

        async def sign_in(email: str, ip: str) -> None:
            answer = await http.post(
                LOGIN, json={"email": email, "password": PASSWORD}, headers={"X-Forwarded-For": ip}
            )
            assert answer.status_code == 200

        await sign_in("admin@example.org", "127.0.0.9")  # the same /24 as the first
        await sign_in("user@example.org", "198.51.100.7")  # not an administrator
        assert (await listed(app, http, token))["items"] == []
        await sign_in("admin@example.org", "198.51.100.7")
        await sign_in("admin@example.org", "198.51.100.200")  # that network again: known now
        [alert] = (await listed(app, http, token))["items"]
        assert (alert["kind"], alert["severity"], alert["subject"]) == (
            "admin_new_network",
            "critical",
            f"user:{admin_id}",
        )
        assert alert["details"]["network"] == "198.51.100.0/24"
