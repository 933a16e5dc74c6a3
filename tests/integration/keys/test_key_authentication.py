# SPDX-License-Identifier: Apache-2.0
"""Presenting keys: one 401 for any bad key, a cache keyed on the whole key, REQUIRE_API_KEY, static keys."""

from __future__ import annotations

from typing import Any

import pytest

from bastion.auth.api_key_service import KeyRejected
from tests.conftest import SettingsFactory
from tests.integration.auth.helpers import (
    assert_error,
    audit_events,
    bearer,
    identity_app,
    identity_settings,
    make_admin,
    user_session,
)
from tests.integration.keys.helpers import DateClock, create_key, key_header, use_clock

STATIC_APP_KEY = "app-static-key-7f3a9c1e5b2d8f40"
STATIC_ML_KEY = "ml-static-key-0c9e8d7f6a5b4c3d"


def _bad_keys(real: str, key_id: str) -> list[tuple[str, dict[str, str]]]:
    secret = real.rsplit("_", 1)[1]
    wrong_secret = real[:-1] + ("A" if real[-1] != "A" else "B")
    return [
        ("empty", {"X-API-Key": ""}),
        ("too long", {"X-API-Key": real + "x" * 300}),
        ("wrong prefix", {"X-API-Key": "sk_" + real[4:]}),
        ("no prefix", {"X-API-Key": secret}),
        ("unknown id", {"X-API-Key": f"bst_{'0' * 16}_{secret}"}),
        ("wrong secret", {"X-API-Key": wrong_secret}),
        ("truncated", {"X-API-Key": real[:-1]}),
        ("prefix only", {"X-API-Key": real[:24]}),
        ("id only", {"X-API-Key": f"bst_{key_id}_"}),
        ("bearer wrong secret", bearer(wrong_secret)),
        ("two keys", {"X-API-Key": real, "Authorization": f"Bearer {real}"}),
    ]


async def test_every_bad_key_gets_the_same_401_and_is_audited_without_the_key(
    make_settings: SettingsFactory,
) -> None:
    # Automatic blocking of the address after repeated failures is tested on its own below.
    settings = identity_settings(make_settings, RATE_LIMIT_BLOCK_AUTH_FAILURES=0)
    async with identity_app(settings) as (app, http):
        _, tokens = await user_session(http, "owner@example.com")
        created = await create_key(http, tokens["access_token"])
        real = created["key"]
        bodies = set()
        for label, headers in _bad_keys(real, created["id"]):
            response = await http.get("/api/sessions", headers=headers)
            detail = assert_error(response, 401, "unauthorized")
            bodies.add((detail["error"], detail["message"], response.headers["www-authenticate"]))
            # A presented key is refused on public routes too: never silently ignored.
            assert (await http.get("/api/auth/me", headers=headers)).status_code == 401, label
        assert len(bodies) == 1
        # Non-ASCII bytes in the header (sent raw) are refused the same way, never a 500.
        raw = await http.get("/api/sessions", headers=[(b"X-API-Key", real[:-2].encode() + "é".encode())])
        assert_error(raw, 401, "unauthorized")
        latin = await http.get("/api/sessions", headers=[(b"X-API-Key", b"bst_\xff\xfe")])
        assert_error(latin, 401, "unauthorized")
        events = await audit_events(app, "auth_failure")
        assert len(events) >= 11
        reasons = {event.details["reason"] for event in events}
        assert {"malformed", "unknown", "wrong_secret"} <= reasons
        assert all(real not in str(event.details) and real[4:] not in str(event.details) for event in events)
        assert any(
            event.target_id == created["id"] for event in events if event.details["reason"] == "wrong_secret"
        )
        # The real key still works.
        assert (await http.get("/api/sessions", headers=key_header(real))).status_code == 200


async def test_the_cache_is_keyed_on_the_whole_key_never_a_prefix(make_settings: SettingsFactory) -> None:
    """Regression: a gateway cached verified keys under their first 20 characters, so any key
    sharing that prefix was let in once the real one had been used."""
    async with identity_app(identity_settings(make_settings, API_KEY_CACHE_SECONDS=3600)) as (app, http):
        _, tokens = await user_session(http, "owner@example.com")
        real = (await create_key(http, tokens["access_token"]))["key"]
        for _ in range(3):  # warm the cache
            assert (await http.get("/api/sessions", headers=key_header(real))).status_code == 200
        for keep in (20, 21, 32, 48, len(real) - 1):
            forged = real[:keep] + ("A" if real[keep] != "A" else "B") + real[keep + 1 :]
            assert len(forged) == len(real)
            assert_error(await http.get("/api/sessions", headers=key_header(forged)), 401)
            with pytest.raises(KeyRejected):
                await app.state.api_keys.authenticate(forged)
        assert len(app.state.api_keys._cache) == 1


