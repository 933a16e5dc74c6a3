# SPDX-License-Identifier: Apache-2.0
"""The blocklist while its shared version cannot be read: the last networks still hold, and the
failure is logged once per interval with a count, not on every request."""

from __future__ import annotations

from typing import Any

from bastion.addresses import canonical_network
from bastion.errors import ServiceUnavailable
from bastion.invalidation import Watched
from bastion.ratelimit.blocklist import REFRESH_LOG_SECONDS, Blocklist, NetworkBlock
from bastion.ratelimit.policies import policy_table
from bastion.ratelimit.service import RateLimiter
from bastion.ratelimit.storage.memory import MemoryStorage
from tests.conftest import SettingsFactory


class Unreadable:
    async def get(self) -> int:
        raise ServiceUnavailable("Redis is down", retry_after=1)

    async def bump(self) -> int:
        raise ServiceUnavailable("Redis is down", retry_after=1)


class Recorder:
    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, Any]]] = []

    def warning(self, event: str, **fields: Any) -> None:
        self.lines.append((event, fields))


async def test_an_unreadable_version_keeps_the_networks_and_logs_once_per_interval(
    make_settings: SettingsFactory,
) -> None:
    clock = [1000.0]
    limiter = RateLimiter(storage=MemoryStorage(), policies=policy_table(make_settings()))
    log = Recorder()
    limiter.log = log  # type: ignore[assignment]
    blocklist = Blocklist(limiter, Watched(Unreadable(), interval=0.0), monotonic=lambda: clock[0])
    # What it knew before Redis went away.
    blocklist._networks = (NetworkBlock(canonical_network("203.0.113.0/24"), limiter.clock() + 600),)
    blocklist._loaded = True
    for _ in range(50):
        assert await blocklist.network_blocked("203.0.113.9")
        assert not await blocklist.network_blocked("198.51.100.1")
    assert [event for event, _ in log.lines] == ["blocklist_refresh_failed"]
    clock[0] += REFRESH_LOG_SECONDS
    assert await blocklist.network_blocked("203.0.113.9")
    assert len(log.lines) == 2 and log.lines[1][1]["failures"] == 100
