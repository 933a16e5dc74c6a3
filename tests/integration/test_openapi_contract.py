# SPDX-License-Identifier: Apache-2.0
"""The OpenAPI document is the contract: what it says an operation answers is what it answers.

Every operation documents the error statuses its route can produce, each in the one error shape
(FastAPI's own validation schema is gone); streamed answers are documented as event streams; a
405 names every method its path serves.
"""

from __future__ import annotations

from typing import Any

import pytest

from bastion.api.responses import UTF8JSONResponse
from tests.conftest import SettingsFactory
from tests.integration.auth.helpers import bearer, identity_app, identity_settings, user_session
from tests.integration.test_route_matrix import INVENTORY, PUBLIC

ERROR = {"$ref": "#/components/schemas/Error"}
JSON = UTF8JSONResponse.media_type


@pytest.fixture
async def document(make_settings: SettingsFactory) -> dict[str, Any]:
    async with identity_app(identity_settings(make_settings)) as (app, _http):
        return app.openapi()


def operation(document: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    found: dict[str, Any] = document["paths"][path][method.lower()]
    return found


async def test_every_operation_documents_its_errors_in_the_one_shape(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
    assert {"Error", "ErrorDetail", "FieldError"} <= schemas.keys()
    for (method, path), permission in INVENTORY.items():
        responses = operation(document, method, path)["responses"]
        expected = {"403", "429", "503"} | ({"401"} if permission != PUBLIC else set())
        if "{" in path:
            expected |= {"404", "422"}
        if method in ("POST", "PUT", "PATCH"):
            expected |= {"400", "413", "415", "422"}
        assert expected <= responses.keys(), (method, path, sorted(responses))
        for status, response in responses.items():
            if int(status) >= 400 and (path, status) != ("/health/ready", "503"):  # its own report
                assert response["content"][JSON]["schema"] == ERROR, (method, path, status)
        assert "Retry-After" in responses["429"]["headers"]
        assert path == "/health/ready" or "Retry-After" in responses["503"]["headers"]
    assert "409" in operation(document, "POST", "/api/keys")["responses"]
    assert "409" in operation(document, "POST", "/api/keys/{key_id}/rotate")["responses"]
    for path in ("/api/sessions/{session_id}/messages", "/v1/chat/completions"):
        responses = operation(document, "POST", path)["responses"]
        assert "text/event-stream" in responses["200"]["content"], path
        assert {"502", "504"} <= responses.keys()
    revoke = operation(document, "DELETE", "/api/keys/{key_id}")
    assert revoke["summary"] == "Revoke a key" and "revoked_at" in revoke["description"]


async def test_a_405_names_every_method_of_the_path(make_settings: SettingsFactory) -> None:
    async with identity_app(identity_settings(make_settings)) as (_app, http):
        _, tokens = await user_session(http, "allow@example.com")
        headers = bearer(tokens["access_token"])
        for path, allowed in (
            ("/api/keys", "GET, POST"),
            ("/api/sessions", "GET, POST"),
            ("/api/sessions/abc", "DELETE, GET"),
            ("/health", "GET"),
        ):
            response = await http.put(path, json={}, headers=headers)
            assert response.status_code == 405, (path, response.text)
            assert response.headers["allow"] == allowed, path
            assert response.json()["detail"]["error"] == "method_not_allowed"


GUARDED = (
    ("POST", "/api/sessions/{session_id}/messages"),
    ("POST", "/api/sessions/{session_id}/voice-chat"),
    ("POST", "/v1/chat/completions"),
)


async def test_the_content_guard_answers_are_documented_where_they_happen(document: dict[str, Any]) -> None:
    detail = document["components"]["schemas"]["ErrorDetail"]["properties"]
    assert detail["categories"]["type"] == "array" and detail["field"]["type"] == "string"
    for method, path in INVENTORY:
        responses = operation(document, method, path)["responses"]
        guarded = (method, path) in GUARDED
        assert ("guard_blocked" in responses.get("422", {}).get("description", "")) is guarded, path
        if "200" in responses:
            assert ("Content-Warning" in responses["200"].get("headers", {})) is guarded, path
            # Model replies, and only they, are signed.
            assert ("X-Content-Signature" in responses["200"].get("headers", {})) is guarded, path
    for method, path in GUARDED:
        refusal = operation(document, method, path)["responses"]["422"]
        assert refusal["content"][JSON]["schema"] == ERROR


async def test_the_license_header_is_documented_on_every_answer_when_set(
    make_settings: SettingsFactory,
) -> None:
    settings = identity_settings(
        make_settings, LICENSE_URL="https://example.org/terms", LICENSE_HEADER="X-Terms"
    )
    async with identity_app(settings) as (app, _http):
        licensed = app.openapi()
    for method, path in INVENTORY:
        for status, response in operation(licensed, method, path)["responses"].items():
            assert "X-Terms" in response.get("headers", {}), (method, path, status)


async def test_no_license_header_is_documented_when_unset(document: dict[str, Any]) -> None:
    for method, path in INVENTORY:
        for response in operation(document, method, path)["responses"].values():
            assert "X-License" not in response.get("headers", {}), (method, path)
