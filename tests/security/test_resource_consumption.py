# SPDX-License-Identifier: Apache-2.0
"""Unrestricted resource consumption (OWASP API4) on every list and upload route.

A list route is any GET route of the route table whose answer has ``items``: records that grow
with use. Each must take a ``limit`` with an upper bound of at most MAX_PAGE, refuse anything
above it (or not a positive integer) with a 422, and never answer more items than asked. Routes
whose lists are fixed by configuration (``/v1/models``, the rate-limit policies of one identity,
the secrets status) are not pages. Every upload has a cap: JSON bodies MAX_JSON_BODY_BYTES, the
audio upload MAX_AUDIO_SIZE_MB, both refused with 413 before the body is read.
"""

from __future__ import annotations

import typing

from fastapi.routing import APIRoute

from tests.conftest import SettingsFactory
from tests.integration.test_route_matrix import concrete
from tests.security.helpers import api_routes, assert_error_shape, attacked_app

MAX_PAGE = 500


def is_list_route(route: APIRoute) -> bool:
    fields = getattr(route.response_model, "model_fields", {})
    return "items" in fields and typing.get_origin(fields["items"].annotation) is list


def upper_bound(route: APIRoute) -> int | None:
    for param in route.dependant.query_params:
        if param.name == "limit":
            for rule in param.field_info.metadata:
                if (bound := getattr(rule, "le", None)) is not None:
                    return int(bound)
    return None


async def test_every_list_route_has_a_bounded_page(make_settings: SettingsFactory) -> None:
    async with attacked_app(make_settings) as attack:
        lists = {key: route for key, route in api_routes(attack.app).items() if is_list_route(route)}
        assert len(lists) >= 9, sorted(lists)  # found in the route table, not listed by hand
        session = await attack.http.post("/api/sessions", json={}, headers=attack.admin)
        for (method, path), route in sorted(lists.items()):
            assert method == "GET", path
            bound = upper_bound(route)
            assert bound is not None and bound <= MAX_PAGE, (path, "no bounded limit")
            url = concrete(path.replace("{session_id}", session.json()["id"]))
            for limit in (bound + 1, 10**30, 0, -1, "1e3", "ten", ""):
                response = await attack.http.get(url, params={"limit": limit}, headers=attack.admin)
                assert_error_shape(response, (path, limit))
                assert response.status_code == 422, (path, limit, response.status_code)
                assert response.json()["detail"]["error"] == "validation_error"
            for limit in (1, bound):
                response = await attack.http.get(url, params={"limit": limit}, headers=attack.admin)
                assert response.status_code == 200, (path, limit, response.text[:300])
                assert len(response.json()["items"]) <= limit, path
            # Repeated parameters do not widen the page: the last one is judged like any other.
            doubled = await attack.http.get(f"{url}?limit=1&limit={bound + 1}", headers=attack.admin)
            assert doubled.status_code == 422, (path, doubled.status_code)


async def test_pages_never_answer_more_than_asked(make_settings: SettingsFactory) -> None:
    """With more records than the page: one user's keys, one administrator's blocks."""
    async with attacked_app(make_settings) as attack:
        for index in range(3):
            created = await attack.http.post(
                "/api/keys", json={"name": f"k{index}", "scopes": ["chat"]}, headers=attack.admin
            )
            assert created.status_code == 201, created.text
            blocked = await attack.http.post(
                "/api/admin/blocks",
                json={"kind": "ip", "value": f"192.0.2.{index + 1}", "reason": "test"},
                headers=attack.admin,
            )
            assert blocked.status_code in (200, 201), blocked.text
        for path in ("/api/keys", "/api/admin/keys", "/api/admin/blocks", "/api/admin/blocklist"):
            full = await attack.http.get(path, headers=attack.admin)
            page = await attack.http.get(path, params={"limit": 2}, headers=attack.admin)
            assert len(full.json()["items"]) >= 3, path
            assert len(page.json()["items"]) == 2, path


async def test_every_upload_has_a_size_cap(make_settings: SettingsFactory) -> None:
    async with attacked_app(make_settings, MAX_AUDIO_SIZE_MB=1) as attack:
        session = await attack.http.post("/api/sessions", json={}, headers=attack.admin)
        voice = f"/api/sessions/{session.json()['id']}/voice-chat"
        audio = b"\0" * (3 * 1024 * 1024)
        upload = await attack.http.post(
            voice, files={"audio": ("a.wav", audio, "audio/wav")}, headers=attack.admin
        )
        assert_error_shape(upload, "audio")
        assert upload.status_code == 413
        # A JSON body above MAX_JSON_BODY_BYTES on every JSON route, the audio route included.
        big = b'{"title": "' + b"x" * (1024 * 1024 + 1) + b'"}'
        for method, path in sorted(api_routes(attack.app)):
            if method in ("POST", "PUT", "PATCH"):
                response = await attack.http.request(
                    method,
                    concrete(path),
                    content=big,
                    headers={**attack.admin, "Content-Type": "application/json"},
                )
                assert_error_shape(response, (method, path))
                assert response.status_code == 413, (method, path, response.status_code)
