# SPDX-License-Identifier: Apache-2.0
"""Builds the chat services from the collaborators the lifespan put on app state."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from bastion.audit.service import AuditService
from bastion.chat.budget import BudgetGuard
from bastion.chat.completions import CompletionService
from bastion.chat.screening import Origin, Screen
from bastion.chat.service import DEFAULT_SYSTEM_PROMPT, ChatLimits, ChatService
from bastion.guard import canary_instruction
from bastion.observability.metrics import state_metrics
from bastion.settings import Settings


def build_budget_guard(state: Any, settings: Settings) -> BudgetGuard:
    """The daily token budget with the completion cap and transcription price it reserves by."""
    return BudgetGuard(
        state.token_budget,
        max_completion_tokens=settings.llm_max_completion_tokens,
        transcription_tokens_per_mb=settings.transcription_tokens_per_mb,
        observer=getattr(state, "anomaly", None),
    )


def build_screen(state: Any, origin: Origin) -> Screen:
    """The app's one guard, applied to the texts of the request ``origin`` names."""
    return Screen(
        guard=state.guard,
        audit=AuditService(sessionmaker=state.sessionmaker),
        origin=origin,
        metrics=state_metrics(state),
    )


def system_prompt(canary: str) -> str:
    """The chat system prompt, carrying the deployment's canary (its leak is caught in replies).

    The canary comes first: a model reciting its prompt from the top recites the canary before
    anything else, so the stream scanner withholds the recital before any of it is sent.
    """
    return f"{canary_instruction(canary)}\n\n{DEFAULT_SYSTEM_PROMPT}"


def build_chat_service(state: Any, settings: Settings, origin: Origin | None = None) -> ChatService:
    return ChatService(
        sessionmaker=state.sessionmaker,
        provider=state.llm,
        cipher=state.cipher,
        limits=ChatLimits(
            max_history_messages=settings.max_history_messages,
            session_ttl=timedelta(minutes=settings.session_ttl_minutes),
        ),
        quota=state.session_quota,
        budget=build_budget_guard(state, settings),
        screen=build_screen(state, origin or Origin()),
        system_prompt=system_prompt(state.canary),
    )


def build_completion_service(state: Any, settings: Settings, origin: Origin) -> CompletionService:
    return CompletionService(
        provider=state.llm,
        budget=build_budget_guard(state, settings),
        screen=build_screen(state, origin),
        canary_prompt=canary_instruction(state.canary),
    )


@dataclass(frozen=True, slots=True)
class TextServices:
    """The chat, /v1 and guard services, built once when the app starts (``lifespan``); a request
    takes them for its origin, which only swaps the screen's record of who sent the texts."""

    chat: ChatService
    completions: CompletionService
    screen: Screen

    @classmethod
    def build(cls, state: Any, settings: Settings) -> TextServices:
        return cls(
            chat=build_chat_service(state, settings),
            completions=build_completion_service(state, settings, Origin()),
            screen=build_screen(state, Origin()),
        )

    def chat_for(self, origin: Origin) -> ChatService:
        service = copy.copy(self.chat)
        service.screen = self.screen.at(origin)
        return service

    def completions_for(self, origin: Origin) -> CompletionService:
        service = copy.copy(self.completions)
        service.screen = self.screen.at(origin)
        return service

    def screen_for(self, origin: Origin) -> Screen:
        return self.screen.at(origin)
