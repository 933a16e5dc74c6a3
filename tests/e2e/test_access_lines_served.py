# SPDX-License-Identifier: Apache-2.0
"""A served instance writes one access line per request, whatever the concurrency, and none is
left unwritten when it stops: the lines of a turn of the event loop are written together."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx

from tests.support.bastion_server import bastion_process

CLIENTS = 16
REQUESTS_EACH = 25


async def _traffic(url: str) -> list[str]:
    """Every request's id, from many concurrent clients on kept-alive connections."""
    ids: list[str] = []
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as http:

        async def client(n: int) -> None:
            for i in range(REQUESTS_EACH):
                path = "/health" if i % 3 else "/no/such/route"
                answer = await http.get(path, headers={"X-Request-ID": f"served-{n:02d}-{i:03d}"})
                assert answer.status_code in (200, 404)
                ids.append(answer.headers["x-request-id"])

        await asyncio.gather(*(client(n) for n in range(CLIENTS)))
    return ids


def _access_lines(log: Path) -> list[dict[str, object]]:
    lines = []
    for raw in log.read_text().splitlines():
        if raw.startswith("{"):
            line = json.loads(raw)  # whole lines: none was cut or interleaved with another
            if line.get("event") == "request":
                lines.append(line)
    return lines


def test_every_request_has_one_whole_access_line_after_a_graceful_stop(tmp_path: Path) -> None:
    server = bastion_process(
        tmp_path, env={"LOG_LEVEL": "INFO", "RATE_LIMIT_PER_MINUTE": "100000"}, args=("--migrate",)
    )
    server.start()
    try:
        ids = asyncio.run(_traffic(server.url))
    finally:
        server.stop()  # SIGTERM: uvicorn finishes, the lifespan ends, the process exits
    # A graceful stop: the lifespan's last line is there (uvicorn then exits by the same signal).
    assert '"event": "shutdown"' in server.log_path.read_text()
    lines = _access_lines(server.log_path)
    assert sorted(str(line["request_id"]) for line in lines) == sorted(ids)
    assert len(ids) == CLIENTS * REQUESTS_EACH
    for line in lines:
        assert line["route"] in ("/health", "unmatched")
        assert line["status"] == (200 if line["route"] == "/health" else 404)
        assert isinstance(line["timestamp"], str) and str(line["timestamp"]).endswith("Z")
