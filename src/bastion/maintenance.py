# SPDX-License-Identifier: Apache-2.0
"""Periodic maintenance jobs (retention purges) run by the lifespan on every instance.

Each job is idempotent and safe to run on several instances at once (a DELETE of what is past its
cutoff), so no leader election is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from bastion.observability.logging import get_logger


@dataclass(frozen=True, slots=True)
class Job:
    name: str
    interval_seconds: float
    #: what one run removed: a count, or a count per kind of data
    run: Callable[[], Awaitable[int | Mapping[str, int]]]


class Maintenance:
    """Runs each job every ``interval_seconds``; a failing run is logged and retried next time."""

    def __init__(self, jobs: list[Job]) -> None:
        self.jobs = jobs
        self._tasks: list[asyncio.Task[None]] = []
        self.log = get_logger("bastion.maintenance")

    def start(self) -> None:
        for job in self.jobs:
            self._tasks.append(asyncio.create_task(self._loop(job), name=f"bastion-maintenance-{job.name}"))

    async def _loop(self, job: Job) -> None:
        while True:
            await asyncio.sleep(job.interval_seconds)
            await self.run_once(job)

    async def run_once(self, job: Job) -> int:
        """Run ``job`` once; how many rows it removed in all (0 when it failed)."""
        try:
            result = await job.run()
        except Exception as exc:  # a database hiccup must not end the loop
            self.log.warning("maintenance_failed", job=job.name, error=type(exc).__name__)
            return 0
        counts = dict(result) if isinstance(result, Mapping) else {"removed": result}
        removed = sum(counts.values())
        if removed:
            self.log.info("maintenance_purged", job=job.name, **counts)
        return removed

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
