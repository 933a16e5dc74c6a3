# SPDX-License-Identifier: Apache-2.0
"""HTTP/1.1 POSTs to the model endpoint over pooled keep-alive connections (``EndpointClient``).

The model call is the one network round trip on every chat message's path, and the client's own
work is latency added to each message. aiohttp, the general-purpose client used before, spent
about 190 µs of the event loop's CPU on a small completion call (URL objects, header multidicts,
cookie jar, tracing hooks, a timer per read); this client, an ``asyncio.Protocol`` around
httptools' response parser (the parser uvicorn uses for requests), spends about 60-90 µs on the same
call, and the answer comes back about 0.1 ms sooner (``bench/model_client.py``). It does only
what the endpoint needs, and refuses the rest:

- one origin, ``http`` or ``https`` (certificates verified by the caller's ``ssl`` context), no
  credentials in the URL, no proxy, no redirects (an answer is what it is), no decompression
  (the caller asks for ``identity``);
- requests with a known length; the answer's end from its ``Content-Length``, its chunked
  encoding or, failing both, the end of its connection (a streamed completion);
- a connection is reused only after an answer read to its end that allows it, within
  ``keepalive`` seconds; anything else (an error, a timeout, an answer left unread, a caller
  cancelled) closes it;
- at most ``max_connections`` at once; waiting for one, and opening one, is bounded by the connect
  timeout, and each wait for the endpoint's next bytes by the read timeout, as before.

Failures are ``OSError``s, as the caller's classification expects: ``TimeoutError`` for a timeout,
``ConnectionError`` (``BrokenAnswer``) for a dropped connection or an answer that is not HTTP.
Bodies are delivered as they arrive, with the socket's reading paused while more than
``HIGH_WATER`` bytes wait for the caller.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import cast
from urllib.parse import urlsplit

import httptools

#: Bytes received and not yet taken by the caller above which the socket stops being read.
HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024
#: The most an answer's status line and headers may take (the parser keeps a header it has not
#: finished in memory, so an endless one is cut off here).
MAX_HEAD_BYTES = 64 * 1024


class BrokenAnswer(ConnectionError):
    """The connection dropped before the answer ended, or what came back is not an HTTP answer."""


class _Connection(asyncio.Protocol):
    """One connection to the endpoint and the answer it is reading."""

    def __init__(self, loop: asyncio.AbstractEventLoop, read_timeout: float) -> None:
        self._loop = loop
        self._read_timeout = read_timeout  # each wait for the endpoint's next bytes
        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._expecting = False  # a request is out and its answer not over
        self._head_done = False
        self._head_bytes = 0
        self._delimited = False  # the answer's end is in its bytes (length or chunks), not its connection's
        self.complete = False
        self._keep_alive = False  # the answer lets the connection carry another (read when it ends)
        self.error: BaseException | None = None

    # -- asyncio ------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if not self._expecting or self.complete:
            self._fail(BrokenAnswer("bytes arrived that no request asked for"))
            return
        if not self._head_done:  # bytes fed while the headers are not complete: bounded
            if self._head_bytes > MAX_HEAD_BYTES:
                self._fail(BrokenAnswer("the answer's headers are too long"))
                return
            self._head_bytes += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:  # an upgrade included: never asked for
            self._fail(BrokenAnswer(f"not an HTTP answer ({type(exc).__name__})"))

    def eof_received(self) -> bool:
        return False  # the transport closes itself; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._expecting and not self.complete and self.error is None:
            if exc is None and self._head_done and not self._delimited:
                self.complete = True  # an answer delimited by the end of its connection
            else:
                self.error = exc or BrokenAnswer("the connection closed before the answer ended")
        self._wake()

    # -- httptools ----------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.complete:  # a second answer in the same bytes as the first
            raise BrokenAnswer("an answer arrived that no request asked for")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 200:
            raise BrokenAnswer(f"interim answer {status}")  # never asked for (no Expect sent)
        self.status = status
        chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
        self._delimited = chunked or "content-length" in self.headers or status in (204, 304)
        self._head_done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        self.complete = True
        self._keep_alive = self._parser.should_keep_alive()  # the parser forgets once this returns
        self._wake()

    # -- the caller's side --------------------------------------------------------------------

    def send(self, request: bytes) -> None:
        self._reset()
        self._expecting = True
        cast(asyncio.Transport, self.transport).write(request)  # set once connected

    async def head(self) -> None:
        """Wait until the answer's status line and headers have arrived."""
        while not self._head_done:
            if self.error is not None:
                raise self.error
            if self.complete:  # ended by its connection before any header
                raise BrokenAnswer("the connection closed before the answer began")
            await self._wait()

    async def chunk(self) -> bytes | None:
        """The answer's next bytes; None at its end."""
        while True:
            if self._chunks:
                chunk = self._chunks.popleft()
                self._buffered -= len(chunk)
                if self._paused and self._buffered < LOW_WATER and self.transport is not None:
                    self._paused = False
                    self.transport.resume_reading()
                return chunk
            if self.complete:  # whatever broke after the end does not undo the answer
                return None
            if self.error is not None:
                raise self.error
            await self._wait()

    @property
    def reusable(self) -> bool:
        """Read to its end, nothing broke, and the endpoint keeps the connection open."""
        return (
            self.complete and self.error is None and not self.closed and not self._chunks and self._keep_alive
        )

    @property
    def open(self) -> bool:
        return not self.closed and self.transport is not None and not self.transport.is_closing()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
        self.close()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self) -> None:
        waiter = self._waiter = self._loop.create_future()
        timer = self._loop.call_later(self._read_timeout, self._time_out, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def _time_out(self, waiter: asyncio.Future[None]) -> None:
        if not waiter.done():
            self.error = TimeoutError()
            waiter.set_exception(TimeoutError())


class Answer:
    """An answer whose status line and headers have arrived; its body is read with ``chunks``."""

    def __init__(self, connection: _Connection) -> None:
        self._connection = connection
        self.status = connection.status
        #: header names lower-cased; a repeated header keeps its last value
        self.headers = connection.headers

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives (chunked encoding removed), each wait bounded by the read timeout."""
        while (chunk := await self._connection.chunk()) is not None:
            yield chunk


class EndpointClient:
    """POSTs to one origin over at most ``max_connections`` pooled connections (see the module)."""

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str],
        connect_timeout: float,
        socket_connect_timeout: float,
        read_timeout: float,
        max_connections: int,
        keepalive: float,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("the endpoint must be an http:// or https:// URL with a host")
        if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
            raise ValueError("the endpoint URL may not carry credentials, a query or a fragment")
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl = (ssl_context or ssl.create_default_context()) if parts.scheme == "https" else None
        self._prefix = parts.path.rstrip("/")
        host = f"[{self._host}]" if ":" in self._host else self._host
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        lines = [("Host", host), *headers.items()]
        for name, value in lines:
            if any(c in f"{name}{value}" for c in "\r\n\0") or ":" in name:
                raise ValueError(f"header {name!r} may not hold line breaks")
        self._head = "".join(f"{name}: {value}\r\n" for name, value in lines)
        self.connect_timeout = connect_timeout
        self.socket_connect_timeout = socket_connect_timeout
        self.read_timeout = read_timeout
        self.keepalive = keepalive
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: list[_Connection] = []

    @asynccontextmanager
    async def post(self, path: str, body: bytes, content_type: str) -> AsyncIterator[Answer]:
        """POST ``body`` to ``path`` (under the endpoint's own path); the answer once its headers
        arrived. The connection goes back to the pool when the block ends with the answer read to
        its end; otherwise it is closed."""
        if any(c in f"{path}{content_type}" for c in "\r\n\0 "):
            raise ValueError("path and content type may not hold spaces or line breaks")
        request = (
            f"POST {self._prefix}{path} HTTP/1.1\r\n{self._head}Content-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode("latin-1") + body
        connection = await self._acquire()
        try:
            connection.send(request)
            await connection.head()
            yield Answer(connection)
        finally:
            self._release(connection)

    async def _acquire(self) -> _Connection:
        if self._slots.locked():  # all in use: wait for one, within the connect timeout
            try:
                async with asyncio.timeout(self.connect_timeout):
                    await self._slots.acquire()
            except TimeoutError:
                raise TimeoutError("no connection to the endpoint came free in time") from None
        else:
            await self._slots.acquire()  # free: taken at once
        try:
            now = time.monotonic()
            while self._idle:
                connection = self._idle.pop()
                if connection.open and now - connection.idle_since < self.keepalive:
                    return connection
                connection.close()
            return await self._connect()
        except BaseException:
            self._slots.release()
            raise

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(min(self.connect_timeout, self.socket_connect_timeout)):
            _, connection = await loop.create_connection(
                lambda: _Connection(loop, self.read_timeout),
                self._host,
                self._port,
                ssl=self._ssl,
                server_hostname=self._host if self._ssl is not None else None,
            )
        return connection

    def _release(self, connection: _Connection) -> None:
        self._slots.release()
        if connection.reusable:
            connection.idle_since = time.monotonic()
            self._idle.append(connection)
        else:
            connection.close()

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()
        await asyncio.sleep(0)  # let the transports finish closing on this turn of the loop
