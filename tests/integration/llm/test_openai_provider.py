# SPDX-License-Identifier: Apache-2.0
"""The OpenAI-compatible provider against a real local server that misbehaves on command."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from bastion.errors import UpstreamError, UpstreamTimeout, UpstreamUnavailable
from bastion.llm.base import ChatMessage, GenerationOptions, StreamInterrupted
from bastion.llm.breaker import BreakerConfig, State
from bastion.llm.breaker_store import BreakerStore, MemoryBreakerStore, RedisBreakerStore
from bastion.llm.openai import OpenAICompatibleProvider
from bastion.llm.retry import RetryPolicy
from bastion.observability.logging import configure_logging
from tests.conftest import SettingsFactory
from tests.support.fake_upstream import SECRET_IN_ERROR, FakeUpstream, Fault

API_KEY = "sk-test-upstream-key-0123456789"
MESSAGES = [ChatMessage("system", "Be kind."), ChatMessage("user", "hello there friend")]
OPTIONS = GenerationOptions()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Sleeps:
    """Records the waits the provider asks for, and advances the clock instead of sleeping."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.clock.now += seconds


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as server:
        yield server


class Opened(list[OpenAICompatibleProvider]):
    """The providers a test made, each closed (its connection pool) when the test ends."""


@pytest.fixture
async def opened() -> AsyncIterator[Opened]:
    providers = Opened()
    yield providers
    for provider in providers:
        await provider.aclose()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sleeps(clock: Clock) -> Sleeps:
    return Sleeps(clock)


def provider_for(
    opened: Opened,
    base_url: str,
    clock: Clock,
    sleeps: Sleeps,
    *,
    retries: int = 2,
    timeout: float = 5.0,
    threshold: int = 5,
    store: BreakerStore | None = None,
) -> OpenAICompatibleProvider:
    provider = OpenAICompatibleProvider(
        base_url=base_url,
        model="fake-model",
        api_key=API_KEY,
        timeout=timeout,
        retry=RetryPolicy(max_retries=retries, base_delay=0.5, max_delay=4),
        breaker=store or MemoryBreakerStore(),
        breaker_config=BreakerConfig(failure_threshold=threshold, recovery_seconds=30),
        clock=clock,
        sleep=sleeps,
    )
    opened.append(provider)
    return provider


@pytest.fixture
def make_provider(upstream: FakeUpstream, opened: Opened, clock: Clock, sleeps: Sleeps):  # type: ignore[no-untyped-def]
    def factory(
        *, retries: int = 2, timeout: float = 5.0, threshold: int = 5, store: BreakerStore | None = None
    ) -> OpenAICompatibleProvider:
        return provider_for(
            opened,
            upstream.base_url,
            clock,
            sleeps,
            retries=retries,
            timeout=timeout,
            threshold=threshold,
            store=store,
        )

    return factory


async def test_completion_sends_model_key_and_messages(upstream: FakeUpstream, make_provider) -> None:  # type: ignore[no-untyped-def]
    completion = await make_provider().complete(MESSAGES, GenerationOptions(max_tokens=50, temperature=0.2))
    assert completion.content == "echo: hello there friend"
    assert completion.usage.prompt_tokens == 11 and completion.usage.completion_tokens == 4
    assert completion.offline is False and completion.provider == "openai"
    [request] = upstream.requests
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.headers["accept-encoding"] == "identity"
    body = request.json()
    assert body["model"] == "fake-model" and body["max_tokens"] == 50 and body["temperature"] == 0.2
    assert body["messages"][-1] == {"role": "user", "content": "hello there friend"}


async def test_an_upstream_that_keeps_connections_open_is_called_over_one(  # type: ignore[no-untyped-def]
    opened: Opened, clock: Clock, sleeps: Sleeps
) -> None:
    # Real providers keep connections alive: messages, a refused attempt (its short body drained)
    # and its retry go over the pooled connection; a stream takes it, and the fake ends it with
    # the stream.
    with FakeUpstream(keep_alive=True) as upstream:
        provider = provider_for(opened, upstream.base_url, clock, sleeps)
        for _ in range(3):
            assert (await provider.complete(MESSAGES, OPTIONS)).content == "echo: hello there friend"
        assert upstream.count() == 3 and upstream.connections == 1
        upstream.script(Fault.status_code(500), Fault.status_code(429, retry_after="1"))
        assert (await provider.complete(MESSAGES, OPTIONS)).content == "echo: hello there friend"
        assert upstream.count() == 6 and upstream.connections == 1
        upstream.script(Fault.status_code(503))
        assert [event async for event in provider.stream(MESSAGES, OPTIONS)]
        assert upstream.count() == 8 and upstream.connections == 1
        assert (await provider.complete(MESSAGES, OPTIONS)).content == "echo: hello there friend"
        assert upstream.connections == 2


