# SPDX-License-Identifier: Apache-2.0
"""Builds the configured provider from settings and the lifespan's shared clients."""

from __future__ import annotations

from bastion.llm.base import Provider
from bastion.llm.breaker import BreakerConfig
from bastion.llm.breaker_store import BreakerStore, FailoverBreakerStore, MemoryBreakerStore
from bastion.llm.offline import OfflineProvider
from bastion.llm.openai import OpenAICompatibleProvider
from bastion.llm.retry import RetryPolicy
from bastion.redis_client import RedisClient
from bastion.settings import Settings


def breaker_store(redis: RedisClient | None) -> BreakerStore:
    """Shared through Redis when there is one, so every instance opens and closes together; in
    process while Redis cannot answer (``FailoverBreakerStore``: never a 503 for breaker state)."""
    return FailoverBreakerStore.over(redis) if redis is not None else MemoryBreakerStore()


def build_provider(settings: Settings, *, redis: RedisClient | None) -> Provider:
    if settings.llm_provider == "offline":
        return OfflineProvider()
    if not settings.llm_base_url or not settings.llm_model:  # settings validation refuses this earlier
        raise ValueError("LLM_BASE_URL and LLM_MODEL are required for LLM_PROVIDER=openai")
    return OpenAICompatibleProvider(
        base_url=settings.llm_base_url,
        model=settings.llm_model,
        api_key=settings.secret("OPENAI_API_KEY"),
        timeout=settings.llm_timeout_seconds,
        retry=RetryPolicy(max_retries=settings.llm_max_retries),
        breaker=breaker_store(redis),
        breaker_config=BreakerConfig(
            failure_threshold=settings.llm_breaker_threshold,
            recovery_seconds=settings.llm_breaker_recovery_seconds,
        ),
        transcription_model=settings.llm_transcription_model,
    )
