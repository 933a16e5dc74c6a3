# SPDX-License-Identifier: Apache-2.0
"""Real uvicorn processes: two instances share one limit through Redis; leases survive disconnects."""

from __future__ import annotations

import asyncio
import math
import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.support.processes import uvicorn_process

pytestmark = [pytest.mark.e2e]
FACTORY = "tests.support.ratelimit_app:create_app"


def base_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "ENVIRONMENT": "test",
        "VAR_DIR": str(tmp_path / "var"),
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'bastion.db'}",
        "ENABLE_JSON_LOGGING": "true",
        "LOG_LEVEL": "WARNING",
        **extra,
    }


async def test_two_instances_never_admit_more_than_one_limit(tmp_path: Path, each_redis_url: str) -> None:
    """On one Redis and on a Redis Cluster alike."""
    rate, burst, period = 10, 5, 60.0  # one request per 6 s, five at once
    env = base_env(
        tmp_path,
        REDIS_URL=each_redis_url,
        RATE_LIMIT_LOGIN=f"{rate}/minute;burst={burst}",
        RATE_LIMIT_PER_MINUTE="100000",
        RATE_LIMIT_BLOCK_VIOLATIONS="0",
    )
    with uvicorn_process(FACTORY, env) as first, uvicorn_process(FACTORY, env) as second:
        limits = httpx.Limits(max_connections=40, max_keepalive_connections=40)
        async with (
            httpx.AsyncClient(base_url=first, limits=limits) as a,
            httpx.AsyncClient(base_url=second, limits=limits) as b,
        ):
            started = time.monotonic()
            responses = await asyncio.gather(*(c.get("/test/login-like") for c in [a, b] * 100))
            elapsed = time.monotonic() - started

    admitted = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code != 200]
    # GCRA admits the burst plus one request per interval elapsed: never a limit per instance.
    assert burst <= len(admitted) <= burst + math.floor(elapsed / (period / rate))
    assert {r.headers["x-ratelimit-limit"] for r in admitted} == {str(rate)}
    for response in refused:
        assert response.status_code == 429
        detail = response.json()["detail"]
        assert detail["error"] == "rate_limited"
        assert int(response.headers["retry-after"]) == detail["retry_after"] >= 1
        assert response.headers["x-ratelimit-limit"] == str(rate)
        assert response.headers["x-ratelimit-remaining"] == "0"
        assert int(response.headers["x-ratelimit-reset"]) >= 1
        assert detail["request_id"] == response.headers["x-request-id"]
    # Both instances refused some: the shared state, not luck of routing, held the line.
    hosts = {str(r.url.port) for r in refused}
    assert len(hosts) == 2


async def _in_flight(http: httpx.AsyncClient, principal: str) -> int:
    response = await http.get("/test/voice/in-flight", headers={"X-Test-Principal": principal})
    count: int = response.json()["in_flight"]
    return count


async def _wait_for_in_flight(http: httpx.AsyncClient, principal: str, expected: int) -> None:
    for _ in range(200):
        if await _in_flight(http, principal) == expected:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"in-flight count never reached {expected}")


@pytest.mark.parametrize("backend", ["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def test_a_client_that_disconnects_mid_upload_gives_its_slot_back(
    tmp_path: Path, request: pytest.FixtureRequest, backend: str
) -> None:
    extra = {"RATE_LIMIT_VOICE_CONCURRENT": "1"}
    if backend == "redis":
        extra["REDIS_URL"] = request.getfixturevalue("redis_server")
    principal = f"key:voice-{backend}"
    with uvicorn_process(FACTORY, base_env(tmp_path, **extra)) as url:
        port = int(url.rsplit(":", 1)[1])
        async with httpx.AsyncClient(base_url=url) as http:
            # A finished upload holds its slot only while it runs.
            done = await http.post(
                "/test/voice", content=b"x" * 1000, headers={"X-Test-Principal": principal}
            )
            assert done.json() == {"bytes": 1000}
            assert await _in_flight(http, principal) == 0

            # A slow upload holds the one slot...
            uploader = socket.create_connection(("127.0.0.1", port))
            uploader.sendall(
                b"POST /test/voice HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000000\r\n"
                + f"X-Test-Principal: {principal}\r\n\r\n".encode()
                + b"y" * 100
            )
            await _wait_for_in_flight(http, principal, 1)
            busy = await http.post("/test/voice", content=b"z", headers={"X-Test-Principal": principal})
            assert busy.status_code == 429
            assert busy.json()["detail"]["error"] == "rate_limited"
            # ...until its client goes away: then the slot is free again.
            uploader.close()
            await _wait_for_in_flight(http, principal, 0)
            again = await http.post("/test/voice", content=b"z", headers={"X-Test-Principal": principal})
            assert again.status_code == 200
