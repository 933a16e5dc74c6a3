# SPDX-License-Identifier: Apache-2.0
"""Any OpenAI-compatible endpoint (OpenAI, Azure OpenAI, vLLM, Ollama, llama.cpp server).

Every call passes the circuit breaker, retries only what can succeed on a retry (429, 5xx,
timeouts, dropped connections) with bounded exponential backoff and jitter, and honours the
upstream's Retry-After. Upstream error bodies and our API key never reach clients or logs: callers
see Bastion's own ``Upstream*`` errors; logs get the status code and attempt number.

The model endpoint is the one HTTP peer on a chat message's path, so its completions (whole and
streamed) go through ``bastion.llm.transport``, a client made for that one call (the provider's whole
call 116-140 µs of CPU against aiohttp's 200-210 and httpx's 700-730, ``make bench``).
Transcriptions upload a file as a multipart form, which that client does not write: they stay on
aiohttp. Bastion's other outbound calls (webhooks, alert deliveries, the deploy check) use httpx.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import aiohttp
import certifi
import pydantic_core

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
from bastion.llm.transport import EndpointClient
from bastion.observability.logging import get_logger

T = TypeVar("T")

MAX_RESPONSE_BYTES = 8 * 1024 * 1024
#: A refusal's body is read up to this much, so its connection goes back to the pool (a 429 storm
#: would otherwise cost a new connection, a TLS handshake with a real provider, per retry); a
#: longer one is left unread and its connection closed.
MAX_REFUSAL_BYTES = 16 * 1024
#: The connection pool: at most this many connections to the endpoint, an idle one kept this long.
MAX_CONNECTIONS = 100
KEEPALIVE_SECONDS = 5.0
#: The longest a connection may take to open, whatever LLM_TIMEOUT_SECONDS allows.
MAX_CONNECT_SECONDS = 10.0
#: What one attempt may raise from the transport: aiohttp's errors, the OS's (resets, and the
#: endpoint client's ``BrokenAnswer``) and the timeouts (``TimeoutError``, an ``OSError``).
_TRANSPORT_ERRORS = (aiohttp.ClientError, OSError)


class _Answer(Protocol):
    """What an attempt reads of an answer, from either client."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    def chunks(self) -> AsyncIterator[bytes]: ...


