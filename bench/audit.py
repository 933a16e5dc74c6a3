# SPDX-License-Identifier: Apache-2.0
"""The cost of the audit log and access records, measured.

Run: ``.venv/bin/python bench/audit.py [--requests 2000] [--rounds 5] [--records 500]``.

1. The request path: RequestMetrics with the access log (one tuple appended per request) against
   RequestMetrics alone, both around a no-op ASGI app: the per-request cost of access records.
2. The whole app in-process (httpx ASGITransport): an authenticated ``GET /api/auth/me``, with
   ACCESS_LOG on and off, rounds alternating; the best round of each. The batch writer runs (once
   a second) in the measured app, so its inserts are part of the figure.
3. A security event: ``AuditService.record`` (take the chain's next position, hash, insert, move
   the head; one write transaction) against a plain insert of the same row outside any chain, on
   SQLite: what the chain adds to each audited action.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections import deque
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path

import httpx
from asgi_lifespan import LifespanManager
from starlette.types import Scope

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared timing helpers in bench/metrics.py

from metrics import noop_app, per_call_us

from bastion.app import create_app
from bastion.audit.access import AccessLog
from bastion.audit.events import AuditEvent
from bastion.audit.models import AuditRecord
from bastion.audit.service import AuditService, new_record
from bastion.db import migrate
from bastion.db.engine import create_engine, create_sessionmaker
from bastion.db.session import unit_of_work
from bastion.observability.metrics import Metrics
from bastion.settings import Settings
from bastion.web.metrics import RequestMetrics


async def isolated_us(calls: int) -> tuple[float, float]:
    access = AccessLog(max_buffer=10**9)
    access._sessionmaker = object()  # type: ignore[assignment]  # taking notes, never flushed here
    access.buffer = deque(maxlen=1)  # notes are taken in full, and memory stays flat
    layers = {
        "with": RequestMetrics(noop_app, metrics=Metrics(), access_log=access),
        "without": RequestMetrics(noop_app, metrics=Metrics()),
    }
    scope: Scope = {
        "type": "http",
        "method": "GET",
        "path": "/api/auth/me",
        "state": {"client_ip": "192.0.2.1"},
    }
    best = await per_call_us(layers, scope, calls)
    return best["with"], best["without"]


def settings_for(root: Path, name: str, **values: object) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        environment="test",
        var_dir=root / name / "var",
        database_url=f"sqlite+aiosqlite:///{root / name / 'bench.db'}",
        rate_limit_per_minute=10_000_000,
        argon2_memory_kib=256,
        argon2_time_cost=1,
        log_level="WARNING",
        **values,
    )


async def whole_app(root: Path, requests: int, rounds: int) -> None:
    apps = {}
    for name, enabled in (("with", True), ("without", False)):
        (root / name).mkdir()
        settings = settings_for(root, name, access_log=enabled)
        await asyncio.to_thread(migrate.upgrade, settings.database_url.get_secret_value())
        apps[name] = create_app(settings)
    async with AsyncExitStack() as stack:
        clients = {}
        for name, app in apps.items():
            manager = await stack.enter_async_context(LifespanManager(app))
            transport = httpx.ASGITransport(app=manager.app, client=("127.0.0.1", 1))
            http = await stack.enter_async_context(
                httpx.AsyncClient(transport=transport, base_url="http://localhost")
            )
            account = {"email": f"{name}@example.com", "password": "Bench-password-42!"}
            assert (await http.post("/api/auth/register", json=account)).status_code == 201
            token = (await http.post("/api/auth/login", json=account)).json()["access_token"]
            http.headers["Authorization"] = f"Bearer {token}"
            clients[name] = http
        best = {"with": float("inf"), "without": float("inf")}
        for http in clients.values():
            for _ in range(200):
                await http.get("/api/auth/me")
        for _ in range(rounds):
            for name, http in clients.items():
                start = time.perf_counter()
                for _ in range(requests):
                    await http.get("/api/auth/me")
                best[name] = min(best[name], (time.perf_counter() - start) / requests * 1e6)
        written = apps["with"].state.access_log
        await written.flush()
        print(
            f"whole app GET /api/auth/me  access log on {best['with']:7.1f} us/request, "
            f"off {best['without']:7.1f}: "
            f"ratio {best['with'] / best['without']:.3f}, {best['with'] - best['without']:+.1f} us "
            f"({written.written} access records written, {written.dropped} dropped)"
        )


async def security_events(root: Path, records: int) -> None:
    (root / "events").mkdir()
    url = f"sqlite+aiosqlite:///{root / 'events' / 'bench.db'}"
    await asyncio.to_thread(migrate.upgrade, url)
    engine = create_engine(url)
    sessionmaker = create_sessionmaker(engine)
    audit = AuditService(sessionmaker=sessionmaker)
    try:
        timings: dict[str, float] = {}
        for name in ("chained", "plain", "chained", "plain"):
            start = time.perf_counter()
            for i in range(records):
                if name == "chained":
                    await audit.record(AuditEvent.AUTH_FAILURE, ip="192.0.2.1", details={"n": i})
                else:
                    row = new_record(AuditEvent.AUTH_FAILURE, timestamp=datetime.now(UTC), ip="192.0.2.1")
                    row.chain, row.seq, row.prev_hash, row.hash = (
                        "bench",
                        i + 1_000_000 * len(timings),
                        "0",
                        "0",
                    )
                    async with unit_of_work(sessionmaker) as session:
                        session.add(row)
            elapsed = (time.perf_counter() - start) / records * 1e6
            timings[name] = min(timings.get(name, float("inf")), elapsed)
        print(
            f"security event (SQLite)  chained {timings['chained']:7.1f} us/record, plain insert "
            f"{timings['plain']:7.1f}: ratio {timings['chained'] / timings['plain']:.3f}, "
            f"{timings['chained'] - timings['plain']:+.1f} us"
        )
        async with sessionmaker() as session:
            assert (
                await session.get(AuditRecord, (await audit.record(AuditEvent.CONFIG_CHANGED)).id) is not None
            )
    finally:
        await engine.dispose()


async def main(requests: int, rounds: int, records: int) -> None:
    with_us, without_us = await isolated_us(100_000)
    print(
        f"isolated  RequestMetrics + access log {with_us:.2f} us/call, without the access log "
        f"{without_us:.2f}: {with_us - without_us:+.2f} us per request"
    )
    root = Path(tempfile.mkdtemp(prefix="bastion-bench-audit-"))
    await whole_app(root, requests, rounds)
    await security_events(root, records)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--records", type=int, default=500)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.rounds, args.records))
