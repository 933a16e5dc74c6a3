# SPDX-License-Identifier: Apache-2.0
"""The request-path cost of the metrics middleware, measured.

Run: ``.venv/bin/python bench/metrics.py [--requests 3000] [--rounds 5]``. Two apps on the same
settings in the same run, one with RequestMetrics and one with it removed from the stack, each
called in-process (httpx ASGITransport) with GET /health (a matched route) and GET of an unknown
path (a 404, route "unmatched"). Rounds alternate between the two apps so drift in the machine's
load falls on both; the best round of each is kept. Prints microseconds per request, the ratio
(with / without) and the difference in microseconds. SQLite, in-process limiter. First, the layer
alone around a no-op ASGI app: its own cost, which the whole-app figures bury in their noise.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
from asgi_lifespan import LifespanManager
from starlette.types import ASGIApp, Message, Receive, Scope, Send

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from bastion.app import create_app
from bastion.db import migrate
from bastion.observability.metrics import Metrics
from bastion.settings import Settings
from bastion.web.metrics import RequestMetrics

PATHS = {"matched": "/health", "unmatched": "/no/such/page"}


async def round_us(http: httpx.AsyncClient, path: str, requests: int) -> float:
    start = time.perf_counter()
    for _ in range(requests):
        await http.get(path)
    return (time.perf_counter() - start) / requests * 1e6


async def noop_app(scope: Scope, receive: Receive, send: Send) -> None:
    """An ASGI app that answers 200 with an empty body: what a layer alone is measured around."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def _receive() -> Message:
    return {"type": "http.request", "body": b""}


async def _send(message: Message) -> None:
    return None


async def per_call_us(
    apps: dict[str, ASGIApp], scope: Scope, calls: int, rounds: int = 5
) -> dict[str, float]:
    """Microseconds per call of each app on ``scope``, best of ``rounds``, rounds interleaved."""
    best = dict.fromkeys(apps, float("inf"))
    for _ in range(rounds):
        for name, app in apps.items():
            start = time.perf_counter()
            for _ in range(calls):
                await app(dict(scope), _receive, _send)
            best[name] = min(best[name], (time.perf_counter() - start) / calls * 1e6)
    return best


async def isolated_us(calls: int) -> tuple[float, float]:
    """The layer alone around a no-op app: (us per call with it, us per call without it)."""
    layer = RequestMetrics(noop_app, metrics=Metrics())
    best = await per_call_us(
        {"without": noop_app, "with": layer}, {"type": "http", "method": "GET", "path": "/health"}, calls
    )
    return best["with"], best["without"]


async def main(requests: int, rounds: int) -> None:
    with_us, without_us = await isolated_us(100_000)
    print(
        f"isolated  RequestMetrics around a no-op app: {with_us:.2f} us/call, without {without_us:.2f}: "
        f"{with_us - without_us:+.2f} us per request"
    )
    root = Path(tempfile.mkdtemp(prefix="bastion-bench-metrics-"))
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        environment="test",
        var_dir=root / "var",
        database_url=f"sqlite+aiosqlite:///{root / 'bench.db'}",
        rate_limit_per_minute=10_000_000,
        log_level="WARNING",
    )
    await asyncio.to_thread(migrate.upgrade, settings.database_url.get_secret_value())
    with_metrics = create_app(settings)
    without = create_app(settings)
    # The stack is built on the first call, so removing the layer before startup is enough.
    without.user_middleware = [m for m in without.user_middleware if m.cls is not RequestMetrics]
    async with AsyncExitStack() as stack:
        clients = {}
        for name, app in (("with", with_metrics), ("without", without)):
            manager = await stack.enter_async_context(LifespanManager(app))
            transport = httpx.ASGITransport(app=manager.app, client=("127.0.0.1", 1))
            clients[name] = await stack.enter_async_context(
                httpx.AsyncClient(transport=transport, base_url="http://localhost")
            )
        for kind, path in PATHS.items():
            best = {"with": float("inf"), "without": float("inf")}
            for http in clients.values():
                await round_us(http, path, 200)  # warm up
            for _ in range(rounds):
                for name, http in clients.items():
                    best[name] = min(best[name], await round_us(http, path, requests))
            ratio = best["with"] / best["without"]
            print(
                f"{kind:9} GET {path:14} with metrics {best['with']:7.1f} us/request, "
                f"without {best['without']:7.1f} us/request: ratio {ratio:.3f}, "
                f"{best['with'] - best['without']:+.1f} us"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.rounds))
