# SPDX-License-Identifier: Apache-2.0
"""The chat, /v1 and guard services are built once; each request takes them for its own origin."""

from __future__ import annotations

from typing import Any

from bastion.chat.completions import CompletionService
from bastion.chat.screening import Origin, Screen
from bastion.chat.service import ChatLimits, ChatService
from bastion.chat.wiring import TextServices


def services() -> TextServices:
    shared: dict[str, Any] = {
        name: object() for name in ("sessionmaker", "provider", "cipher", "quota", "budget")
    }
    screen = Screen(guard=object(), audit=object(), origin=Origin())  # type: ignore[arg-type]
    chat = ChatService(limits=ChatLimits(max_history_messages=5), screen=screen, **shared)
    completions = CompletionService(
        provider=shared["provider"], budget=shared["budget"], screen=screen, canary_prompt="canary"
    )
    return TextServices(chat=chat, completions=completions, screen=screen)


def test_each_request_gets_its_own_origin_and_the_shared_parts() -> None:
    built = services()
    alice, bob = Origin(request_id="r-1", user_id="alice"), Origin(request_id="r-2", api_key_id="k-1")
    first, second = built.chat_for(alice), built.chat_for(bob)
    assert (first.screen.origin, second.screen.origin) == (alice, bob)
    for service in (first, second):
        assert service is not built.chat
        assert (service.provider, service.budget, service.quota, service.limits) == (
            built.chat.provider,
            built.chat.budget,
            built.chat.quota,
            built.chat.limits,
        )
        assert service.screen.guard is built.screen.guard and service.screen.audit is built.screen.audit
    completion = built.completions_for(bob)
    assert completion.screen.origin == bob and completion.provider is built.completions.provider
    assert built.screen_for(alice).origin == alice
    # The services built once still name nobody: a request's origin never leaks into the next.
    assert built.chat.screen.origin == built.completions.screen.origin == built.screen.origin == Origin()
