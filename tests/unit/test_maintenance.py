# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

import asyncio

from bastion.maintenance import Job, Maintenance


async def test_jobs_run_periodically_and_survive_failures() -> None:
    calls: list[str] = []

    async def flaky() -> int:
        calls.append("flaky")
        if len(calls) == 1:
            raise RuntimeError("database hiccup")
        return 2

    maintenance = Maintenance([Job("flaky", 0.01, flaky)])
    maintenance.start()
    for _ in range(200):
        if len(calls) >= 3:
            break
        await asyncio.sleep(0.01)
    await maintenance.aclose()
    assert len(calls) >= 3  # the failure did not end the loop
    count = len(calls)
    await asyncio.sleep(0.05)
    assert len(calls) == count  # stopped for good


async def test_run_once_reports_what_was_removed() -> None:
    async def purge() -> int:
        return 5

    job = Job("purge", 60, purge)
    assert await Maintenance([job]).run_once(job) == 5
