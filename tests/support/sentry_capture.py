# SPDX-License-Identifier: Apache-2.0
"""A local stand-in for Sentry's ingestion: accepts envelope POSTs and keeps what arrived.

A real HTTP server on a loopback port (the SDK's own transport, urllib3, talks to it), answering
``POST /api/<project>/envelope/``; bodies are kept as they would be read by Sentry, decompressed.
"""

from __future__ import annotations

import gzip
import json
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Envelope:
    path: str
    headers: dict[str, str]
    raw: bytes  # decompressed

    def items(self) -> list[tuple[dict[str, Any], bytes]]:
        """(item header, payload) pairs; the first line of an envelope is its own header."""
        raw = self.raw
        position = raw.index(b"\n") + 1 if b"\n" in raw else len(raw)
        found = []
        while position < len(raw):
            end = raw.find(b"\n", position)
            end = len(raw) if end == -1 else end
            line = raw[position:end].strip()
            position = end + 1
            if not line:
                continue
            header = json.loads(line)
            length = header.get("length")
            if length is None:
                end = raw.find(b"\n", position)
                end = len(raw) if end == -1 else end
                payload, position = raw[position:end], end + 1
            else:
                payload, position = raw[position : position + length], position + length + 1
            found.append((header, payload))
        return found

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(payload) for header, payload in self.items() if header.get("type") == "event"]


@dataclass
class CaptureServer:
    port: int
    project: str
    envelopes: list[Envelope] = field(default_factory=list)

    @property
    def dsn(self) -> str:
        return f"http://publickey@127.0.0.1:{self.port}/{self.project}"

    def events(self) -> list[dict[str, Any]]:
        return [event for envelope in list(self.envelopes) for event in envelope.events()]

    def raw(self) -> bytes:
        """Every byte that arrived, headers included, decompressed."""
        return b"".join(
            json.dumps(e.headers).encode() + e.path.encode() + e.raw for e in list(self.envelopes)
        )


def _decoded(body: bytes, encoding: str) -> bytes:
    if encoding in ("", "identity"):
        return body
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    raise ValueError(f"unexpected Content-Encoding {encoding!r}")


@contextmanager
def sentry_capture(project: str = "42") -> Iterator[CaptureServer]:
    """A capture server on a free loopback port until the block ends."""
    capture: CaptureServer | None = None

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            assert capture is not None
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path.rstrip("/") == f"/api/{project}/envelope":
                raw = _decoded(body, (self.headers.get("Content-Encoding") or "").strip().lower())
                capture.envelopes.append(Envelope(self.path, dict(self.headers.items()), raw))
                status = 200
            else:
                status = 404
            answer = b"{}"
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    capture = CaptureServer(port=server.server_address[1], project=project)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield capture
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
