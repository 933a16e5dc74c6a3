# SPDX-License-Identifier: Apache-2.0
"""Builds the chat services from the collaborators the lifespan put on app state."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from bastion.chat.budget import BudgetGuard
from bastion.chat.completions import CompletionService
from bastion.chat.service import ChatLimits, ChatService
from bastion.settings import Settings


def build_budget_guard(state: Any, settings: Settings) -> BudgetGuard:
    """The daily token budget with the completion cap and transcription price it reserves by."""
    return BudgetGuard(
        state.token_budget,
        max_completion_tokens=settings.llm_max_completion_tokens,
        transcription_tokens_per_mb=settings.transcription_tokens_per_mb,
    )


def build_chat_service(state: Any, settings: Settings) -> ChatService:
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
    )


def build_completion_service(state: Any, settings: Settings) -> CompletionService:
    return CompletionService(provider=state.llm, budget=build_budget_guard(state, settings))
