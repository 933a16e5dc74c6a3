# SPDX-License-Identifier: Apache-2.0
"""A Redis connection that counts what it sends: one count per round trip (a pipeline is one)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection, Connection


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


def _command_of(packed: bytes | str | Iterable[bytes]) -> list[str]:
    """The commands in one packed RESP buffer: each one's name and first key (EVALSHA: all its
    keys; a command without one, e.g. PING: its name alone)."""
    if isinstance(packed, str):
        data = packed.encode()
    elif isinstance(packed, bytes | bytearray | memoryview):
        data = bytes(packed)
    else:
        data = b"".join(bytes(part) for part in packed)
    names: list[str] = []
    at = 0
    while data.startswith(b"*", at):
        end = data.index(b"\r\n", at)
        count, at = int(data[at + 1 : end]), end + 2
        args: list[str] = []
        for _ in range(count):  # each argument: $<size>\r\n<bytes>\r\n
            end = data.index(b"\r\n", at)
            size = int(data[at + 1 : end])
            args.append(data[end + 2 : end + 2 + size].decode(errors="replace"))
            at = end + 4 + size
        name = args[0].upper()
        if name in ("EVALSHA", "EVAL"):
            names.append(" ".join([name, *args[3 : 3 + int(args[2])]]))
            continue
        key = args[1] if len(args) > 1 else None
        names.append(name if key is None or name in ("SCRIPT", "CLIENT") else f"{name} {key}")
    return names


@contextmanager
def recording_round_trips() -> Iterator[list[list[str]]]:
    """Every round trip any redis.asyncio connection of this process makes meanwhile, as the
    commands it carried (a pipeline is one round trip of several)."""
    sent: list[list[str]] = []
    original = AbstractConnection.send_packed_command

    async def send(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        sent.append(_command_of(command))
        await original(self, command, check_health)

    AbstractConnection.send_packed_command = send  # type: ignore[method-assign]
    try:
        yield sent
    finally:
        AbstractConnection.send_packed_command = original  # type: ignore[method-assign]