class _FormAnswer:
    """An aiohttp response (a transcription's) seen as an ``_Answer``."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.status = response.status
        self.headers: Mapping[str, str] = response.headers
        self._content = response.content

    def chunks(self) -> AsyncIterator[bytes]:
        return self._content.iter_any()


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


async def _refusal(response: _Answer) -> _AttemptFailed:
    """A non-200 answer classified, its body drained (within MAX_REFUSAL_BYTES) so its keep-alive
    connection can serve the next attempt; the body itself is never used (it may hold the
    provider's internal details). A body left unread closes its connection on release."""
    read = 0
    try:
        async for chunk in response.chunks():
            read += len(chunk)
            if read > MAX_REFUSAL_BYTES:
                break
    except _TRANSPORT_ERRORS:
        pass  # the connection is dropped; the refusal is what counts
    return _AttemptFailed(
        f"status {response.status}",
        retryable=response.status in RETRYABLE_STATUSES,
        status=response.status,
        retry_after=parse_retry_after(response.headers.get("retry-after")),
    )


def _tls_context() -> ssl.SSLContext:
    """Certificates checked against certifi's roots, as on the rest of Bastion's outbound calls."""
    return ssl.create_default_context(cafile=certifi.where())


def _classify_transport(exc: BaseException) -> _AttemptFailed:
    if isinstance(exc, TimeoutError):  # aiohttp's connect and read timeouts included
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


async def _bounded_lines(response: _Answer) -> AsyncIterator[str]:
    """The lines of a streamed body, refusing more than MAX_RESPONSE_BYTES in all (every byte
    counted, however long a line)."""
    received = 0
    pending = bytearray()
    async for chunk in response.chunks():
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
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.transcription_model = transcription_model
        # Bodies arrive as sent (``identity``, never decompressed): an upstream cannot make Bastion
        # inflate a compressed bomb, and MAX_RESPONSE_BYTES counts what crossed the network.
        self._headers = {"Accept-Encoding": "identity"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        # Opening a connection (a pool slot included) and each wait for the endpoint's next bytes
        # are bounded; a stream may last as long as its bytes keep coming.
        self.timeout = aiohttp.ClientTimeout(
            total=None, connect=timeout, sock_connect=min(timeout, MAX_CONNECT_SECONDS), sock_read=timeout
        )
        self._client: aiohttp.ClientSession | None = None
        self._endpoint: EndpointClient | None = None
        self._timeout = timeout  # LLM_TIMEOUT_SECONDS: opening a connection, and each wait for bytes
        self.retry = retry
        self.breaker = breaker
        self.breaker_config = breaker_config or BreakerConfig()
        self.clock = clock
        self.sleep = sleep
        self.log = get_logger("bastion.llm")
        self.breaker_name = f"llm:{self.base_url}"

    def _endpoint_client(self) -> EndpointClient:
        """The pooled client of completions, made on first use (it belongs to the running loop)."""
        if self._endpoint is None:
            self._endpoint = EndpointClient(
                self.base_url,
                headers=self._headers,
                connect_timeout=self._timeout,
                socket_connect_timeout=MAX_CONNECT_SECONDS,
                read_timeout=self._timeout,
                max_connections=MAX_CONNECTIONS,
                keepalive=KEEPALIVE_SECONDS,
                ssl_context=_tls_context(),
            )
        return self._endpoint

    def _session(self) -> aiohttp.ClientSession:
        """The pooled client of transcriptions, opened on first use (it belongs to the running loop)."""
        if self._client is None:
            connector = aiohttp.TCPConnector(
                limit=MAX_CONNECTIONS,
                keepalive_timeout=KEEPALIVE_SECONDS,
                ssl=_tls_context(),
            )
            self._client = aiohttp.ClientSession(
                connector=connector,
                headers=self._headers,
                timeout=self.timeout,
                auto_decompress=False,
                trust_env=False,  # no proxy or netrc from the environment
            )
        return self._client

    def _request(self, path: str, data: bytes | aiohttp.FormData) -> AbstractAsyncContextManager[_Answer]:
        """One POST to the endpoint, as an ``async with`` context giving the answer: JSON on the
        endpoint client, a form on aiohttp."""
        if isinstance(data, bytes):
            return self._endpoint_client().post(path, data, "application/json")
        return self._form_post(path, data)

    @asynccontextmanager
    async def _form_post(self, path: str, form: aiohttp.FormData) -> AsyncIterator[_Answer]:
        url = f"{self.base_url}{path}"
        async with self._session().post(url, data=form, allow_redirects=False) as response:
            yield _FormAnswer(response)

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

    async def _post(self, path: str, data: bytes | aiohttp.FormData) -> _Reply:
        """One POST; transport failures and non-200 answers become classified attempt failures.

        The body is read as it streams and refused past MAX_RESPONSE_BYTES, so a broken or hostile
        upstream cannot make Bastion buffer an unbounded answer.
        """
        try:
            async with self._request(path, data) as response:
                if response.status != 200:
                    raise await _refusal(response)
                body = bytearray()
                async for chunk in response.chunks():
                    body += chunk
                    if len(body) > MAX_RESPONSE_BYTES:
                        raise _AttemptFailed("response too large", retryable=False, status=200)
                return _Reply(bytes(body))
        except _TRANSPORT_ERRORS as exc:
            raise _classify_transport(exc) from None

    # -- chat --------------------------------------------------------------------------------

    def _payload(self, messages: Sequence[ChatMessage], options: GenerationOptions, *, stream: bool) -> bytes:
        """The request's JSON body. pydantic's encoder writes a prompt of dozens of messages in a
        quarter of json.dumps' time; a lone surrogate, which UTF-8 cannot carry, goes as json's
        ``\\u`` escape."""
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
        try:
            return pydantic_core.to_json(payload)
        except pydantic_core.PydanticSerializationError:
            return json.dumps(payload).encode()

    async def complete(self, messages: Sequence[ChatMessage], options: GenerationOptions) -> Completion:
        payload = self._payload(messages, options, stream=False)

        async def once() -> Completion:
            response = await self._post("/chat/completions", payload)
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
                async with self._request("/chat/completions", payload) as response:
                    if response.status != 200:
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
                        raise _AttemptFailed("stream ended without [DONE]", retryable=True)
            except (_AttemptFailed, *_TRANSPORT_ERRORS) as exc:
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
                form = aiohttp.FormData()
                form.add_field("model", self.transcription_model)
                form.add_field("file", handle, filename=filename, content_type=content_type)
                response = await self._post("/audio/transcriptions", form)
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
        if self._endpoint is not None:
            await self._endpoint.aclose()
            self._endpoint = None
        if self._client is not None:
            await self._client.close()
            self._client = None
