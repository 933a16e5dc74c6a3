# SPDX-License-Identifier: Apache-2.0
"""A local fake OpenAI-compatible server for fault injection, over real TCP.

It is a small HTTP/1.1 server on asyncio streams (not a framework) so a test can make it do what
real providers do on bad days: answer slowly, fail with 500 or 429 and Retry-After, drop the
connection without a word, or stream part of a reply and then cut the connection.

    upstream = FakeUpstream().start()
    upstream.script(Fault.status(500), Fault.status(500))   # next two requests fail, then normal
    upstream.script(Fault.reply("Sure: bst-ca", "nary-..."))  # a scripted reply, streamed as these chunks
    upstream.failing(Fault.status_code(503), Fault.drop())   # every request fails, in turn, until
    upstream.failing()                                      # ...this: an outage of unknown length
    FakeUpstream(keep_alive=True)                           # answers of known length keep the connection
    ... point a provider at upstream.base_url ...
    assert upstream.count("/v1/chat/completions") == 3
"""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from tests.support.servers import free_port

SECRET_IN_ERROR = "upstream-internal-detail-sk-leak-000"


@dataclass(frozen=True)
class Fault:
    # ok | reply | status | slow | drop | stream_break | garbage | slow_stream | huge | long_refusal | gzipped
    kind: str = "ok"
    status: int = 200
    delay: float = 0.0
    retry_after: str | None = None
    chunks_before_break: int = 2
    chunks: tuple[str, ...] = ()

    @classmethod
    def reply(cls, *chunks: str) -> Fault:
        """Answer with these words: a stream sends exactly these chunks, a completion or a
        transcription their concatenation."""
        return cls("reply", chunks=chunks)

    @classmethod
    def status_code(cls, status: int, retry_after: str | None = None) -> Fault:
        return cls("status", status=status, retry_after=retry_after)

    @classmethod
    def slow(cls, delay: float) -> Fault:
        return cls("slow", delay=delay)

    @classmethod
    def drop(cls) -> Fault:
        return cls("drop")

    @classmethod
    def stream_break(cls, after: int = 2) -> Fault:
        return cls("stream_break", chunks_before_break=after)

    @classmethod
    def slow_stream(cls, delay: float) -> Fault:
        """Stream normally but wait ``delay`` seconds between chunks."""
        return cls("slow_stream", delay=delay)

    @classmethod
    def huge(cls, size: int) -> Fault:
        """Answer 200 with a body (or, when streaming, one endless line) of ``size`` bytes."""
        return cls("huge", status=size)

    @classmethod
    def long_refusal(cls, size: int) -> Fault:
        """Answer 400 with an error page of ``size`` bytes, written as fast as the client reads it
        (``FakeUpstream.refusal_sent`` counts what was written)."""
        return cls("long_refusal", status=size)

    @classmethod
    def gzipped(cls) -> Fault:
        """Answer a completion gzip-compressed, whatever the request's Accept-Encoding said."""
        return cls("gzipped")

    @classmethod
    def garbage(cls) -> Fault:
        return cls("garbage")


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)

    def json(self) -> Any:
        return json.loads(self.body)


