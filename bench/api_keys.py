# SPDX-License-Identifier: Apache-2.0
"""API key verification, measured: cached vs database lookups, and requests through the app.

Run: ``.venv/bin/python bench/api_keys.py [--seconds 3]``. Prints verifications/s with the cache
(API_KEY_CACHE_SECONDS=30, the default) and without it (0: one indexed read + HMAC per request),
then requests/s through the whole app with a key (cached, uncached) and with no credential, each as
a ratio to the slowest figure of its group measured in the same run. SQLite, in-process limiter.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import httpx
from asgi_lifespan import LifespanManager

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from bastion.app import create_app
from bastion.db import migrate
from bastion.settings import Settings

PASSWORD = "Correct-Horse-9x!"  # noqa: S105 - a benchmark account


async def measure(cache_seconds: float, seconds: float) -> tuple[float, dict[str, float]]:
    root = Path(tempfile.mkdtemp(prefix="bastion-bench-keys-"))
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        environment="test",
        var_dir=root / "var",
        database_url=f"sqlite+aiosqlite:///{root / 'bench.db'}",
        api_key_cache_seconds=cache_seconds,
        argon2_memory_kib=256,
        argon2_time_cost=1,
        rate_limit_per_minute=10_000_000,
        log_level="WARNING",
    )
    await asyncio.to_thread(migrate.upgrade, settings.database_url.get_secret_value())
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app, client=("127.0.0.1", 1))
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
            account = {"email": "bench@example.com", "password": PASSWORD}
            await http.post("/api/auth/register", json=account)
            token = (await http.post("/api/auth/login", json=account)).json()["access_token"]
            created = await http.post(
                "/api/keys",
                json={"name": "bench", "scopes": ["chat"]},
                headers={"Authorization": f"Bearer {token}"},
            )
            key = created.json()["key"]
            keys = app.state.api_keys
            done, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                await keys.authenticate(key)
                done += 1
            verifications = done / (time.perf_counter() - start)
            through_app: dict[str, float] = {}
            for label, headers in (("api key", {"X-API-Key": key}), ("none", {})):
                done, start = 0, time.perf_counter()
                while time.perf_counter() - start < seconds:
                    await http.get("/health/ready", headers=headers)
                    done += 1
                through_app[label] = done / (time.perf_counter() - start)
    return verifications, through_app


async def main(seconds: float) -> None:
    cached, app_cached = await measure(30.0, seconds)
    uncached, app_uncached = await measure(0.0, seconds)
    print(f"{'verification':<28}{'per second':>12}{'ratio':>10}")
    print(f"{'database + HMAC (no cache)':<28}{uncached:>12.0f}{1.0:>9.2f}x")
    print(f"{'cache (whole-key MAC)':<28}{cached:>12.0f}{cached / uncached:>9.2f}x")
    print()
    print(f"{'GET /health/ready with':<28}{'req/s':>12}{'ratio':>10}")
    base = app_uncached["api key"]
    print(f"{'api key, no cache':<28}{base:>12.0f}{1.0:>9.2f}x")
    print(f"{'api key, cached':<28}{app_cached['api key']:>12.0f}{app_cached['api key'] / base:>9.2f}x")
    print(f"{'no credential':<28}{app_cached['none']:>12.0f}{app_cached['none'] / base:>9.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    asyncio.run(main(parser.parse_args().seconds))
