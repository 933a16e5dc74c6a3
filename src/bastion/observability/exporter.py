# SPDX-License-Identifier: Apache-2.0
"""PROMETHEUS_PORT: the app's registry on a second, unauthenticated listener (loopback by default).

A minimal HTTP/1.0 answerer on the app's own event loop, started and stopped by the lifespan:
``GET /metrics`` (or ``/``) gets the exposition, anything else a 404, and every connection is
closed after one answer. Running on the loop (not prometheus_client's thread server) lets a
scrape sample the gauges that need an await, as GET /metrics on the main port does.

With several workers the listener belongs to ``bastion serve``'s supervising process instead
(``ExporterThread``): one socket bound once, serving the merge of every worker's files, where a
listener per worker would each try to bind the one port.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable
from typing import Any

from bastion.observability.logging import get_logger
from bastion.observability.metrics import CONTENT_TYPE_LATEST, Exposition

MAX_REQUEST_HEAD_BYTES = 8192
READ_TIMEOUT_SECONDS = 5.0


class MetricsExporter:
    """Serves ``metrics`` on ``host:port`` while started."""

    def __init__(
        self,
        metrics: Exposition,
        state: Any,
        *,
        host: str,
        port: int,
        extra_headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        self.metrics = metrics
        # Operator headers (LICENSE_HEADER: LICENSE_URL), validated by the settings, as on the main port.
        self.extra = b"".join(f"{name}: {value}\r\n".encode("latin-1") for name, value in extra_headers)
        self.state = state
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None
        self.log = get_logger("bastion.metrics")

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._answer, self.host, self.port, limit=MAX_REQUEST_HEAD_BYTES
        )
        self.log.info("metrics_listener_started", host=self.host, port=self.port)

    def sockets(self) -> list[Any]:
        """The listening sockets (empty when stopped)."""
        return list(self._server.sockets) if self._server is not None else []

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(READ_TIMEOUT_SECONDS):
                head = await reader.readuntil(b"\r\n\r\n")
            method, _, rest = head.partition(b" ")
            path = rest.partition(b" ")[0].partition(b"?")[0]
            if method in (b"GET", b"HEAD") and path in (b"/metrics", b"/"):
                await self.metrics.sample(self.state)
                body = self.metrics.render()
                status, content_type = b"200 OK", CONTENT_TYPE_LATEST.encode()
            else:
                body, status, content_type = b"Not found\n", b"404 Not Found", b"text/plain; charset=utf-8"
            writer.write(
                b"HTTP/1.0 "
                + status
                + b"\r\nContent-Type: "
                + content_type
                + b"\r\nContent-Length: "
                + str(len(body)).encode()
                + b"\r\nCache-Control: no-store\r\nConnection: close\r\n"
                + self.extra
                + b"\r\n"
                + (b"" if method == b"HEAD" else body)
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass  # a slow, oversized or vanished scraper gets nothing
        finally:
            writer.close()


class ExporterThread:
    """A ``MetricsExporter`` on an event loop of its own thread, for a process that runs no loop.

    ``start`` binds before it returns (a port in use raises ``OSError`` there, in the caller);
    ``stop`` closes the listener and ends the thread.
    """

    def __init__(self, exporter: MetricsExporter) -> None:
        self.exporter = exporter
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="bastion-metrics", daemon=True)

    def start(self) -> None:
        try:
            self._loop.run_until_complete(self.exporter.start())
        except BaseException:
            self._loop.close()
            raise
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        if not self._thread.is_alive():
            return
        closing = asyncio.run_coroutine_threadsafe(self.exporter.aclose(), self._loop)
        try:
            closing.result(timeout)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)
            if not self._thread.is_alive():
                self._loop.close()
