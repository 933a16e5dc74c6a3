# SPDX-License-Identifier: Apache-2.0
"""A response's head and body in one system call: the transport holds a write until the next one
or the end of the event loop's turn, and never reorders, loses or delays bytes beyond that turn.

Unit tests against a recording transport, then the served protocol on a real socket: a head is
sent before a body the app has not produced yet, kept-alive and pipelined requests get whole
answers in order, and a connection the app closes gets everything written first.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from bastion.web.coalesce import CoalescingTransport
from bastion.web.header_deadline import DeadlineHttpToolsProtocol


class Recording(asyncio.Transport):
    """What reached the socket: each call, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, Any]] = []
        self.closing = False

    def write(self, data: Any) -> None:
        assert not self.closing, "written after close"
        self.calls.append(("write", bytes(data)))

    def writelines(self, list_of_data: Any) -> None:
        assert not self.closing, "written after close"
        self.calls.append(("writelines", [bytes(part) for part in list_of_data]))

    def close(self) -> None:
        self.calls.append(("close", None))
        self.closing = True

    def abort(self) -> None:
        self.calls.append(("abort", None))
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.calls.append(("set_protocol", protocol))

    def get_write_buffer_size(self) -> int:
        return 7

    def sent(self) -> bytes:
        out = b""
        for kind, data in self.calls:
            if kind == "write":
                out += data
            elif kind == "writelines":
                out += b"".join(data)
        return out


async def end_of_turn() -> None:
    await asyncio.sleep(0)
    await asyncio.sleep(0)


async def test_a_head_and_its_body_in_one_turn_are_one_call() -> None:
    inner = Recording()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())
    transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
    assert inner.calls == []  # held for the body
    transport.write(b"body")
    assert inner.calls == [("writelines", [b"HTTP/1.1 200 OK\r\n\r\n", b"body"])]
    await end_of_turn()
    assert len(inner.calls) == 1  # nothing left to send at the end of the turn


async def test_a_lone_write_goes_at_the_end_of_the_turn() -> None:
    inner = Recording()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())
    transport.write(b"head")
    assert transport.get_write_buffer_size() == 7 + 4  # held bytes count as buffered
    await end_of_turn()
    assert inner.calls == [("write", b"head")]
    # A stream: each chunk waits at most for the end of its turn, and two in a turn go together.
    transport.write(b"one")
    transport.write(b"two")
    transport.write(b"three")
    await end_of_turn()
    assert inner.sent() == b"headonetwothree"
    assert inner.calls[1:] == [("writelines", [b"one", b"two"]), ("write", b"three")]


async def test_order_is_kept_across_every_way_out() -> None:
    inner = Recording()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())
    transport.write(b"a")
    transport.writelines([b"b", b"c"])
    assert inner.sent() == b"abc"
    transport.write(b"d")
    marker = asyncio.Protocol()
    transport.set_protocol(marker)  # an upgrade: what was written first goes first
    assert inner.calls[-2:] == [("write", b"d"), ("set_protocol", marker)]
    transport.write(b"e")
    transport.close()
    assert inner.calls[-2:] == [("write", b"e"), ("close", None)]
    await end_of_turn()
    assert inner.sent() == b"abcde"


async def test_abort_drops_what_is_held_and_a_closed_socket_gets_nothing() -> None:
    inner = Recording()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())
    transport.write(b"lost")
    transport.abort()
    await end_of_turn()
    assert inner.calls == [("abort", None)]
    # Closed under it (the peer went away): the end of the turn writes nothing.
    other = Recording()
    transport = CoalescingTransport(other, asyncio.get_running_loop())
    transport.write(b"late")
    other.closing = True
    await end_of_turn()
    assert other.calls == []
    transport.write(b"")  # an empty write holds nothing
    assert transport.get_write_buffer_size() == 7


# -- served: uvicorn's own protocol with Bastion's transport, on a real socket --------------------


class Gate:
    """Set by a test to let the app go on; a new one for each test's event loop."""

    event = asyncio.Event()


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    assert scope["type"] == "http"
    path = scope["path"]
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    if path == "/wait":
        await Gate.event.wait()  # the body comes only after the client saw the head
    if path == "/stream":
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        await Gate.event.wait()
        await send({"type": "http.response.body", "body": b"second", "more_body": False})
        return
    await send({"type": "http.response.body", "body": path.encode()})


@pytest.fixture
async def port() -> AsyncIterator[int]:
    Gate.event = asyncio.Event()
    config = uvicorn.Config(app, http=DeadlineHttpToolsProtocol, loop="none", lifespan="off")
    config.load()
    state = uvicorn.server.ServerState()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: DeadlineHttpToolsProtocol(config=config, server_state=state, app_state={}), "127.0.0.1", 0
    )
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for connection in list(state.connections):
            connection.shutdown()
        await server.wait_closed()


async def read_until(reader: asyncio.StreamReader, marker: bytes) -> bytes:
    return await asyncio.wait_for(reader.readuntil(marker), 10)


@pytest.mark.parametrize(
    ("path", "before", "after"),
    [
        ("/wait", b"", b"5\r\n/wait\r\n0\r\n\r\n"),  # the head, before a body not made yet
        ("/stream", b"5\r\nfirst\r\n", b"6\r\nsecond\r\n0\r\n\r\n"),  # a chunk, before the next
    ],
)
async def test_what_the_app_sent_arrives_before_it_makes_more(
    port: int, path: str, before: bytes, after: bytes
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        head = await read_until(reader, b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"transfer-encoding: chunked" in head
        if before:
            assert await read_until(reader, before) == before
        Gate.event.set()
        assert await read_until(reader, after) == after
    finally:
        writer.close()


async def test_kept_alive_and_pipelined_requests_get_whole_answers_in_order(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for n in range(3):  # one after another on one connection
            writer.write(f"GET /one-{n} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            await read_until(reader, b"\r\n\r\n")
            assert await read_until(reader, b"0\r\n\r\n") == f"6\r\n/one-{n}\r\n0\r\n\r\n".encode()
        # Pipelined: all sent at once, answered in order.
        writer.write(b"".join(f"GET /p{n} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for n in range(5)))
        for n in range(5):
            await read_until(reader, b"\r\n\r\n")
            assert await read_until(reader, b"0\r\n\r\n") == f"3\r\n/p{n}\r\n0\r\n\r\n".encode()
        # Connection: close: the whole answer arrives before the server closes.
        writer.write(b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        rest = await asyncio.wait_for(reader.read(), 10)
        assert rest.startswith(b"HTTP/1.1 200 OK\r\n") and rest.endswith(b"5\r\n/last\r\n0\r\n\r\n")
    finally:
        writer.close()