async def test_failed_keys_count_toward_blocking_the_address(make_settings: SettingsFactory) -> None:
    settings = identity_settings(make_settings, RATE_LIMIT_BLOCK_AUTH_FAILURES=3)
    async with identity_app(settings, client=("198.51.100.7", 4000)) as (app, http):
        statuses = [
            (await http.get("/api/sessions", headers=key_header(f"bst_{'1' * 16}_{'x' * 43}"))).status_code
            for _ in range(4)
        ]
        assert statuses[:3] == [401, 401, 401]
        assert statuses[3] == 403
        blocked = await app.state.limiter.blocked("ip:198.51.100.7")
        assert blocked is not None and blocked.reason == "auth_failures"


async def test_require_api_key_guards_privileged_routes(make_settings: SettingsFactory) -> None:
    settings = identity_settings(make_settings, REQUIRE_API_KEY=True, API_KEYS=STATIC_APP_KEY)
    async with identity_app(settings) as (app, http):
        _, tokens = await user_session(http, "owner@example.com")
        token = bearer(tokens["access_token"])
        # A token alone is not enough on privileged routes...
        for method, path in (
            ("GET", "/api/sessions"),
            ("POST", "/api/sessions"),
            ("GET", "/api/admin/blocklist"),
        ):
            detail = assert_error(await http.request(method, path, headers=token, json={}), 401)
            assert detail["message"] == "An API key is required"
        # ...but fine elsewhere (key management, the account).
        assert (await http.get("/api/auth/me", headers=token)).status_code == 200
        assert (await http.get("/api/keys", headers=token)).status_code == 200
        assert (await http.get("/health")).status_code == 200
        # The application's key opens the gate; the token still says who the user is.
        both = {**token, "X-API-Key": STATIC_APP_KEY}
        created = await http.post("/api/sessions", json={}, headers=both)
        assert created.status_code == 201
        listed = (await http.get("/api/sessions", headers=token | {"X-API-Key": STATIC_APP_KEY})).json()[
            "items"
        ]
        assert [item["id"] for item in listed] == [created.json()["id"]]
        # A managed key alone also works (it is the caller).
        managed = await create_key(http, tokens["access_token"])
        assert (await http.get("/api/sessions", headers=key_header(managed["key"]))).status_code == 200
        # Admin routes: the admin's token plus any valid key.
        _, admin_tokens = await make_admin(app, http, "admin@example.com")
        admin = bearer(admin_tokens["access_token"])
        assert_error(await http.get("/api/admin/blocklist", headers=admin), 401)
        with_key = await http.get("/api/admin/blocklist", headers={**admin, "X-API-Key": STATIC_APP_KEY})
        assert with_key.status_code == 200
        # An invalid key next to a good token is still refused.
        assert_error(await http.get("/api/auth/me", headers={**token, "X-API-Key": "nope"}), 401)


async def test_without_require_api_key_keyless_requests_are_untouched(make_settings: SettingsFactory) -> None:
    async with identity_app(identity_settings(make_settings, REQUIRE_API_KEY=False)) as (_app, http):
        _, tokens = await user_session(http, "owner@example.com")
        assert (await http.get("/api/sessions", headers=bearer(tokens["access_token"]))).status_code == 200
        assert_error(await http.get("/api/sessions"), 401)
        # A presented invalid key is never ignored, even next to a valid token.
        both = {**bearer(tokens["access_token"]), "X-API-Key": "bst_bogus"}
        assert_error(await http.get("/api/sessions", headers=both), 401)


async def test_a_custom_key_header_is_honoured(make_settings: SettingsFactory) -> None:
    settings = identity_settings(make_settings, API_KEY_HEADER="X-Service-Key", API_KEYS=STATIC_APP_KEY)
    async with identity_app(settings) as (_app, http):
        assert (await http.get("/api/sessions", headers={"X-Service-Key": STATIC_APP_KEY})).status_code == 200
        # The default header name is then nothing special.
        assert_error(await http.get("/api/sessions", headers={"X-API-Key": STATIC_APP_KEY}), 401)


