# SPDX-License-Identifier: Apache-2.0
"""The model endpoint's HTTP client against a scripted server on loopback: what it sends, how it
finds an answer's end (length, chunks, the connection's end), when a connection is reused and when
it is closed (errors, timeouts, answers left unread, callers cancelled, bytes nobody asked for),
the pool's bound, TLS verification, and the inputs it refuses."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bastion.llm.transport import BrokenAnswer, EndpointClient
from tests.support.pki import TestCA

JSON = "application/json"
OK = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"ok":true}'

#: A scripted answer: given the request's head and body, write to the connection; return whether
#: the server keeps the connection for another request.
Script = Callable[[bytes, bytes, asyncio.StreamWriter], Awaitable[bool]]


@dataclass
class Server:
    """A loopback HTTP server answering each request with the next script (OK once they run out)."""

    scripts: list[Script] = field(default_factory=list)
    requests: list[tuple[bytes, bytes]] = field(default_factory=list)
    connections: int = 0
    port: int = 0
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length)
                self.requests.append((head, body))
                script = self.scripts.pop(0) if self.scripts else answer(OK)
                if not await script(head, body, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def answer(raw: bytes, *, keep: bool = True) -> Script:
    async def script(_head: bytes, _body: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(raw)
        await writer.drain()
        return keep

    return script


def silence(seconds: float) -> Script:
    async def script(_head: bytes, _body: bytes, _writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(seconds)
        return False

    return script


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    state = Server()
    listening = await asyncio.start_server(state.handle, "127.0.0.1", 0)
    state.port = listening.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        listening.close()
        for writer in state.writers:
            writer.transport.abort()
        await listening.wait_closed()


def client(port: int, *, scheme: str = "http", path: str = "/v1", **options: object) -> EndpointClient:
    settings: dict[str, object] = {
        "headers": {"Authorization": "Bearer sk-test", "Accept-Encoding": "identity"},
        "connect_timeout": 2.0,
        "socket_connect_timeout": 2.0,
        "read_timeout": 2.0,
        "max_connections": 4,
        "keepalive": 5.0,
        **options,
    }
    return EndpointClient(f"{scheme}://127.0.0.1:{port}{path}", **settings)  # type: ignore[arg-type]


async def post(endpoint: EndpointClient, body: bytes = b'{"q":1}') -> tuple[int, dict[str, str], bytes]:
    async with endpoint.post("/chat/completions", body, JSON) as reply:
        return reply.status, dict(reply.headers), b"".join([chunk async for chunk in reply.chunks()])


async def test_a_post_carries_its_path_host_headers_and_body_and_keeps_the_connection(server: Server) -> None:
    endpoint = client(server.port)
    for _ in range(3):
        assert await post(endpoint) == (
            200,
            {"content-type": JSON, "content-length": "11"},
            b'{"ok":true}',
        )
    assert server.connections == 1
    head, body = server.requests[0]
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /v1/chat/completions HTTP/1.1"
    assert {f"Host: 127.0.0.1:{server.port}", "Authorization: Bearer sk-test"} <= set(lines)
    assert {"Accept-Encoding: identity", f"Content-Type: {JSON}", "Content-Length: 7"} <= set(lines)
    assert body == b'{"q":1}'
    await endpoint.aclose()


async def test_a_chunked_answer_is_decoded_and_its_connection_reused(server: Server) -> None:
    chunked = b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{"a"\r\n6\r\n:"b"}\n\r\n0\r\n\r\n'
    server.scripts = [answer(chunked)]
    endpoint = client(server.port)
    assert (await post(endpoint))[2] == b'{"a":"b"}\n'
    assert (await post(endpoint))[2] == b'{"ok":true}'
    assert server.connections == 1


@pytest.mark.parametrize(
    ("raw", "keep", "body"),
    [
        (
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: 1\n\ndata: 2\n\n",
            False,
            b"data: 1\n\ndata: 2\n\n",
        ),
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", True, b"ok"),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", True, b"ok"),
    ],
    ids=["ended-by-its-connection", "connection-close", "http-1.0"],
)
async def test_an_answer_that_does_not_keep_its_connection_is_read_whole_and_a_new_one_made_next(
    server: Server, raw: bytes, keep: bool, body: bytes
) -> None:
    """A streamed completion ends with its connection; others may say they close it."""
    server.scripts = [answer(raw, keep=keep)]
    endpoint = client(server.port)
    assert (await post(endpoint))[2] == body
    assert (await post(endpoint))[2] == b'{"ok":true}'
    assert server.connections == 2


async def test_a_connection_dropped_mid_answer_is_a_broken_answer_and_never_reused(server: Server) -> None:
    server.scripts = [answer(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"partial', keep=False)]
    endpoint = client(server.port)
    with pytest.raises(BrokenAnswer):
        await post(endpoint)
    assert (await post(endpoint))[0] == 200
    assert server.connections == 2


@pytest.mark.parametrize(
    "raw",
    [
        b"SMTP ready\r\n\r\n",
        b"HTTP/1.1 2xx OK\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
    ],
    ids=["not-http", "bad-status", "interim", "upgrade", "two-lengths"],
)
async def test_what_is_not_a_plain_http_answer_is_refused_and_its_connection_closed(
    server: Server, raw: bytes
) -> None:
    server.scripts = [answer(raw)]
    endpoint = client(server.port)
    with pytest.raises(BrokenAnswer):
        await post(endpoint)
    assert (await post(endpoint))[0] == 200
    assert server.connections == 2


async def test_endless_headers_are_cut_off(server: Server) -> None:
    async def endless(_head: bytes, _body: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nX-Padding: ")
        for _ in range(64):  # 4 MiB of one header, never finished
            writer.write(b"a" * 65536)
            await writer.drain()
        return False

    server.scripts = [endless]
    with pytest.raises(BrokenAnswer, match="too long"):
        await post(client(server.port))


async def test_an_endpoint_that_stays_silent_times_out_and_its_connection_is_closed(server: Server) -> None:
    server.scripts = [silence(5)]
    endpoint = client(server.port, read_timeout=0.1)
    with pytest.raises(TimeoutError):
        await post(endpoint)
    assert (await post(endpoint))[0] == 200
    assert server.connections == 2


async def test_a_body_that_stalls_midway_times_out(server: Server) -> None:
    async def stalls(_head: bytes, _body: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        await writer.drain()
        await asyncio.sleep(5)
        return False

    server.scripts = [stalls]
    endpoint = client(server.port, read_timeout=0.1)
    async with endpoint.post("/chat/completions", b"{}", JSON) as reply:
        with pytest.raises(TimeoutError):
            [chunk async for chunk in reply.chunks()]


async def test_an_answer_left_unread_closes_its_connection(server: Server) -> None:
    server.scripts = [answer(b"HTTP/1.1 500 X\r\nContent-Length: 100000\r\n\r\n" + b"x" * 100_000)]
    endpoint = client(server.port)
    async with endpoint.post("/chat/completions", b"{}", JSON) as reply:
        assert reply.status == 500  # the caller walks away without the body
    assert (await post(endpoint))[0] == 200
    assert server.connections == 2


async def test_a_caller_cancelled_mid_answer_frees_its_slot_and_closes_its_connection(server: Server) -> None:
    server.scripts = [silence(5)]
    endpoint = client(server.port, max_connections=1)
    waiting = asyncio.create_task(post(endpoint))
    while not server.requests:
        await asyncio.sleep(0.01)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert (await asyncio.wait_for(post(endpoint), 2))[0] == 200  # the one slot came back
    assert server.connections == 2


async def test_the_pool_holds_at_most_max_connections_and_the_wait_is_bounded(server: Server) -> None:
    release = asyncio.Event()

    async def held(_head: bytes, _body: bytes, writer: asyncio.StreamWriter) -> bool:
        await release.wait()
        writer.write(OK)
        await writer.drain()
        return True

    server.scripts = [held, held]
    endpoint = client(server.port, max_connections=2, connect_timeout=0.2)
    first, second = asyncio.create_task(post(endpoint)), asyncio.create_task(post(endpoint))
    while len(server.requests) < 2:
        await asyncio.sleep(0.01)
    with pytest.raises(TimeoutError, match="came free"):
        await post(endpoint)  # a third waits for a slot, within the connect timeout
    release.set()
    assert [(await first)[0], (await second)[0]] == [200, 200]
    results = await asyncio.gather(*(post(endpoint) for _ in range(6)))
    assert {status for status, _, _ in results} == {200}
    assert server.connections == 2  # six more calls over the two pooled connections


async def test_an_idle_connection_past_its_keepalive_is_replaced(server: Server) -> None:
    endpoint = client(server.port, keepalive=0.05)
    assert (await post(endpoint))[0] == 200
    await asyncio.sleep(0.1)
    assert (await post(endpoint))[0] == 200
    assert server.connections == 2


async def test_bytes_on_an_idle_connection_drop_it(server: Server) -> None:
    async def twice(_head: bytes, _body: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(OK + b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")  # one answer too many
        await writer.drain()
        return True

    server.scripts = [twice]
    endpoint = client(server.port)
    assert (await post(endpoint))[2] == b'{"ok":true}'
    await asyncio.sleep(0.05)
    assert (await post(endpoint))[2] == b'{"ok":true}'
    assert server.connections == 2


async def test_a_large_body_read_slowly_arrives_whole(server: Server) -> None:
    size = 3 * 1024 * 1024
    payload = bytes(range(256)) * (size // 256)
    server.scripts = [answer(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size + payload)]
    endpoint = client(server.port)
    received = bytearray()
    async with endpoint.post("/chat/completions", b"{}", JSON) as reply:
        async for chunk in reply.chunks():
            received += chunk
            await asyncio.sleep(0)  # slower than the socket: reading pauses and resumes
    assert bytes(received) == payload


async def test_a_refused_connection_is_an_os_error() -> None:
    listening = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    listening.close()
    await listening.wait_closed()
    with pytest.raises(OSError):
        await post(client(port))


@pytest.mark.parametrize(
    ("url", "headers"),
    [
        ("ftp://127.0.0.1/v1", {}),
        ("http:///v1", {}),
        ("http://user:pass@127.0.0.1/v1", {}),  # pragma: allowlist secret (a URL the client refuses)
        ("http://127.0.0.1/v1?key=1", {}),
        ("http://127.0.0.1/v1", {"Authorization": "Bearer x\r\nX-Injected: 1"}),
        ("http://127.0.0.1/v1", {"Bad:Name": "x"}),
    ],
    ids=["scheme", "no-host", "credentials", "query", "crlf-value", "colon-name"],
)
def test_an_endpoint_or_header_that_could_smuggle_a_request_is_refused(
    url: str, headers: dict[str, str]
) -> None:
    with pytest.raises(ValueError):
        EndpointClient(
            url,
            headers=headers,
            connect_timeout=1,
            socket_connect_timeout=1,
            read_timeout=1,
            max_connections=1,
            keepalive=1,
        )


async def test_a_path_with_a_line_break_is_refused_before_anything_is_sent(server: Server) -> None:
    endpoint = client(server.port)
    with pytest.raises(ValueError):
        async with endpoint.post("/chat\r\nX: 1", b"{}", JSON):
            pass
    assert server.connections == 0


async def test_https_verifies_the_endpoints_certificate(tmp_path: Path) -> None:
    authority = TestCA(tmp_path)
    issued = authority.issue("server", "localhost", dns=("localhost",))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(issued.cert, issued.key)
    state = Server()
    listening = await asyncio.start_server(state.handle, "127.0.0.1", 0, ssl=context)
    port = listening.sockets[0].getsockname()[1]
    try:
        trusting = client(
            port, scheme="https", ssl_context=ssl.create_default_context(cafile=str(authority.files.cert))
        )
        assert await post(trusting) == (200, {"content-type": JSON, "content-length": "11"}, b'{"ok":true}')
        assert await post(trusting) == (200, {"content-type": JSON, "content-length": "11"}, b'{"ok":true}')
        assert state.connections == 1
        await trusting.aclose()
        with pytest.raises(ssl.SSLCertVerificationError):
            await post(client(port, scheme="https", ssl_context=ssl.create_default_context()))
    finally:
        listening.close()
        for writer in state.writers:
            writer.transport.abort()
        await listening.wait_closed()
