# SPDX-License-Identifier: Apache-2.0
"""What one call to the model endpoint costs the event loop: Bastion's provider against httpx.

    .venv/bin/python bench/model_client.py [--calls 2000]

The fake OpenAI-compatible upstream (keep-alive, its own thread) answers; each contender makes the
same completion call on one pooled connection, and the figure is the CPU time of the calling
thread per call (the upstream's thread is not counted), medians of interleaved rounds:

- Bastion's ``OpenAICompatibleProvider.complete`` (its own client, ``bastion.llm.transport``;
  breaker, retries and parsing included);
- the same POST made with an httpx ``AsyncClient`` (streamed and read as the provider reads it, then
  parsed), the client the provider used first;
- the same POST with a bare aiohttp ``ClientSession``, the client it used next;
- the same request bytes written on one connection by a bare ``asyncio.Protocol`` that parses the
  answer with httptools and nothing else (no pool, no timeouts, no checks): the floor.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import httptools
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.fake_upstream import FakeUpstream

from bastion.llm.base import ChatMessage, GenerationOptions
from bastion.llm.breaker_store import MemoryBreakerStore
from bastion.llm.openai import OpenAICompatibleProvider
from bastion.llm.retry import RetryPolicy

PROVIDER = "Bastion's provider (bastion.llm.transport)"
HTTPX = "httpx AsyncClient, same call"
AIOHTTP = "bare aiohttp ClientSession"
FLOOR = "bare asyncio protocol + httptools"
MESSAGES = [ChatMessage("user", "a short benchmark prompt")]
BODY = {"model": "fake-model", "messages": [{"role": "user", "content": "a short benchmark prompt"}]}


async def cpu_per_call(call: Callable[[], Awaitable[object]], calls: int) -> float:
    """Microseconds of this thread's CPU per call, after a warm-up."""
    for _ in range(50):
        await call()
    started = time.thread_time()
    for _ in range(calls):
        await call()
    return (time.thread_time() - started) / calls * 1e6


class _Floor(asyncio.Protocol):
    """One connection that writes a prepared request and parses the answer, nothing more."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.body: list[bytes] = []
        self.done: asyncio.Future[bytes] | None = None

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.done is not None:
            self.done.set_result(b"".join(self.body))
        self.body = []


async def floor_call(base_url: str) -> Callable[[], Awaitable[object]]:
    loop = asyncio.get_running_loop()
    parts = urlsplit(base_url)
    transport, protocol = await loop.create_connection(_Floor, parts.hostname, parts.port)
    body = json.dumps(BODY).encode()
    request = (
        f"POST {parts.path}/chat/completions HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body

    async def call() -> object:
        protocol.done = loop.create_future()
        transport.write(request)
        return json.loads(await protocol.done)

    return call


async def rounds(base_url: str, calls: int, count: int) -> dict[str, float]:
    url = f"{base_url}/chat/completions"
    provider = OpenAICompatibleProvider(
        base_url=base_url,
        model="fake-model",
        api_key="sk-bench",  # pragma: allowlist secret (the fake upstream takes any key)
        timeout=30,
        retry=RetryPolicy(max_retries=0),
        breaker=MemoryBreakerStore(),
    )
    options = GenerationOptions()
    figures: dict[str, list[float]] = {PROVIDER: [], HTTPX: [], AIOHTTP: [], FLOOR: []}
    async with httpx.AsyncClient(trust_env=False) as hx, aiohttp.ClientSession() as aio:

        async def with_httpx() -> object:
            async with hx.stream("POST", url, json=BODY) as response:
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
            return json.loads(body)

        async def with_aiohttp() -> object:
            async with aio.post(url, json=BODY) as response:
                return json.loads(await response.read())

        contenders: dict[str, Callable[[], Awaitable[object]]] = {
            PROVIDER: lambda: provider.complete(MESSAGES, options),
            HTTPX: with_httpx,
            AIOHTTP: with_aiohttp,
            FLOOR: await floor_call(base_url),
        }
        for _ in range(count):
            for name, call in contenders.items():
                figures[name].append(await cpu_per_call(call, calls))
    await provider.aclose()
    return {name: statistics.median(values) for name, values in figures.items()}


def figures(calls: int = 2000, count: int = 3) -> dict[str, float]:
    with FakeUpstream(keep_alive=True) as upstream:
        return asyncio.run(rounds(upstream.base_url, calls, count))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    result = figures(args.calls, args.rounds)
    for name, value in result.items():
        print(f"{name:40} {value:8.0f} µs CPU per call  ({value / result[HTTPX]:.2f}x httpx)")


if __name__ == "__main__":
    main()
