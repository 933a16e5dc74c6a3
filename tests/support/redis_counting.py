# SPDX-License-Identifier: Apache-2.0
"""A Redis connection that counts what it sends: one count per round trip (a pipeline is one)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.connection import Connection


class CountingConnection(Connection):
    sent: ClassVar[list[int]] = [0]

    async def send_packed_command(
        self, command: bytes | str | Iterable[bytes], check_health: bool = True
    ) -> None:
        type(self).sent[0] += 1
        await super().send_packed_command(command, check_health)


def counting_client(url: str, **kwargs: Any) -> Redis:
    pool = ConnectionPool.from_url(url, connection_class=CountingConnection, **kwargs)
    return Redis.from_pool(pool)  # the client owns (and closes) the pool


def round_trips() -> int:
    return CountingConnection.sent[0]
