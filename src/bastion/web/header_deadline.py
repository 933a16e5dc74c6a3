# SPDX-License-Identifier: Apache-2.0
"""A deadline for request headers: uvicorn has none, so a slowloris client holds a connection forever.

uvicorn (0.54 here) times out idle keep-alive connections, and Bastion's BodyLimit times out slow
bodies, but nothing bounds the time a client takes to send its request line and headers: a
connection that sends half a header, or nothing at all, stays open until the client leaves. A few
thousand of them exhaust the process's file descriptors. This subclass of uvicorn's own protocol
gives each request REQUEST_HEADER_TIMEOUT_SECONDS (the served app's setting; 10 s by default)
from its connection (on a kept-alive one, from the read that left its headers unfinished) to
finish its headers, then closes the connection; a request whose headers are complete is not
affected, however long the application takes. The timer is armed when a connection opens and
when a read leaves a request's headers unfinished: a request that arrives whole in one read
(nearly all of them) arms and cancels none, which a timer per request cost on every request.

The same protocol writes through ``CoalescingTransport`` (``bastion.web.coalesce``): a response's
head and body leave in one system call.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from bastion.web.coalesce import CoalescingTransport

HEADER_TIMEOUT_SECONDS = 10.0


def header_timeout_of(app: Any) -> float:
    """The served app's REQUEST_HEADER_TIMEOUT_SECONDS; the default for an app without Bastion's
    settings. uvicorn hands the protocol the app its factory built, in every worker, inside its
    own wrappers (proxy headers, trace logging), each keeping the app it wraps as ``app``."""
    for _ in range(4):
        settings = getattr(getattr(app, "state", None), "settings", None)
        timeout = getattr(settings, "request_header_timeout_seconds", None)
        if isinstance(timeout, int | float):
            return float(timeout)
        app = getattr(app, "app", None)
    return HEADER_TIMEOUT_SECONDS


class DeadlineHttpToolsProtocol(HttpToolsProtocol):
    header_timeout = HEADER_TIMEOUT_SECONDS
    _header_deadline: asyncio.TimerHandle | None = None
    _reading_headers = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = CoalescingTransport(transport, self.loop)
        self.header_timeout = header_timeout_of(self.app)
        self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # Headers still unfinished when this read is parsed: from now on they have the deadline.
        if self._reading_headers and self._header_deadline is None:
            self._arm_header_deadline()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading_headers = True

    def on_headers_complete(self) -> None:
        self._reading_headers = False
        self._disarm_header_deadline()
        super().on_headers_complete()

    def _arm_header_deadline(self) -> None:
        self._disarm_header_deadline()
        self._header_deadline = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if not self.transport.is_closing():
            self.transport.close()


# What `bastion serve` passes to uvicorn for plain HTTP.
PROTOCOL = "bastion.web.header_deadline:DeadlineHttpToolsProtocol"
