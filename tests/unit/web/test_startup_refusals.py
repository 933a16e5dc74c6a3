# SPDX-License-Identifier: Apache-2.0
"""A refusal while starting reaches the server as one line; any other failure keeps its traceback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.types import Message

from bastion.settings import ConfigurationError
from bastion.web.startup_refusals import StartupRefusals


async def start(failure: BaseException | None) -> tuple[list[Message], BaseException | None]:
    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        if failure is not None:
            raise failure
        yield

    app = StartupRefusals(Starlette(lifespan=lifespan))
    sent: list[Message] = []
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]

    async def receive() -> Message:
        return incoming.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    try:
        await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)
    except BaseException as exc:
        return sent, exc
    return sent, None


async def test_a_configuration_refusal_is_one_line() -> None:
    refusal = ConfigurationError(["DATABASE_ENCRYPTION_KEY lacks key id 'old'"], heading="Bastion refuses")
    sent, raised = await start(refusal)
    assert raised is refusal
    assert sent == [
        {
            "type": "lifespan.startup.failed",
            "message": "Bastion refuses: DATABASE_ENCRYPTION_KEY lacks key id 'old'",
        }
    ]


async def test_any_other_failure_keeps_its_traceback() -> None:
    sent, raised = await start(RuntimeError("boom"))
    assert isinstance(raised, RuntimeError)
    [failed] = sent
    assert failed["type"] == "lifespan.startup.failed"
    assert "Traceback" in failed["message"] and "boom" in failed["message"]


async def test_a_clean_start_and_stop_pass_through() -> None:
    sent, raised = await start(None)
    assert raised is None
    assert [message["type"] for message in sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]