async def test_static_keys_have_documented_scopes_and_stable_ids(make_settings: SettingsFactory) -> None:
    settings = identity_settings(
        make_settings, API_KEYS=f" {STATIC_APP_KEY} , second-app-key-123456 ", ML_API_KEYS=STATIC_ML_KEY
    )
    async with identity_app(settings, client=("203.0.113.9", 5000)) as (app, http):
        app_key = key_header(STATIC_APP_KEY)
        created = await http.post("/api/sessions", json={}, headers=app_key)
        assert created.status_code == 201
        assert (await http.get(f"/api/sessions/{created.json()['id']}", headers=app_key)).status_code == 200
        # Another static key is another owner.
        other = key_header("second-app-key-123456")
        assert_error(await http.get(f"/api/sessions/{created.json()['id']}", headers=other), 404)
        # App keys cannot administer or manage keys.
        assert_error(await http.get("/api/admin/blocklist", headers=app_key), 403)
        assert_error(await http.get("/api/keys", headers=app_key), 403)
        # ML keys are services that name only completions: no chat sessions, no readiness probe
        # from afar (that takes a monitoring key or a service identity).
        ml = key_header(STATIC_ML_KEY)
        assert_error(await http.post("/api/sessions", json={}, headers=ml), 403)
        assert_error(await http.get("/health/ready", headers=ml), 403)
        assert_error(await http.get("/health/ready", headers=app_key), 403)
        # Stable, non-secret ids.
        first = await app.state.api_keys.authenticate(STATIC_APP_KEY)
        again = await app.state.api_keys.authenticate(STATIC_APP_KEY)
        assert first.api_key_id == again.api_key_id and first.api_key_id.startswith("static:")
        assert STATIC_APP_KEY not in first.api_key_id and len(first.api_key_id) == 19
        assert first.method.value == "static_key" and first.role.value == "user"
        ml_principal = await app.state.api_keys.authenticate(STATIC_ML_KEY)
        assert ml_principal.role.value == "service" and ml_principal.scopes == {"completions:use"}
        assert first.scopes == {"chat:use", "journal:use", "voice:use", "completions:use"}
        # Near misses of a static key are refused.
        for near in (STATIC_APP_KEY[:-1], STATIC_APP_KEY + "0", STATIC_APP_KEY.upper()):
            assert_error(await http.get("/api/sessions", headers=key_header(near)), 401)


@pytest.mark.parametrize("grace_days", [0])
async def test_without_a_grace_period_rotation_ends_the_old_secret_at_once(
    make_settings: SettingsFactory, grace_days: int
) -> None:
    settings = identity_settings(make_settings, API_KEY_ROTATION_GRACE_DAYS=grace_days)
    async with identity_app(settings) as (app, http):
        use_clock(app, DateClock())
        _, tokens = await user_session(http, "owner@example.com")
        created = await create_key(http, tokens["access_token"])
        assert (await http.get("/api/sessions", headers=key_header(created["key"]))).status_code == 200
        rotated: dict[str, Any] = (
            await http.post(f"/api/keys/{created['id']}/rotate", headers=bearer(tokens["access_token"]))
        ).json()
        assert rotated["previous_valid_until"] is None
        assert_error(await http.get("/api/sessions", headers=key_header(created["key"])), 401)
        assert (await http.get("/api/sessions", headers=key_header(rotated["key"]))).status_code == 200


async def test_the_openai_compatible_surface_takes_keys_with_the_completions_scope(
    make_settings: SettingsFactory,
) -> None:
    settings = identity_settings(make_settings, ML_API_KEYS=STATIC_ML_KEY, REQUIRE_API_KEY=True)
    body = {"model": "any", "messages": [{"role": "user", "content": "I feel sad."}]}
    async with identity_app(settings) as (_app, http):
        _, tokens = await user_session(http, "owner@example.com")
        # The ML key, as the official SDK sends it (bearer) and in the key header.
        for headers in (bearer(STATIC_ML_KEY), key_header(STATIC_ML_KEY)):
            response = await http.post("/v1/chat/completions", json=body, headers=headers)
            assert response.status_code == 200, response.text
        completions = await create_key(http, tokens["access_token"], scopes=["completions"])
        assert (
            await http.post("/v1/chat/completions", json=body, headers=bearer(completions["key"]))
        ).status_code == 200
        chat_only = await create_key(http, tokens["access_token"], scopes=["chat"])
        assert_error(
            await http.post("/v1/chat/completions", json=body, headers=bearer(chat_only["key"])), 403
        )
        # REQUIRE_API_KEY: a token alone does not reach /v1.
        assert_error(
            await http.post("/v1/chat/completions", json=body, headers=bearer(tokens["access_token"])), 401
        )


async def test_bearer_values_are_checked_against_static_keys_safely(make_settings: SettingsFactory) -> None:
    async with identity_app(identity_settings(make_settings, API_KEYS=STATIC_APP_KEY)) as (_app, http):
        assert (await http.get("/api/sessions", headers=bearer(STATIC_APP_KEY))).status_code == 200
        for value in (b"\xff\xfe\xfd", "é".encode() * 10, b"x" * 5000, b"eyJ.not.a.jwt"):
            response = await http.get("/api/sessions", headers=[(b"Authorization", b"Bearer " + value)])
            assert_error(response, 401)
