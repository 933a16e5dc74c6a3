# SPDX-License-Identifier: Apache-2.0
"""Builds the chat service from the collaborators the lifespan put on app state."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from bastion.chat.service import ChatLimits, ChatService
from bastion.settings import Settings


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
        budget=state.token_budget,
    )
