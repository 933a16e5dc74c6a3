# SPDX-License-Identifier: Apache-2.0
"""Cost of Bastion's HTTP hardening stack, as a ratio against a bare app measured in the same run.

    .venv/bin/python bench/http_stack.py [--requests 3000]

Both apps serve the same two routes in-process (httpx ASGITransport, no sockets): a small JSON GET and
a 256 KiB JSON POST. The hardened one is ``create_app`` with every middleware layer.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import httpx
from fastapi import FastAPI, Request

from bastion.app import create_app
from bastion.settings import Settings

BODY = b'{"text":"' + b"x" * (256 * 1024 - 12) + b'"}'


def add_routes(app: FastAPI) -> FastAPI:
    @app.get("/bench/ping")
    async def ping() -> dict[str, bool]:
        return {"ok": True}

    @app.post("/bench/upload")
    async def upload(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    return app


async def measure(app: FastAPI, requests: int) -> tuple[float, float]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://localhost") as http:
        for _ in range(50):  # warm up
            await http.get("/bench/ping")
        started = time.perf_counter()
        for _ in range(requests):
            response = await http.get("/bench/ping")
            if response.status_code != 200:
                raise SystemExit(f"unexpected status {response.status_code}")
        get_us = (time.perf_counter() - started) / requests * 1e6
        uploads = max(1, requests // 10)
        headers = {"Content-Type": "application/json"}
        started = time.perf_counter()
        for _ in range(uploads):
            response = await http.post("/bench/upload", content=BODY, headers=headers)
            if response.status_code != 200:
                raise SystemExit(f"unexpected status {response.status_code}")
        post_us = (time.perf_counter() - started) / uploads * 1e6
    return get_us, post_us


async def main(requests: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None,
            environment="test",
            var_dir=Path(directory),
            log_level="WARNING",
            enable_json_logging=True,
        )
        bare = add_routes(FastAPI())
        hardened = add_routes(create_app(settings))
        bare_get, bare_post = await measure(bare, requests)
        full_get, full_post = await measure(hardened, requests)
    for name, bare_us, full_us in (
        ("GET  small JSON", bare_get, full_get),
        ("POST 256 KiB   ", bare_post, full_post),
    ):
        print(f"{name}: bare {bare_us:8.1f} us  hardened {full_us:8.1f} us  ratio {full_us / bare_us:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    asyncio.run(main(parser.parse_args().requests))
