# SPDX-License-Identifier: Apache-2.0
"""`bastion blocks list|lift`: the blocklist from the command line, for when the API is out of reach.

An admin who blocked their own way in (a forced block of their network, say) gets 403 from the
admin API; these commands work on the shared store (REDIS_URL) directly. Lifting is audited in
the database audit trail like a lift through the API (actor ``cli``), and running instances drop a
lifted network block within INVALIDATION_POLL_SECONDS. Without REDIS_URL blocks live in each
server's memory, out of this command's reach: it says so and exits 2.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, TypeVar

import typer

from bastion.cli.common import settings_or_exit, show_rows
from bastion.db.engine import create_engine, create_sessionmaker
from bastion.errors import ServiceUnavailable
from bastion.ratelimit.blocklist import Blocklist, normalize
from bastion.ratelimit.components import build_rate_limiting
from bastion.ratelimit.storage.base import Block
from bastion.redis_client import connect as connect_redis
from bastion.settings import Settings

app = typer.Typer(help="The blocklist in the shared store (REDIS_URL).", no_args_is_help=True)

T = TypeVar("T")
ACTOR = "cli"
NO_SHARED_STORE = (
    "error: REDIS_URL is not set, so blocks live in the memory of each running server, where this "
    "command cannot reach them.\n"
    "Lift a block through the admin API (DELETE /api/admin/blocks/KIND/VALUE), or restart the "
    "server: a restart clears every block it holds in memory."
)


class BlockKind(StrEnum):
    ip = "ip"
    cidr = "cidr"
    key = "key"
    user = "user"


class Format(StrEnum):
    table = "table"
    json = "json"


@asynccontextmanager
async def _blocklist(settings: Settings, redis_url: str) -> AsyncIterator[Blocklist]:
    redis = connect_redis(redis_url)
    engine = create_engine(settings.database_url.get_secret_value())
    # Fail closed: an unreachable Redis must be an error here, never an empty in-memory list.
    closed = settings.model_copy(update={"rate_limit_fail_mode": "closed"})
    limiting = build_rate_limiting(closed, redis=redis, sessionmaker=create_sessionmaker(engine))
    try:
        yield limiting.blocklist
    finally:
        await limiting.aclose()
        await redis.aclose()
        await engine.dispose()


def _run(work: Callable[[Blocklist], Awaitable[T]]) -> T:
    settings = settings_or_exit()
    if settings.redis_url is None:
        typer.echo(NO_SHARED_STORE, err=True)
        raise typer.Exit(2)
    redis_url = settings.redis_url.get_secret_value()

    async def main() -> T:
        async with _blocklist(settings, redis_url) as blocklist:
            return await work(blocklist)

    try:
        return asyncio.run(main())
    except ServiceUnavailable:
        typer.echo("error: the shared store (REDIS_URL) did not answer; nothing was changed", err=True)
        raise typer.Exit(1) from None


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def _row(block: Block) -> dict[str, str]:
    return {
        "kind": block.kind,
        "value": block.value,
        "reason": block.reason,
        "created_at": _when(block.created_at),
        "until": _when(block.until),
    }


_HEADERS = {"kind": "KIND", "value": "VALUE", "reason": "REASON", "created_at": "CREATED", "until": "UNTIL"}


@app.command("list")
def list_blocks(
    output: Annotated[Format, typer.Option("--format", help="table or json.")] = Format.table,
) -> None:
    """List the blocks in force: kind, value, reason, when placed, until when.

    Example: bastion blocks list --format json
    """
    rows = [_row(block) for block in _run(lambda blocklist: blocklist.list())]
    show_rows(_HEADERS, rows, as_json=output is Format.json, empty="no blocks in force")


@app.command("lift")
def lift(
    kind: Annotated[BlockKind, typer.Argument(help="ip, cidr, key or user.")],
    value: Annotated[str, typer.Argument(help="The address, network, key id or user id.")],
) -> None:
    """Lift a block (audited, actor `cli`); running instances stop enforcing it within a second.

    Example: bastion blocks lift ip 203.0.113.7
    """
    try:
        identity = normalize(kind.value, value)
    except ValueError as exc:
        typer.echo(f"error: {value!r} is not a valid {kind.value} value: {exc}", err=True)
        raise typer.Exit(2) from None
    lifted = _run(lambda blocklist: blocklist.unblock(identity, actor=ACTOR, request_id=ACTOR))
    if not lifted:
        typer.echo(f"error: no block is in force for {identity}", err=True)
        raise typer.Exit(1)
    typer.echo(f"lifted {identity}")