async def test_a_long_refusal_is_not_read_to_its_end(opened: Opened, clock: Clock, sleeps: Sleeps) -> None:
    # A refusal's body is drained only up to a bound: a hostile or broken upstream sending an
    # endless error page gets its connection closed, and the attempt is classified as usual.
    size = 256 * 1024 * 1024
    with FakeUpstream(keep_alive=True) as upstream:
        upstream.script(Fault.long_refusal(size))
        provider = provider_for(opened, upstream.base_url, clock, sleeps)
        with pytest.raises(UpstreamError):
            await provider.complete(MESSAGES, OPTIONS)
        assert (await provider.complete(MESSAGES, OPTIONS)).content == "echo: hello there friend"
        assert upstream.connections == 2  # the refused one was closed, not drained for reuse
    # About MAX_REFUSAL_BYTES read, plus what the client's and the kernel's buffers took in
    # before the connection closed: never the whole page.
    assert upstream.refusal_sent < 32 * 1024 * 1024


async def test_a_compressed_answer_is_never_inflated(upstream: FakeUpstream, make_provider) -> None:  # type: ignore[no-untyped-def]
    # Bastion asks for identity; an endpoint that compresses anyway gets its answer refused as
    # malformed (no retry), so no compressed bomb is ever inflated in memory.
    upstream.script(Fault.gzipped())
    with pytest.raises(UpstreamError):
        await make_provider().complete(MESSAGES, OPTIONS)
    assert upstream.count() == 1


async def test_retries_are_bounded_with_growing_jittered_backoff(  # type: ignore[no-untyped-def]
    upstream: FakeUpstream, make_provider, sleeps: Sleeps
) -> None:
    upstream.script(*[Fault.status_code(500)] * 10)
    with pytest.raises(UpstreamError) as caught:
        await make_provider(retries=3).complete(MESSAGES, OPTIONS)
    assert upstream.count() == 4  # the first try and exactly three retries
    assert len(sleeps.waits) == 3
    for attempt, wait in enumerate(sleeps.waits):
        assert 0 <= wait <= min(4, 0.5 * 2**attempt)
    assert SECRET_IN_ERROR not in str(caught.value) and SECRET_IN_ERROR not in caught.value.message


async def test_transient_failures_then_success(upstream: FakeUpstream, make_provider) -> None:  # type: ignore[no-untyped-def]
    upstream.script(Fault.status_code(503), Fault.drop())
    completion = await make_provider(retries=2).complete(MESSAGES, OPTIONS)
    assert completion.content.startswith("echo:")
    assert upstream.count() == 3


async def test_upstream_retry_after_is_honoured(
    upstream: FakeUpstream, make_provider, sleeps: Sleeps
) -> None:  # type: ignore[no-untyped-def]
    upstream.script(Fault.status_code(429, retry_after="3"))
    await make_provider().complete(MESSAGES, OPTIONS)
    assert sleeps.waits == [3.0]


async def test_long_retry_after_fails_fast_with_it(
    upstream: FakeUpstream, make_provider, sleeps: Sleeps
) -> None:  # type: ignore[no-untyped-def]
    upstream.script(Fault.status_code(429, retry_after="120"))
    with pytest.raises(UpstreamUnavailable) as caught:
        await make_provider().complete(MESSAGES, OPTIONS)
    assert caught.value.retry_after == 120 and caught.value.headers["Retry-After"] == "120"
    assert upstream.count() == 1 and sleeps.waits == []


@pytest.mark.parametrize("status", [400, 401, 404, 422])
async def test_client_errors_are_not_retried(upstream: FakeUpstream, make_provider, status: int) -> None:  # type: ignore[no-untyped-def]
    upstream.script(Fault.status_code(status))
    with pytest.raises(UpstreamError):
        await make_provider().complete(MESSAGES, OPTIONS)
    assert upstream.count() == 1


async def test_malformed_answer_is_an_upstream_error(upstream: FakeUpstream, make_provider) -> None:  # type: ignore[no-untyped-def]
    upstream.script(Fault.garbage())
    with pytest.raises(UpstreamError):
        await make_provider().complete(MESSAGES, OPTIONS)
    assert upstream.count() == 1


async def test_slow_upstream_times_out(upstream: FakeUpstream, make_provider) -> None:  # type: ignore[no-untyped-def]
    upstream.script(Fault.slow(2), Fault.slow(2))
    with pytest.raises(UpstreamTimeout):
        await make_provider(retries=1, timeout=0.2).complete(MESSAGES, OPTIONS)
    assert upstream.count() == 2


async def test_breaker_opens_fails_fast_and_recovers(  # type: ignore[no-untyped-def]
    upstream: FakeUpstream, make_provider, clock: Clock
) -> None:
    store = MemoryBreakerStore()
    provider = make_provider(retries=0, threshold=3, store=store)
    upstream.script(*[Fault.status_code(502)] * 3)
    for _ in range(3):
        with pytest.raises(UpstreamError):
            await provider.complete(MESSAGES, OPTIONS)
    assert await store.state(provider.breaker_name) is State.OPEN
    with pytest.raises(UpstreamUnavailable) as caught:
        await provider.complete(MESSAGES, OPTIONS)
    assert upstream.count() == 3  # refused without touching the upstream
    assert 1 <= caught.value.retry_after <= 30
    clock.now += 31
    completion = await provider.complete(MESSAGES, OPTIONS)  # the half-open probe
    assert completion.content.startswith("echo:")
    assert await store.state(provider.breaker_name) is State.CLOSED


