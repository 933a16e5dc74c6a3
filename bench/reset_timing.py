# SPDX-License-Identifier: Apache-2.0
"""Password-reset requests: median response time for existing vs unknown addresses.

Run: ``.venv/bin/python bench/reset_timing.py [--requests 400]``. In process (httpx ASGITransport
against create_app, SQLite). Requests alternate between an existing and an unknown address so drift
hits both alike; background work (the link and the mail) finishes between samples, outside the
timed region, because a client only ever sees the response. Prints both medians and their ratio:
near 1.00 means the answer's timing does not reveal whether an address has an account.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
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
ACCOUNTS = 20


async def measure(requests: int) -> tuple[list[float], list[float]]:
    root = Path(tempfile.mkdtemp(prefix="bastion-bench-"))
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        environment="test",
        var_dir=root / "var",
        database_url=f"sqlite+aiosqlite:///{root / 'bench.db'}",
        rate_limit_per_minute=10_000_000,
        rate_limit_register="1000000/minute",
        rate_limit_password_reset="1000000/minute",  # noqa: S106 - a rate, not a secret
        argon2_memory_kib=256,
        argon2_time_cost=1,
        enable_json_logging=True,
        log_level="ERROR",
    )
    await asyncio.to_thread(migrate.upgrade, settings.database_url.get_secret_value())
    app = create_app(settings)
    existing: list[float] = []
    unknown: list[float] = []
    async with LifespanManager(app) as manager:
        background = app.state.identity.background
        transport = httpx.ASGITransport(app=manager.app, client=("127.0.0.1", 1))
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
            for n in range(ACCOUNTS):
                account = {"email": f"user{n}@example.com", "password": PASSWORD}
                await http.post("/api/auth/register", json=account)
            for n in range(requests + 20):  # the first 20 warm up
                for address, samples in (
                    (f"user{n % ACCOUNTS}@example.com", existing),
                    (f"nobody{n}@example.com", unknown),
                )[:: 1 if n % 2 else -1]:
                    start = time.perf_counter()
                    response = await http.post("/api/auth/password-reset", json={"email": address})
                    elapsed = time.perf_counter() - start
                    if response.status_code != 202:
                        raise RuntimeError(response.text)
                    if n >= 20:
                        samples.append(elapsed * 1000)
                    if background:
                        await asyncio.wait(set(background))
    return existing, unknown


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=400, help="samples per kind of address")
    args = parser.parse_args()
    existing, unknown = asyncio.run(measure(args.requests))
    known_ms, unknown_ms = statistics.median(existing), statistics.median(unknown)
    print(f"existing address: median {known_ms:.2f} ms over {len(existing)} requests")
    print(f"unknown address:  median {unknown_ms:.2f} ms over {len(unknown)} requests")
    print(f"ratio existing/unknown: {known_ms / unknown_ms:.3f}")


if __name__ == "__main__":
    main()
