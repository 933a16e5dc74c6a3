# SPDX-License-Identifier: Apache-2.0
"""The app's behaviour every client sees: error shape, request ids, health, redacted logs."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import Request
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field

from bastion.api.deps import iter_route_contexts
from bastion.app import create_app
from bastion.db import migrate
from tests.conftest import SettingsFactory, serve_app
from tests.support.lifespan import lifespan_of
from tests.support.logs import access_lines, logged_lines


def assert_error_shape(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"detail"}
    detail = body["detail"]
    assert detail["error"] == code
    assert isinstance(detail["message"], str) and detail["message"]
    assert detail["request_id"] == response.headers["x-request-id"]
    return dict(detail)


async def test_health_is_tiny_and_public(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_ready_reports_database(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/ready")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "checks": {"database": "ok", "redis": "disabled"},
        "model": "offline",
    }


async def test_ready_refuses_remote_callers_even_with_forged_forwarding(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings()
    async with serve_app(settings, client=("203.0.113.9", 4000)) as (_app, http):
        for headers in ({}, {"X-Forwarded-For": "127.0.0.1"}):
            response = await http.get("/health/ready", headers=headers)
            assert_error_shape(response, 403, "forbidden")


async def test_ready_believes_forwarding_only_from_trusted_proxies(make_settings: SettingsFactory) -> None:
    settings = make_settings(TRUSTED_PROXIES="10.0.0.0/8")
    # Migrated first: the probe then runs on a database in WAL mode, as on a served instance, and
    # does not spend its time limit converting a fresh file.
    await asyncio.to_thread(migrate.upgrade, settings.database_url.get_secret_value())
    async with serve_app(settings, client=("10.1.2.3", 4000)) as (_app, http):
        forged = await http.get("/health/ready", headers={"X-Forwarded-For": "127.0.0.1, 198.51.100.7"})
        assert forged.status_code == 403  # the rightmost untrusted hop is the client
        local = await http.get("/health/ready", headers={"X-Forwarded-For": "127.0.0.1"})
        assert local.status_code == 200


async def test_ready_says_unavailable_when_the_database_is_gone(
    make_settings: SettingsFactory, tmp_path
) -> None:
    settings = make_settings(
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/missing-dir/../nowhere/x/db.sqlite"
    )
    async with serve_app(settings) as (app, http):
        await app.state.engine.dispose()
        app.state.engine = create_app_broken_engine()
        response = await http.get("/health/ready")
        assert response.status_code == 503
        assert response.json() == {
            "status": "unavailable",
            "checks": {"database": "unavailable", "redis": "disabled"},
            "model": "offline",
        }


def create_app_broken_engine():  # type: ignore[no-untyped-def]
    from bastion.db.engine import create_engine

    # A PostgreSQL URL on a port where nothing listens: connecting fails, as it does in an outage.
    return create_engine("postgresql+asyncpg://u:p@127.0.0.1:1/none")


async def test_not_found_and_method_not_allowed_use_the_error_shape(client: httpx.AsyncClient) -> None:
    assert_error_shape(await client.get("/no/such/route"), 404, "not_found")
    response = await client.post("/health")
    assert_error_shape(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "GET"


class Credentials(BaseModel):
    email: str = Field(max_length=50)
    password: str = Field(min_length=12, max_length=64)


@pytest.fixture
async def probe_client(make_settings: SettingsFactory):  # type: ignore[no-untyped-def]
    """An app with test routes: one validating a body, one that crashes."""
    settings = make_settings(LICENSE_URL="https://license.example/terms")
    app = create_app(settings)

    @app.post("/probe/login")
    async def login(body: Credentials) -> dict[str, str]:
        return {"email": body.email}

    @app.get("/probe/crash")
    async def crash() -> None:
        raise RuntimeError("database said: password=hunter2hunter2 at /srv/app/secret.py line 3")

    async with lifespan_of(app) as manager:
        transport = httpx.ASGITransport(app=manager.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
            yield http


async def test_validation_errors_name_field_and_rule_but_never_the_value(
    probe_client: httpx.AsyncClient,
) -> None:
    secret = "my-rejected-password-is-" + "x" * 80
    response = await probe_client.post("/probe/login", json={"email": "a@b.c", "password": secret})
    detail = assert_error_shape(response, 422, "validation_error")
    assert detail["fields"] == [
        {
            "field": "body.password",
            "rule": "string_too_long",
            "message": "String should have at most 64 characters",
        }
    ]
    assert detail["license"] == "https://license.example/terms"
    assert "rejected-password" not in response.text


async def test_wrong_types_and_missing_fields(probe_client: httpx.AsyncClient) -> None:
    response = await probe_client.post("/probe/login", json={"email": ["x"], "password": 12})
    detail = assert_error_shape(response, 422, "validation_error")
    fields = {f["field"] for f in detail["fields"]}  # type: ignore[union-attr]
    assert fields == {"body.email", "body.password"}
    response = await probe_client.post("/probe/login", json={})
    assert_error_shape(response, 422, "validation_error")


async def test_malformed_json_is_a_400(probe_client: httpx.AsyncClient) -> None:
    response = await probe_client.post(
        "/probe/login",
        content=b'{"email": "a@b.c", "password": "hunter2',
        headers={"content-type": "application/json"},
    )
    assert_error_shape(response, 400, "malformed_json")
    assert "hunter2" not in response.text


async def test_unhandled_exception_is_a_500_with_no_internals(probe_client: httpx.AsyncClient) -> None:
    response = await probe_client.get("/probe/crash")
    detail = assert_error_shape(response, 500, "internal_error")
    assert detail["message"] == "Internal server error"
    assert detail["license"] == "https://license.example/terms"
    for leak in ("RuntimeError", "Traceback", "hunter2", "secret.py", "database said"):
        assert leak not in response.text
    assert response.headers["cache-control"] == "no-store"


async def test_request_id_is_generated_or_kept_when_safe(client: httpx.AsyncClient) -> None:
    generated = (await client.get("/health")).headers["x-request-id"]
    assert len(generated) == 32
    kept = await client.get("/health", headers={"X-Request-ID": "trace-abc-123"})
    assert kept.headers["x-request-id"] == "trace-abc-123"
    hostile = await client.get("/health", headers={"X-Request-ID": 'x" injected=1'})
    assert hostile.headers["x-request-id"] != 'x" injected=1'
    assert len(hostile.headers["x-request-id"]) == 32


async def test_docs_are_off_in_production(make_settings: SettingsFactory) -> None:
    dev = create_app(make_settings())
    assert dev.openapi_url == "/openapi.json"


async def test_secrets_in_headers_query_and_exceptions_never_reach_the_log(
    make_settings: SettingsFactory,
) -> None:
    api_key = "bst_pub123_Zq8Xv7Wn6Ms5Lr4Kp3"
    bearer = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ1MSJ9.c2lnbmF0dXJl"
    query_secret = "q-secret-Hx81kd02"
    cookie = "cookie-secret-88ab"
    configured = "sk-live-configured-secret-0001"
    # A configured static key: a presented invalid key would be answered 401 before the route.
    settings = make_settings(LOG_LEVEL="DEBUG", OPENAI_API_KEY=configured, API_KEYS=api_key)
    await asyncio.to_thread(migrate.upgrade, settings.database_url.get_secret_value())
    app = create_app(settings)

    @app.get("/probe/echo-crash")
    async def echo_crash(token: str) -> None:
        raise ValueError(f"bad token {token} with key {api_key} and {configured}")

    answers: list[httpx.Response] = []

    async def calls(http: httpx.AsyncClient) -> None:
        headers = {
            "Authorization": f"Bearer {bearer}",
            "X-API-Key": api_key,
            "Cookie": f"session={cookie}",
        }
        await http.get(f"/health?token={query_secret}&page=1", headers=headers)
        answers.append(await http.get(f"/probe/echo-crash?token={query_secret}", headers=headers))

    output, lines = await logged_lines(app, settings, calls)
    [crashed] = answers
    assert crashed.status_code == 500
    access = access_lines(lines)
    assert len(access) == 2
    assert all(line["request_id"] for line in access)
    assert access[0]["query"] == "token=[REDACTED]&page=1"
    assert access[0]["headers"]["authorization"] == "[REDACTED]"
    errors = [line for line in lines if line.get("event") == "unhandled_exception"]
    assert len(errors) == 1 and "Traceback" in errors[0]["exception"]
    assert errors[0]["request_id"] == crashed.headers["x-request-id"]
    for secret in (api_key, "Zq8Xv7Wn6Ms5Lr4Kp3", bearer, query_secret, cookie, configured):
        assert secret not in output


async def test_request_state_is_not_shared_between_requests(make_settings: SettingsFactory) -> None:
    settings = make_settings()
    app = create_app(settings)
    seen: list[str | None] = []

    @app.get("/probe/state")
    async def state_probe(request: Request) -> dict[str, str]:
        seen.append(request.scope["state"].get("request_id"))
        await asyncio.sleep(0.01)
        return {"id": request.scope["state"]["request_id"]}

    async with lifespan_of(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
            responses = await asyncio.gather(*(http.get("/probe/state") for _ in range(10)))
        assert "request_id" not in manager._state  # the lifespan's own state is untouched
    ids = [r.json()["id"] for r in responses]
    assert ids == [r.headers["x-request-id"] for r in responses]
    assert len(set(ids)) == 10


def test_every_route_is_named_by_its_whole_path(make_settings: SettingsFactory) -> None:
    """Metrics, access lines and audit records name a request by its route's template
    (``scope["route"].path``): a router included with a prefix would name it without the prefix."""
    app = create_app(make_settings())
    contexts = [c for c in iter_route_contexts(app.routes) if isinstance(c.original_route, APIRoute)]
    assert len(contexts) > 50
    assert [c.path for c in contexts if c.path != c.original_route.path] == []
