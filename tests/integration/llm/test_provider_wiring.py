# SPDX-License-Identifier: Apache-2.0
"""The lifespan builds the configured provider; readiness reports its breaker."""

from __future__ import annotations

import pytest

from bastion.llm.metered import MeteredProvider
from bastion.llm.offline import OfflineProvider
from bastion.llm.openai import OpenAICompatibleProvider
from bastion.settings import ConfigurationError
from tests.conftest import SettingsFactory, serve_app
from tests.support.fake_upstream import FakeUpstream, Fault


async def test_offline_by_default(make_settings: SettingsFactory) -> None:
    async with serve_app(make_settings()) as (app, http):
        # The provider is wrapped once, to count its calls (bastion_model_calls_total).
        assert isinstance(app.state.llm, MeteredProvider)
        assert isinstance(app.state.llm.provider, OfflineProvider)
        assert (await http.get("/health/ready")).json()["model"] == "offline"


async def test_openai_compatible_provider_and_breaker_in_readiness(make_settings: SettingsFactory) -> None:
    with FakeUpstream() as upstream:
        settings = make_settings(
            LLM_PROVIDER="openai",
            LLM_BASE_URL=upstream.base_url,
            LLM_MODEL="fake-model",
            LLM_MAX_RETRIES=0,
            LLM_BREAKER_THRESHOLD=1,
        )
        async with serve_app(settings) as (app, http):
            assert isinstance(app.state.llm, MeteredProvider)
            provider = app.state.llm.provider
            assert isinstance(provider, OpenAICompatibleProvider)
            assert (await http.get("/health/ready")).json()["model"] == "closed"
            upstream.script(Fault.status_code(500))
            from bastion.errors import UpstreamError
            from bastion.llm.base import ChatMessage, GenerationOptions

            with pytest.raises(UpstreamError):
                await provider.complete([ChatMessage("user", "hi")], GenerationOptions())
            ready = await http.get("/health/ready")
            assert ready.status_code == 200  # reported, but the instance stays in rotation
            assert ready.json()["model"] == "open"


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"LLM_PROVIDER": "openai", "LLM_MODEL": "m"}, "LLM_BASE_URL must be an http\\(s\\) URL"),
        ({"LLM_PROVIDER": "openai", "LLM_BASE_URL": "ftp://x", "LLM_MODEL": "m"}, "LLM_BASE_URL must be"),
        ({"LLM_PROVIDER": "openai", "LLM_BASE_URL": "https://x/v1"}, "LLM_MODEL is required"),
    ],
)
def test_openai_provider_needs_url_and_model(
    make_settings: SettingsFactory, overrides: dict[str, str], problem: str
) -> None:
    with pytest.raises(ConfigurationError, match=problem):
        make_settings(**overrides)
