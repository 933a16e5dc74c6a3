# SPDX-License-Identifier: Apache-2.0
"""Any OpenAI-compatible endpoint (OpenAI, Azure OpenAI, vLLM, Ollama, llama.cpp server) over httpx.

Every call passes the circuit breaker, retries only what can succeed on a retry (429, 5xx,
timeouts, dropped connections) with bounded exponential backoff and jitter, and honours the
upstream's Retry-After. Upstream error bodies and our API key never reach clients or logs: callers
see Bastion's own ``Upstream*`` errors; logs get the status code and attempt number.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

from bastion.errors import BastionError, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from bastion.llm.base import (
    ChatMessage,
    Completion,
    GenerationOptions,
    StreamChunk,
    StreamInterrupted,
    Transcription,
    Usage,
)
from bastion.llm.breaker import BreakerConfig
from bastion.llm.breaker_store import BreakerStore
from bastion.llm.retry import RETRYABLE_STATUSES, RetryPolicy, parse_retry_after
from bastion.observability.logging import get_logger

T = TypeVar("T")

MAX_RESPONSE_BYTES = 8 * 1024 * 1024
#: A refusal's body is read up to this much, so its connection goes back to the pool (a 429 storm
#: would otherwise cost a new connection, a TLS handshake with a real provider, per retry); a
#: longer one is left unread and its connection closed.
MAX_REFUSAL_BYTES = 16 * 1024


class _AttemptFailed(Exception):
    """One attempt failed; ``retryable`` says whether another may succeed."""

    def __init__(
        self, reason: str, *, retryable: bool, status: int | None = None, retry_after: float | None = None
    ):
        self.reason = reason
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after
        super().__init__(reason)


async def _refusal(response: httpx.Response) -> _AttemptFailed:
    """A non-200 answer classified, its body drained (within MAX_REFUSAL_BYTES) so its keep-alive
    connection can serve the next attempt; the body itself is never used (it may hold the
    provider's internal details)."""
    read = 0
    try:
        async for chunk in response.aiter_raw():
            read += len(chunk)
            if read > MAX_REFUSAL_BYTES:
                break
    except httpx.HTTPError:
        pass  # the connection is dropped; the refusal is what counts
    return _AttemptFailed(
        f"status {response.status_code}",
        retryable=response.status_code in RETRYABLE_STATUSES,
        status=response.status_code,
        retry_after=parse_retry_after(response.headers.get("retry-after")),
    )


def _classify_transport(exc: httpx.HTTPError) -> _AttemptFailed:
    if isinstance(exc, httpx.TimeoutException):
        return _AttemptFailed("timeout", retryable=True)
    return _AttemptFailed(type(exc).__name__, retryable=True)


def _usage(data: Any) -> Usage | None:
    if not isinstance(data, dict):
        return None
    prompt, completion = data.get("prompt_tokens"), data.get("completion_tokens")
    if isinstance(prompt, int) and isinstance(completion, int) and prompt >= 0 and completion >= 0:
        return Usage(prompt, completion)
    return None


@dataclass(frozen=True, slots=True)
class _Reply:
    """A successful upstream answer, read in full (within MAX_RESPONSE_BYTES)."""

    content: bytes

    def json(self) -> Any:
        return json.loads(self.content)


@dataclass(frozen=True, slots=True)
class _Event:
    """One server-sent event of a streamed completion."""

    delta: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None
    done: bool = False


async def _bounded_lines(response: httpx.Response) -> AsyncIterator[str]:
    """The lines of a streamed body, refusing more than MAX_RESPONSE_BYTES in all.

    httpx's own line iterator would buffer a line without end; this one counts every byte.
    """
    received = 0
    pending = bytearray()
    async for chunk in response.aiter_raw():
        received += len(chunk)
        if received > MAX_RESPONSE_BYTES:
            raise _AttemptFailed("response too large", retryable=False, status=200)
        pending += chunk
        start = 0
        while (end := pending.find(b"\n", start)) != -1:
            yield pending[start:end].rstrip(b"\r").decode("utf-8", "replace")
            start = end + 1
        del pending[:start]
    if pending:
        yield pending.decode("utf-8", "replace")


class OpenAICompatibleProvider:
    """The Provider protocol over an OpenAI-compatible HTTP API."""

    name = "openai"
    offline = False

    def __init__(
        self,
        *,
        client: httpx.AsyncClient,
        base_url: str,
        model: str,
        api_key: str | None,
        timeout: float,
        retry: RetryPolicy,
        breaker: BreakerStore,
        breaker_config: BreakerConfig | None = None,
        transcription_model: str = "whisper-1",
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.client = client
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.transcription_model = transcription_model
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout = httpx.Timeout(timeout, connect=min(timeout, 10.0))
        self.retry = retry
        self.breaker = breaker
        self.breaker_config = breaker_config or BreakerConfig()
        self.clock = clock
        self.sleep = sleep
        self.log = get_logger("bastion.llm")
        self.breaker_name = f"llm:{self.base_url}"

    # -- the retry loop ----------------------------------------------------------------------

    async def _admit(self) -> None:
        decision = await self.breaker.acquire(self.breaker_name, self.breaker_config, self.clock())
        if not decision.allowed:
            raise UpstreamUnavailable(retry_after=decision.retry_after)

    async def _with_retries(self, attempt_once: Callable[[], Awaitable[T]], *, operation: str) -> T:
        for attempt in range(self.retry.max_retries + 1):
            await self._admit()
            try:
                result = await attempt_once()
            except _AttemptFailed as failed:
                wait = await self._after_failure(failed, attempt, operation=operation)
                await self.sleep(wait)
                continue
            await self.breaker.success(self.breaker_name, self.breaker_config, self.clock())
            return result
        raise AssertionError("unreachable: the last attempt raises")  # pragma: no cover

    async def _after_failure(self, failed: _AttemptFailed, attempt: int, *, operation: str) -> float:
        """Record the failure; return how long to wait before the next attempt, or raise the final error."""
        if failed.retryable:
            await self.breaker.failure(self.breaker_name, self.breaker_config, self.clock())
        self.log.warning(
            "upstream_attempt_failed",
            operation=operation,
            attempt=attempt + 1,
            reason=failed.reason,
            status=failed.status,
            retryable=failed.retryable,
        )
        if not failed.retryable:
            raise UpstreamError()
        if failed.retry_after is not None and failed.retry_after > self.retry.max_retry_after:
            raise UpstreamUnavailable(retry_after=failed.retry_after)
        if attempt >= self.retry.max_retries:
            raise self._final_error(failed)
        return failed.retry_after if failed.retry_after is not None else self.retry.backoff(attempt)

    def _final_error(self, failed: _AttemptFailed) -> BastionError:
        if failed.reason == "timeout":
            return UpstreamTimeout()
        if failed.status == 429 or failed.status == 503:
            return UpstreamUnavailable(retry_after=failed.retry_after or self.breaker_config.recovery_seconds)
        return UpstreamError()

    async def _post(self, path: str, **kwargs: Any) -> _Reply:
        """One POST; transport failures and non-200 answers become classified attempt failures.

        The body is read as it streams and refused past MAX_RESPONSE_BYTES, so a broken or hostile
        upstream cannot make Bastion buffer an unbounded answer.
        """
        try:
            async with self.client.stream(
                "POST", f"{self.base_url}{path}", headers=self._headers, timeout=self.timeout, **kwargs
            ) as response:
                if response.status_code != 200:
                    raise await _refusal(response)
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_RESPONSE_BYTES:
                        raise _AttemptFailed("response too large", retryable=False, status=200)
                return _Reply(bytes(body))
        except httpx.HTTPError as exc:
            raise _classify_transport(exc) from None

    # -- chat --------------------------------------------------------------------------------

    def _payload(
        self, messages: Sequence[ChatMessage], options: GenerationOptions, *, stream: bool
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "stream": stream,
        }
        if stream:
            payload["stream_options"] = {"include_usage": True}
        if options.max_tokens is not None:
            payload["max_tokens"] = options.max_tokens
        if options.temperature is not None:
            payload["temperature"] = options.temperature
        return payload

    async def complete(self, messages: Sequence[ChatMessage], options: GenerationOptions) -> Completion:
        payload = self._payload(messages, options, stream=False)

        async def once() -> Completion:
            response = await self._post("/chat/completions", json=payload)
            return self._parse_completion(response, messages)

        return await self._with_retries(once, operation="chat")

    def _parse_completion(self, response: _Reply, messages: Sequence[ChatMessage]) -> Completion:
        try:
            data = response.json()
            choice = data["choices"][0]
            content = choice["message"]["content"]
            if not isinstance(content, str):
                raise ValueError("content is not text")
        except (ValueError, KeyError, IndexError, TypeError):
            raise _AttemptFailed("malformed response", retryable=False, status=200) from None
        return Completion(
            content=content,
            model=str(data.get("model") or self.model),
            provider=self.name,
            usage=_usage(data.get("usage")) or Usage.estimate(messages, content),
            finish_reason=str(choice.get("finish_reason") or "stop"),
        )

    async def stream(
        self, messages: Sequence[ChatMessage], options: GenerationOptions
    ) -> AsyncIterator[StreamChunk]:
        payload = self._payload(messages, options, stream=True)
        produced: list[str] = []
        for attempt in range(self.retry.max_retries + 1):
            await self._admit()
            finish: str | None = None
            usage: Usage | None = None
            try:
                async with self.client.stream(
                    "POST",
                    f"{self.base_url}/chat/completions",
                    json=payload,
                    headers=self._headers,
                    timeout=self.timeout,
                ) as response:
                    if response.status_code != 200:
                        raise await _refusal(response)
                    done = False
                    async for line in _bounded_lines(response):
                        event = self._parse_event(line)
                        if event is None:
                            continue
                        if event.done:
                            done = True
                            break
                        finish = event.finish_reason or finish
                        usage = event.usage or usage
                        if event.delta:
                            produced.append(event.delta)
                            yield StreamChunk(delta=event.delta)
                    if not done:
                        raise httpx.RemoteProtocolError("stream ended without [DONE]")
            except (httpx.HTTPError, _AttemptFailed) as exc:
                failed = exc if isinstance(exc, _AttemptFailed) else _classify_transport(exc)
                if produced:
                    # Part of the reply already went to the caller: it cannot be retried
                    # transparently. The caller keeps what arrived and marks it incomplete.
                    await self.breaker.failure(self.breaker_name, self.breaker_config, self.clock())
                    self.log.warning(
                        "upstream_stream_interrupted", reason=failed.reason, chunks=len(produced)
                    )
                    raise StreamInterrupted("".join(produced)) from None
                wait = await self._after_failure(failed, attempt, operation="chat_stream")
                await self.sleep(wait)
                continue
            await self.breaker.success(self.breaker_name, self.breaker_config, self.clock())
            text = "".join(produced)
            yield StreamChunk(
                delta="", finish_reason=finish or "stop", usage=usage or Usage.estimate(messages, text)
            )
            return

    @staticmethod
    def _parse_event(line: str) -> _Event | None:
        if not line.startswith("data:"):
            return None
        data = line[5:].strip()
        if data == "[DONE]":
            return _Event(done=True)
        try:
            event = json.loads(data)
        except ValueError:
            raise _AttemptFailed("malformed stream event", retryable=False) from None
        if not isinstance(event, dict):
            raise _AttemptFailed("malformed stream event", retryable=False)
        delta, finish = "", None
        choices = event.get("choices") or []
        if choices and isinstance(choices[0], dict):
            content = (choices[0].get("delta") or {}).get("content")
            delta = content if isinstance(content, str) else ""
            finish = choices[0].get("finish_reason")
        return _Event(
            delta=delta,
            finish_reason=finish if isinstance(finish, str) else None,
            usage=_usage(event.get("usage")),
        )

    # -- speech ------------------------------------------------------------------------------

    async def transcribe(self, audio: Path, *, filename: str, content_type: str) -> Transcription:
        async def once() -> Transcription:
            with audio.open("rb") as handle:  # reopened per attempt: a retry re-sends the whole file
                response = await self._post(
                    "/audio/transcriptions",
                    files={"file": (filename, handle, content_type)},
                    data={"model": self.transcription_model},
                )
            try:
                text = response.json()["text"]
                if not isinstance(text, str):
                    raise TypeError("text")
            except (ValueError, KeyError, TypeError):
                raise _AttemptFailed("malformed response", retryable=False, status=200) from None
            return Transcription(text=text, provider=self.name)

        return await self._with_retries(once, operation="transcribe")

    async def status(self) -> str:
        return str(await self.breaker.state(self.breaker_name))

    async def aclose(self) -> None:
        return None  # the HTTP client belongs to the lifespan, which closes it
