# SPDX-License-Identifier: Apache-2.0
"""The official `openai` SDK as a client of Bastion's /v1, against a real server process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.e2e.conftest import bastion_server
from tests.support.fake_upstream import FakeUpstream, Fault

pytestmark = pytest.mark.e2e
PASSWORD = "Correct-Horse-9x!"


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as server:
        yield server


def access_token(url: str, email: str) -> str:
    with httpx.Client(base_url=url, timeout=10) as http:
        assert http.post("/api/auth/register", json={"email": email, "password": PASSWORD}).status_code == 201
        login = http.post("/api/auth/login", json={"email": email, "password": PASSWORD})
        assert login.status_code == 200, login.text
        return str(login.json()["access_token"])


def test_sdk_non_streaming_and_streaming(workdir: Path, upstream: FakeUpstream) -> None:
    env = {
        "LLM_PROVIDER": "openai",
        "LLM_BASE_URL": upstream.base_url,
        "LLM_MODEL": "fake-model",
        "LLM_MAX_RETRIES": "0",
    }
    with bastion_server(workdir, env) as (url, _log):
        client = openai.OpenAI(
            base_url=f"{url}/v1", api_key=access_token(url, "sdk@example.com"), max_retries=0
        )
        completion = client.chat.completions.create(
            model="fake-model", messages=[{"role": "user", "content": "hello from the sdk"}]
        )
        assert completion.choices[0].message.content == "echo: hello from the sdk"
        assert completion.usage is not None and completion.usage.total_tokens > 0
        stream = client.chat.completions.create(
            model="fake-model",
            messages=[{"role": "user", "content": "stream this please"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        parts, usage = [], None
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                parts.append(chunk.choices[0].delta.content)
            usage = chunk.usage or usage
        assert "".join(parts) == "echo: stream this please"
        assert usage is not None and usage.completion_tokens == 4
        # Failures surface as the SDK's own exceptions, with Bastion's status codes.
        upstream.script(Fault.status_code(500))
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
        assert caught.value.status_code == 502
        bad = openai.OpenAI(base_url=f"{url}/v1", api_key="not-a-token", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            bad.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])


def test_async_sdk_on_the_offline_model(workdir: Path) -> None:
    import asyncio

    with bastion_server(workdir) as (url, _log):
        token = access_token(url, "async@example.com")

        async def run() -> str:
            client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=token, max_retries=0)
            try:
                # A client that lists the models first finds the offline model, as a user.
                listed = [model async for model in client.models.list()]
                assert [(m.id, m.object, m.owned_by) for m in listed] == [
                    ("bastion-offline-1", "model", "bastion")
                ]
                stream = await client.chat.completions.create(
                    model="offline", messages=[{"role": "user", "content": "I feel lonely."}], stream=True
                )
                return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
            finally:
                await client.close()

        assert "lonely" in asyncio.run(run())


def test_sdk_with_a_bastion_api_key(workdir: Path, upstream: FakeUpstream) -> None:
    env = {"LLM_PROVIDER": "openai", "LLM_BASE_URL": upstream.base_url, "LLM_MODEL": "fake-model"}
    with bastion_server(workdir, env) as (url, _log):
        token = access_token(url, "keyed@example.com")
        with httpx.Client(base_url=url, timeout=10) as http:
            created = http.post(
                "/api/keys",
                json={"name": "sdk", "scopes": ["completions"]},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert created.status_code == 201, created.text
            key = created.json()["key"]
            chat_only = http.post(
                "/api/keys",
                json={"name": "chat", "scopes": ["chat"]},
                headers={"Authorization": f"Bearer {token}"},
            ).json()["key"]
        assert key.startswith("bst_")
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
        # GET /v1/models names the configured model (LLM_MODEL), under the key's completions scope.
        assert [model.id for model in client.models.list()] == ["fake-model"]
        with pytest.raises(openai.PermissionDeniedError):
            openai.OpenAI(base_url=f"{url}/v1", api_key=chat_only, max_retries=0).models.list()
        reply = client.chat.completions.create(
            model="fake-model", messages=[{"role": "user", "content": "via key"}]
        )
        assert reply.choices[0].message.content == "echo: via key"
        streamed = "".join(
            c.choices[0].delta.content or ""
            for c in client.chat.completions.create(
                model="fake-model", messages=[{"role": "user", "content": "streamed via key"}], stream=True
            )
            if c.choices
        )
        assert streamed == "echo: streamed via key"
        wrong = openai.OpenAI(base_url=f"{url}/v1", api_key=key[:-2] + "zz", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            wrong.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
