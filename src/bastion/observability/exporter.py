# SPDX-License-Identifier: Apache-2.0
"""PROMETHEUS_PORT: the app's registry on a second, unauthenticated listener (loopback by default).

A minimal HTTP/1.0 answerer on the app's own event loop, started and stopped by the lifespan:
``GET /metrics`` (or ``/``) gets the exposition, anything else a 404, and every connection is
closed after one answer. Running on the loop (not prometheus_client's thread server) lets a
scrape sample the gauges that need an await, as GET /metrics on the main port does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from bastion.observability.logging import get_logger
from bastion.observability.metrics import CONTENT_TYPE_LATEST, Metrics

MAX_REQUEST_HEAD_BYTES = 8192
READ_TIMEOUT_SECONDS = 5.0


class MetricsExporter:
    """Serves ``metrics`` on ``host:port`` while started."""

    def __init__(
        self,
        metrics: Metrics,
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
