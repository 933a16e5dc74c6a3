# SPDX-License-Identifier: Apache-2.0
"""The header deadline of `bastion serve` is the served app's REQUEST_HEADER_TIMEOUT_SECONDS.

uvicorn gives the protocol the app its factory built, in every worker; the protocol arms each
connection's deadline from that app's settings (the default for an app without them).
"""

from __future__ import annotations

import asyncio
import socket
from types import SimpleNamespace

import uvicorn
from fastapi import FastAPI

from bastion.app import create_app
from bastion.web.coalesce import CoalescingTransport
from bastion.web.header_deadline import HEADER_TIMEOUT_SECONDS, DeadlineHttpToolsProtocol, header_timeout_of
from tests.conftest import SettingsFactory


def test_the_timeout_is_the_served_apps_setting(make_settings: SettingsFactory) -> None:
    assert header_timeout_of(create_app(make_settings(REQUEST_HEADER_TIMEOUT_SECONDS=2.5))) == 2.5
    assert header_timeout_of(create_app(make_settings())) == HEADER_TIMEOUT_SECONDS == 10.0
    assert header_timeout_of(FastAPI()) == HEADER_TIMEOUT_SECONDS  # not Bastion's: the default
    assert header_timeout_of(object()) == HEADER_TIMEOUT_SECONDS


async def test_a_connection_is_armed_with_the_apps_timeout(make_settings: SettingsFactory) -> None:
    app = create_app(make_settings(REQUEST_HEADER_TIMEOUT_SECONDS=3))
    config = uvicorn.Config(app, http=DeadlineHttpToolsProtocol, loop="none", lifespan="off")
    config.load()
    armed: list[DeadlineHttpToolsProtocol] = []

    def protocol() -> DeadlineHttpToolsProtocol:
        state = uvicorn.server.ServerState()
        made = DeadlineHttpToolsProtocol(config=config, server_state=state, app_state={})
        armed.append(made)
        return made

    loop = asyncio.get_running_loop()
    server = await loop.create_server(protocol, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with socket.create_connection(("127.0.0.1", port)):
            for _ in range(500):  # until the server side has taken the connection
                if armed:
                    break
                await asyncio.sleep(0.01)
            [connection] = armed
            assert connection._header_deadline is not None and connection.header_timeout == 3.0
    finally:
        server.close()
        await server.wait_closed()


async def test_a_kept_alive_request_that_stalls_in_its_headers_is_closed() -> None:
    """A request whose headers arrive whole arms no timer; the deadline is armed when a turn ends
    with a request's headers unfinished, on a kept-alive connection as on a new one."""
    app = FastAPI()
    app.state.settings = SimpleNamespace(request_header_timeout_seconds=0.2)

    @app.get("/")
    async def root() -> dict[str, bool]:
        return {"ok": True}

    config = uvicorn.Config(app, http=DeadlineHttpToolsProtocol, loop="none", lifespan="off")
    config.load()
    made: list[DeadlineHttpToolsProtocol] = []

    def protocol() -> DeadlineHttpToolsProtocol:
        made.append(
            DeadlineHttpToolsProtocol(config=config, server_state=uvicorn.server.ServerState(), app_state={})
        )
        return made[-1]

    server = await asyncio.get_running_loop().create_server(protocol, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for _ in range(3):
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            await asyncio.wait_for(reader.readuntil(b'{"ok":true}'), 10)
            [connection] = made
            assert connection._header_deadline is None
            assert isinstance(connection.transport, CoalescingTransport)  # head and body in one write
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: aaaa")
        assert await asyncio.wait_for(reader.read(), 30) == b""  # closed by the server, nothing sent
        assert connection.transport.is_closing()
    finally:
        writer.close()
        server.close()
        await server.wait_closed()