@pytest.mark.redis
async def test_breaker_is_shared_across_instances_through_redis(  # type: ignore[no-untyped-def]
    upstream: FakeUpstream, make_provider, redis_url: str
) -> None:
    first_redis, second_redis = Redis.from_url(redis_url), Redis.from_url(redis_url)
    try:
        first = make_provider(retries=0, threshold=2, store=RedisBreakerStore(first_redis))
        second = make_provider(retries=0, threshold=2, store=RedisBreakerStore(second_redis))
        upstream.script(Fault.status_code(500), Fault.status_code(500))
        for _ in range(2):
            with pytest.raises(UpstreamError):
                await first.complete(MESSAGES, OPTIONS)
        with pytest.raises(UpstreamUnavailable):
            await second.complete(MESSAGES, OPTIONS)
        assert upstream.count() == 2
    finally:
        await first_redis.aclose()
        await second_redis.aclose()


async def test_stream_delivers_chunks_and_usage(upstream: FakeUpstream, make_provider) -> None:  # type: ignore[no-untyped-def]
    chunks = [chunk async for chunk in make_provider().stream(MESSAGES, OPTIONS)]
    assert "".join(c.delta for c in chunks) == "echo: hello there friend"
    assert chunks[-1].finish_reason == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 11
    assert upstream.requests[0].json()["stream_options"] == {"include_usage": True}


async def test_stream_failing_before_the_first_byte_is_retried(upstream: FakeUpstream, make_provider) -> None:  # type: ignore[no-untyped-def]
    upstream.script(Fault.status_code(500), Fault.drop())
    chunks = [chunk async for chunk in make_provider().stream(MESSAGES, OPTIONS)]
    assert "".join(c.delta for c in chunks) == "echo: hello there friend"
    assert upstream.count() == 3


async def test_stream_cut_midway_keeps_what_arrived(upstream: FakeUpstream, make_provider) -> None:  # type: ignore[no-untyped-def]
    upstream.script(Fault.stream_break(after=2))
    received: list[str] = []
    with pytest.raises(StreamInterrupted) as caught:
        async for chunk in make_provider().stream(MESSAGES, OPTIONS):
            received.append(chunk.delta)
    assert caught.value.produced == "".join(received) == "echo: hello"
    assert upstream.count() == 1  # a half-delivered reply is never silently retried


async def test_transcription_posts_multipart_and_retries(  # type: ignore[no-untyped-def]
    upstream: FakeUpstream, make_provider, tmp_path: Path
) -> None:
    audio = tmp_path / "clip.wav"
    audio.write_bytes(b"RIFF" + b"\0" * 64)
    upstream.script(Fault.status_code(503))
    result = await make_provider().transcribe(audio, filename="clip.wav", content_type="audio/wav")
    assert result.text == "transcribed words from audio"
    requests = [r for r in upstream.requests if r.path == "/v1/audio/transcriptions"]
    assert len(requests) == 2
    assert requests[-1].headers["content-type"].startswith("multipart/form-data")
    assert b'filename="clip.wav"' in requests[-1].body and b"whisper-1" in requests[-1].body


async def test_failures_never_log_upstream_bodies_or_the_key(  # type: ignore[no-untyped-def]
    upstream: FakeUpstream, make_provider, make_settings: SettingsFactory
) -> None:
    stream = io.StringIO()
    configure_logging(make_settings(OPENAI_API_KEY=API_KEY, LOG_LEVEL="DEBUG"), stream=stream)
    upstream.script(Fault.status_code(500), Fault.status_code(401))
    with pytest.raises(UpstreamError):
        await make_provider().complete(MESSAGES, OPTIONS)
    output = stream.getvalue()
    events = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    failures = [e for e in events if e.get("event") == "upstream_attempt_failed"]
    assert [f["status"] for f in failures] == [500, 401]
    assert SECRET_IN_ERROR not in output and API_KEY not in output


@pytest.mark.parametrize("stream", [False, True])
async def test_huge_upstream_answers_are_refused_not_buffered(  # type: ignore[no-untyped-def]
    upstream: FakeUpstream, make_provider, stream: bool
) -> None:
    from bastion.llm.openai import MAX_RESPONSE_BYTES

    upstream.script(Fault.huge(MAX_RESPONSE_BYTES + 1024 * 1024))
    provider = make_provider(retries=2)
    with pytest.raises(UpstreamError):
        if stream:
            async for _chunk in provider.stream(MESSAGES, OPTIONS):
                pass
        else:
            await provider.complete(MESSAGES, OPTIONS)
    assert upstream.count() == 1  # an oversized answer is not retried