class FakeUpstream:
    def __init__(self, *, reply: str | None = None, keep_alive: bool = False) -> None:
        """``keep_alive``: answers of known length leave the connection open for the next request,
        as real providers do (streams, drops and floods still end theirs); by default every answer
        closes its connection."""
        self.port = free_port()
        self.reply = reply
        self.keep_alive = keep_alive
        self.connections = 0  # accepted so far
        self.refusal_sent = 0  # bytes of long refusals written so far
        self.requests: list[Recorded] = []
        self._script: deque[Fault] = deque()
        self._outage: tuple[Fault, ...] = ()
        self._outage_calls = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def script(self, *faults: Fault) -> None:
        with self._lock:
            self._script.extend(faults)

    def failing(self, *faults: Fault) -> None:
        """Answer every unscripted request with ``faults`` in turn until called with none."""
        with self._lock:
            self._outage = faults
            self._outage_calls = 0

    def count(self, path: str = "/v1/chat/completions") -> int:
        return sum(1 for r in self.requests if r.path == path)

    def _next(self) -> Fault:
        with self._lock:
            if self._script:
                return self._script.popleft()
            if self._outage:
                self._outage_calls += 1
                return self._outage[self._outage_calls % len(self._outage)]
            return Fault()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FakeUpstream:
        self._thread = threading.Thread(target=self._run, name="fake-upstream", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake upstream did not start")
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop

        async def serve() -> None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
            self._ready.set()
            async with self._server:
                await self._server.serve_forever()

        try:
            loop.run_until_complete(serve())
        except asyncio.CancelledError:
            pass
        finally:
            loop.close()

    def stop(self) -> None:
        if self._loop is not None and self._server is not None:
            loop, server = self._loop, self._server

            def close() -> None:
                server.close()
                for task in asyncio.all_tasks(loop):
                    task.cancel()

            loop.call_soon_threadsafe(close)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # -- HTTP --------------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _version = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
                self.requests.append(Recorded(method, path, headers, body))
                reusable = await self._respond(self._next(), path, body, writer)
                if not (reusable and self.keep_alive and headers.get("connection", "").lower() != "close"):
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except asyncio.CancelledError:
            pass  # stopped while a kept-alive connection waited for its next request
        finally:
            writer.close()

    async def _respond(self, fault: Fault, path: str, body: bytes, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; whether the connection may carry another (a length-delimited answer)."""
        if fault.kind == "drop":
            writer.transport.abort()
            return False
        if fault.kind == "slow":
            await asyncio.sleep(fault.delay)
        if fault.kind == "status":
            extra = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            error = {"error": {"message": f"failure with {SECRET_IN_ERROR}", "type": "server_error"}}
            await self._send(writer, fault.status, json.dumps(error).encode(), extra)
            return True
        if fault.kind == "huge":
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
                b'data: {"choices": [{"delta": {"content": "'
            )
            sent = 0
            block = b"x" * 65536
            while sent < fault.status:
                writer.write(block)
                sent += len(block)
                await writer.drain()
            return False
        if fault.kind == "long_refusal":
            head = f"HTTP/1.1 400 X\r\nContent-Type: text/html\r\nContent-Length: {fault.status}\r\n\r\n"
            writer.write(head.encode())
            block = b"x" * 65536
            while self.refusal_sent < fault.status:
                writer.write(block)
                self.refusal_sent += len(block)
                await writer.drain()
            return True
        if fault.kind == "garbage":
            await self._send(writer, 200, b"<html>not json</html>", {"Content-Type": "text/html"})
            return True
        scripted = "".join(fault.chunks) if fault.kind == "reply" else None
        if path.endswith("/audio/transcriptions"):
            text = scripted if scripted is not None else "transcribed words from audio"
            await self._send(writer, 200, json.dumps({"text": text}).encode())
            return True
        if path.endswith("/models"):
            await self._send(
                writer, 200, json.dumps({"object": "list", "data": [{"id": "fake-model"}]}).encode()
            )
            return True
        request = json.loads(body or b"{}")
        content = scripted if scripted is not None else self.reply or self._echo(request)
        if request.get("stream"):
            await self._stream(writer, request, content, fault)
            return False
        completion = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.get("model", "fake-model"),
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 11, "completion_tokens": len(content.split()), "total_tokens": 0},
        }
        if fault.kind == "gzipped":
            packed = gzip.compress(json.dumps(completion).encode())
            await self._send(writer, 200, packed, {"Content-Encoding": "gzip"})
            return True
        await self._send(writer, 200, json.dumps(completion).encode())
        return True

    @staticmethod
    def _echo(request: dict[str, Any]) -> str:
        messages = request.get("messages") or [{}]
        return f"echo: {messages[-1].get('content', '')}"

    async def _stream(
        self, writer: asyncio.StreamWriter, request: dict[str, Any], content: str, fault: Fault
    ) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Cache-Control: no-cache\r\nConnection: close\r\n\r\n"
        )
        words = content.split(" ")
        pieces = list(fault.chunks) or [
            word if index == 0 else f" {word}" for index, word in enumerate(words)
        ]
        for index, piece in enumerate(pieces):
            if fault.kind == "stream_break" and index >= fault.chunks_before_break:
                await writer.drain()
                writer.transport.abort()
                return
            chunk = {
                "id": "chatcmpl-stream",
                "object": "chat.completion.chunk",
                "model": request.get("model", "fake-model"),
                "choices": [
                    {
                        "index": 0,
                        "delta": {"content": piece},
                        "finish_reason": None,
                    }
                ],
            }
            writer.write(f"data: {json.dumps(chunk)}\n\n".encode())
            await writer.drain()
            if fault.kind == "slow_stream":
                await asyncio.sleep(fault.delay)
        final = {"id": "chatcmpl-stream", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        writer.write(f"data: {json.dumps(final)}\n\n".encode())
        if (request.get("stream_options") or {}).get("include_usage"):
            usage = {
                "id": "chatcmpl-stream",
                "choices": [],
                "usage": {"prompt_tokens": 11, "completion_tokens": len(words)},
            }
            writer.write(f"data: {json.dumps(usage)}\n\n".encode())
        writer.write(b"data: [DONE]\n\n")
        await writer.drain()

    async def _send(
        self, writer: asyncio.StreamWriter, status: int, body: bytes, headers: dict[str, str] | None = None
    ) -> None:
        all_headers = {
            "Content-Type": "application/json",
            "Content-Length": str(len(body)),
            "Connection": "keep-alive" if self.keep_alive else "close",
        }
        all_headers.update(headers or {})
        head = f"HTTP/1.1 {status} X\r\n" + "".join(f"{k}: {v}\r\n" for k, v in all_headers.items()) + "\r\n"
        writer.write(head.encode() + body)
        await writer.drain()
