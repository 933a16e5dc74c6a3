# SPDX-License-Identifier: Apache-2.0
"""BodyLimit and HeaderLimits on their own: counted bytes, not promises; 413/408/431 shapes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from starlette.types import Receive, Scope, Send

from bastion.web import BodyLimit, HeaderLimits
from bastion.web.body_limit import route_pattern
from tests.unit.web.apps import client_for, responder

KIB = 1024


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def assert_error(response_json: dict[str, dict[str, str]], code: str) -> None:
    assert response_json["detail"]["error"] == code
    assert response_json["detail"]["message"]


async def chunks(*parts: bytes, clock: FakeClock | None = None, step: float = 0.0) -> AsyncIterator[bytes]:
    for part in parts:
        if clock is not None:
            clock.now += step
        yield part


async def test_body_under_the_cap_reaches_the_app() -> None:
    app = BodyLimit(responder(), max_body_bytes=4 * KIB)
    async with client_for(app) as http:
        response = await http.post("/", content=b"x" * (4 * KIB))
    assert response.status_code == 200
    assert response.json()["body_bytes"] == 4 * KIB


async def test_declared_length_over_the_cap_is_refused_before_the_app_runs() -> None:
    called = False

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal called
        called = True

    limited = BodyLimit(app, max_body_bytes=KIB)
    async with client_for(limited) as http:
        response = await http.post("/", content=b"x" * (KIB + 1))
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert_error(response.json(), "payload_too_large")
    assert not called


async def test_a_lying_content_length_is_caught_by_counting() -> None:
    app = BodyLimit(responder(), max_body_bytes=KIB)
    async with client_for(app) as http:
        response = await http.post(
            "/", content=chunks(b"x" * KIB, b"x" * KIB), headers={"Content-Length": "10"}
        )
    assert response.status_code == 413
    assert_error(response.json(), "payload_too_large")


async def test_a_chunked_body_without_length_is_cut_off_at_the_cap() -> None:
    app = BodyLimit(responder(), max_body_bytes=KIB)
    async with client_for(app) as http:
        response = await http.post("/", content=chunks(*[b"y" * 100] * 20))
    assert response.status_code == 413


@pytest.mark.parametrize("value", ["-1", "abc", "1e3", "0x10", "99999999999999999999999"])
async def test_malformed_content_length_is_400(value: str) -> None:
    app = BodyLimit(responder(), max_body_bytes=KIB)
    async with client_for(app) as http:
        response = await http.post("/", content=b"", headers={"Content-Length": value})
    assert response.status_code == 400
    assert_error(response.json(), "invalid_content_length")


async def test_conflicting_content_lengths_are_400() -> None:
    app = BodyLimit(responder(), max_body_bytes=KIB)
    async with client_for(app) as http:
        response = await http.post(
            "/", content=b"ab", headers=[("Content-Length", "2"), ("Content-Length", "5")]
        )
    assert response.status_code == 400


async def test_route_caps_and_json_cap() -> None:
    app = BodyLimit(
        responder(),
        max_body_bytes=KIB,
        route_limits={"/api/sessions/{id}/voice-chat": 64 * KIB},
        json_max_bytes=2 * KIB,
    )
    big = b"a" * (32 * KIB)
    async with client_for(app) as http:
        voice = await http.post("/api/sessions/abc-123/voice-chat", content=big)
        voice_json = await http.post(
            "/api/sessions/abc/voice-chat", content=big, headers={"Content-Type": "application/json"}
        )
        elsewhere = await http.post("/api/sessions/abc/messages", content=big)
        nested = await http.post("/api/sessions/a/b/voice-chat", content=big)
    assert voice.status_code == 200
    assert voice_json.status_code == 413
    assert elsewhere.status_code == 413
    assert nested.status_code == 413


def test_route_pattern() -> None:
    pattern = route_pattern("/api/sessions/{id}/voice-chat")
    assert pattern.match("/api/sessions/x/voice-chat")
    assert pattern.match("/api/sessions/x/voice-chat/")
    assert not pattern.match("/api/sessions//voice-chat")
    assert not pattern.match("/api/sessions/x/voice-chat/extra")
    assert not pattern.match("/api/sessionsXx/voice-chat")


async def test_a_trickling_body_gets_408() -> None:
    clock = FakeClock()
    app = BodyLimit(responder(), max_body_bytes=KIB, timeout_seconds=10, clock=clock)
    async with client_for(app) as http:
        response = await http.post("/", content=chunks(b"a", b"b", b"c", clock=clock, step=4))
    assert response.status_code == 408
    assert_error(response.json(), "request_timeout")


async def test_a_body_within_the_deadline_passes_and_the_deadline_ends_with_the_body() -> None:
    clock = FakeClock()
    app = BodyLimit(responder(), max_body_bytes=KIB, timeout_seconds=10, clock=clock)
    async with client_for(app) as http:
        response = await http.post("/", content=chunks(b"a", b"b", b"c", clock=clock, step=3))
    assert response.status_code == 200
    assert response.json()["body_bytes"] == 3


async def test_a_stalled_body_gets_408_in_real_time() -> None:
    app = BodyLimit(responder(), max_body_bytes=KIB, timeout_seconds=0.05)

    async def stall() -> AsyncIterator[bytes]:
        import asyncio

        yield b"a"
        await asyncio.sleep(30)
        yield b"b"

    async with client_for(app) as http:
        response = await http.post("/", content=stall())
    assert response.status_code == 408


async def test_once_the_app_answered_an_overflow_only_disconnects_it() -> None:
    seen: list[str] = []

    async def early(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        while True:
            message = await receive()
            seen.append(message["type"])
            if message["type"] == "http.disconnect" or not message.get("more_body"):
                break
        await send({"type": "http.response.body", "body": b"done"})

    app = BodyLimit(early, max_body_bytes=150)
    async with client_for(app) as http:
        response = await http.post("/", content=chunks(b"z" * 100, b"z" * 100, b"z" * 100))
    assert response.status_code == 200
    assert seen[-1] == "http.disconnect"


async def test_headers_count_and_size_limits() -> None:
    app = HeaderLimits(responder(), max_count=20, max_bytes=2 * KIB)
    async with client_for(app) as http:
        ok = await http.get("/", headers={f"X-H{i}": "v" for i in range(10)})
        many = await http.get("/", headers={f"X-H{i}": "v" for i in range(30)})
        huge = await http.get("/", headers={"X-Big": "v" * 4 * KIB})
    assert ok.status_code == 200
    assert many.status_code == 431
    assert_error(many.json(), "headers_too_large")
    assert huge.status_code == 431
    assert "too large" in huge.json()["detail"]["message"]


async def test_an_app_failing_after_the_cut_off_is_not_a_second_error() -> None:
    async def strict(scope: Scope, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise RuntimeError("client went away")
            if not message.get("more_body"):
                break

    app = BodyLimit(strict, max_body_bytes=100)
    async with client_for(app) as http:
        response = await http.post("/", content=chunks(b"z" * 80, b"z" * 80))
    assert response.status_code == 413


async def test_an_app_failure_of_its_own_is_not_swallowed() -> None:
    async def broken(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("bug")

    app = BodyLimit(broken, max_body_bytes=100)
    with pytest.raises(RuntimeError, match="bug"):
        async with client_for(app) as http:
            await http.post("/", content=b"ok")


async def test_websocket_and_lifespan_scopes_pass_through() -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    async def receive() -> dict[str, object]:
        return {}

    async def send(message: dict[str, object]) -> None:
        return None

    for layer in (BodyLimit(app), HeaderLimits(app)):
        await layer({"type": "lifespan"}, receive, send)  # type: ignore[arg-type]
    assert seen == ["lifespan", "lifespan"]
