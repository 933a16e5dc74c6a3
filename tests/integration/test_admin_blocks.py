# SPDX-License-Identifier: Apache-2.0
"""The admin blocks API: admins only, hostile input answered with a clear 4xx, never a 500."""

from __future__ import annotations

import pytest

from bastion.db import migrate
from tests.conftest import SettingsFactory
from tests.integration.ratelimit_serving import serve_limited
from tests.support.clock import FakeClock

ADMIN = {"X-Test-Principal": "admin"}


@pytest.fixture(autouse=True)
def audit_store(make_settings: SettingsFactory) -> None:
    """The database the audit records of admin actions (listing the blocks too) are written to."""
    migrate.upgrade(make_settings().database_url.get_secret_value())


async def test_anonymous_callers_get_401_and_users_403(make_settings: SettingsFactory) -> None:
    async with serve_limited(make_settings(), FakeClock()) as (_app, http):
        for method, path in (("GET", "/api/admin/blocks"), ("DELETE", "/api/admin/blocks/ip/192.0.2.1")):
            anonymous = await http.request(method, path)
            assert anonymous.status_code == 401
            assert anonymous.json()["detail"]["error"] == "unauthorized"
            user = await http.request(method, path, headers={"X-Test-Principal": "user:u1"})
            assert user.status_code == 403
            assert user.json()["detail"]["error"] == "forbidden"
        assert (
            await http.post("/api/admin/blocks", json={"kind": "ip", "value": "192.0.2.1"})
        ).status_code == 401


async def test_admins_place_list_and_lift_blocks(make_settings: SettingsFactory) -> None:
    clock = FakeClock()
    async with serve_limited(make_settings(), clock) as (_app, http):
        placed = await http.post(
            "/api/admin/blocks", headers=ADMIN, json={"kind": "key", "value": "k-123", "seconds": 120}
        )
        assert placed.status_code == 201
        assert placed.json()["kind"] == "key" and placed.json()["reason"] == "manual"
        # The blocked key is refused before any work, on any route.
        refused = await http.get("/test/ping", headers={"X-Test-Principal": "key:k-123"})
        assert refused.status_code == 403 and refused.json()["detail"]["error"] == "blocked"
        assert (await http.get("/test/ping", headers={"X-Test-Principal": "key:other"})).status_code == 200
        # IPv6 addresses are normalized, so any spelling lifts the same block.
        await http.post("/api/admin/blocks", headers=ADMIN, json={"kind": "ip", "value": "2001:db8:0:0::1"})
        items = (await http.get("/api/admin/blocks", headers=ADMIN)).json()["items"]
        assert sorted((i["kind"], i["value"]) for i in items) == [("ip", "2001:db8::1"), ("key", "k-123")]
        assert (await http.delete("/api/admin/blocks/ip/2001:db8::0:1", headers=ADMIN)).status_code == 204
        assert (await http.delete("/api/admin/blocks/key/k-123", headers=ADMIN)).status_code == 204
        missing = await http.delete("/api/admin/blocks/key/k-123", headers=ADMIN)
        assert missing.status_code == 404 and missing.json()["detail"]["error"] == "not_found"
        assert (await http.get("/test/ping", headers={"X-Test-Principal": "key:k-123"})).status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("DELETE", "/api/admin/blocks/host/192.0.2.1", None, 422),
        ("DELETE", "/api/admin/blocks/ip/not-an-address", None, 422),
        ("DELETE", "/api/admin/blocks/ip/999.1.1.1", None, 422),
        ("DELETE", "/api/admin/blocks/key/" + "k" * 500, None, 422),
        ("DELETE", "/api/admin/blocks/key/a%00b", None, 422),
        ("DELETE", "/api/admin/blocks/key/..%2F..%2Fetc", None, 404),  # no such route
        ("DELETE", "/api/admin/blocks/user/%7Bhash%7D", None, 422),
        ("POST", "/api/admin/blocks", {"kind": "ip", "value": "x"}, 422),
        ("POST", "/api/admin/blocks", {"kind": "ip", "value": "192.0.2.1", "seconds": 0}, 422),
        ("POST", "/api/admin/blocks", {"kind": "ip", "value": "192.0.2.1", "seconds": 10**12}, 422),
        ("POST", "/api/admin/blocks", {"kind": "ip", "value": "192.0.2.1", "reason": "<script>"}, 422),
        ("POST", "/api/admin/blocks", {"kind": "global", "value": "x"}, 422),
        ("POST", "/api/admin/blocks", ["not", "an", "object"], 422),
    ],
)
async def test_hostile_input_gets_a_clear_4xx(
    make_settings: SettingsFactory, method: str, path: str, body: object, status: int
) -> None:
    async with serve_limited(make_settings(), FakeClock()) as (_app, http):
        response = await http.request(method, path, headers=ADMIN, json=body)
    assert response.status_code == status, response.text
    assert response.json()["detail"]["error"] == {422: "validation_error", 404: "not_found"}[status]


async def test_malformed_json_is_a_400(make_settings: SettingsFactory) -> None:
    async with serve_limited(make_settings(), FakeClock()) as (_app, http):
        response = await http.post(
            "/api/admin/blocks", headers={**ADMIN, "Content-Type": "application/json"}, content=b"{nope"
        )
    assert response.status_code == 400
    assert response.json()["detail"]["error"] == "malformed_json"
