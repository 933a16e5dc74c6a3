# SPDX-License-Identifier: Apache-2.0
"""A started anomaly detector over a migrated database (and Redis when given), for alert tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bastion.alerts import AnomalyDetector, Signal
from bastion.alerts.models import Alert
from bastion.db import migrate
from bastion.db.engine import create_engine, create_sessionmaker
from bastion.observability.metrics import Metrics
from bastion.ratelimit.storage.redis import fail_fast_client
from bastion.redis_client import connect
from bastion.settings import Settings
from tests.support.clock import FakeClock

# Failed sign-ins that are about alerts, not about the login throttle's waits.
NO_LOGIN_THROTTLE = {"LOGIN_DELAY_AFTER_FAILURES": 100, "LOGIN_IP_MAX_FAILURES": 100_000}


@dataclass
class Stack:
    detector: AnomalyDetector
    sessionmaker: async_sessionmaker[AsyncSession]
    metrics: Metrics

    async def alerts(self) -> list[Alert]:
        await self.detector.drain()
        async with self.sessionmaker() as session:
            return list((await session.scalars(select(Alert).order_by(Alert.created_at))).all())


def signal(event: str, *, ip: str | None = None, user_id: str | None = None, **fields: object) -> Signal:
    values: dict[str, object] = {
        "event_type": event,
        "result": "failure",
        "ip": ip,
        "user_id": user_id,
        "api_key_id": None,
        "role": None,
        "categories": (),
        "at": datetime.now(UTC),
    }
    values.update(fields)
    return Signal(**values)  # type: ignore[arg-type]


@asynccontextmanager
async def started(
    settings: Settings, clock: FakeClock, *, redis_url: str | None = None, migrate_first: bool = True
) -> AsyncIterator[Stack]:
    url = settings.database_url.get_secret_value()
    if migrate_first:
        await asyncio.to_thread(migrate.upgrade, url)
    engine = create_engine(url)
    redis = connect(redis_url) if redis_url is not None else None
    shared = fail_fast_client(redis, 0.5) if redis is not None else None
    http = httpx.AsyncClient(trust_env=False)
    metrics = Metrics()
    detector = AnomalyDetector(settings, metrics=metrics, clock=clock)
    await detector.start(redis=shared, sessionmaker=create_sessionmaker(engine), http_client=http)
    try:
        yield Stack(detector, create_sessionmaker(engine), metrics)
    finally:
        await detector.aclose()
        await http.aclose()
        for client in (shared, redis):
            if client is not None:
                await client.aclose()
        await engine.dispose()
