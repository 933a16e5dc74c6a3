# SPDX-License-Identifier: Apache-2.0
"""Chat rules: sessions with caps and idle expiry, messages persisted before the model is called.

Texts reach the service already screened by the content guard (``chat/screening.py``); replies
are screened here, before they are sent or stored, so a withheld leak never enters the history.
The daily token budget reserves the call's worst case before anything is stored (see
``chat/budget.py``); what the user wrote is then committed before the provider is asked, so an
upstream failure never loses it. The reply is committed when it completes; a stream cut short
(upstream break or client gone) commits what was produced, marked incomplete. Message text is
sealed with the field cipher, bound to its session and message id.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

import anyio
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bastion.chat.budget import BudgetGuard, LimitGate, Meter
from bastion.chat.models import ChatSession, MessageStatus, NewMessage, new_session_id
from bastion.chat.repository import (
    ChatRepository,
    MessageLog,
    MessageRow,
    Owner,
    SessionRow,
    Turn,
    history_page,
    owned_session,
    session_page,
)
from bastion.chat.screening import Reply, Screen
from bastion.chat.views import MessageView, Page, SessionView, StreamEvent
from bastion.crypto.fields import FieldCipher
from bastion.crypto.randomness import new_id
from bastion.crypto.registry import CHAT_MESSAGE_CONTENT, CHAT_SESSION_TITLE
from bastion.db.session import read_batch, unit_of_work, write_batch
from bastion.db.types import utcnow
from bastion.errors import Conflict, NotFound
from bastion.llm import base as llm
from bastion.llm.base import GenerationOptions, Provider, StreamInterrupted, Transcription, Usage
from bastion.observability.logging import log_own
from bastion.observability.redaction import Own
from bastion.ratelimit.quotas import SessionQuota

DEFAULT_SYSTEM_PROMPT = (
    "You are a supportive, careful assistant in a wellbeing app. Listen, reflect, and ask open "
    "questions. You are not a clinician; encourage professional or emergency help when someone "
    "may be at risk."
)
MAX_PAGE = 100
_SPOKEN = ("user", "assistant")  # the history's roles a prompt carries


def _session_not_found() -> NotFound:
    # Someone else's session, an expired one and a made-up id all look the same: 404.
    return NotFound("Chat session not found")


class SessionLimitReached(Conflict):
    code = "session_limit"
    default_message = "Too many active chat sessions; delete one or wait for one to expire"


@dataclass(frozen=True, slots=True)
class ChatLimits:
    max_history_messages: int = 100
    session_ttl: timedelta = timedelta(minutes=90)


class ChatService:
    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        provider: Provider,
        cipher: FieldCipher,
        limits: ChatLimits,
        quota: SessionQuota,
        budget: BudgetGuard,
        screen: Screen,
        system_prompt: str = DEFAULT_SYSTEM_PROMPT,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._sessionmaker = sessionmaker
        self.provider = provider
        self.cipher = cipher
        self.quota = quota
        self.budget = budget
        self.screen = screen
        self.limits = limits
        self.system_prompt = system_prompt
        self.clock = clock

    # -- sessions ----------------------------------------------------------------------------

    def _active_since(self) -> datetime:
        return self.clock() - self.limits.session_ttl

    async def create_session(self, owner: Owner, *, title: str | None) -> SessionView:
        """A new session, within the per-owner and total caps of active sessions (the quota)."""
        now = self.clock()
        chat = ChatSession(
            id=new_session_id(),
            owner_user_id=owner.user_id,
            owner_api_key_id=owner.api_key_id,
            created_at=now,
            last_active_at=now,
            message_count=0,
            prompt_tokens=0,
            completion_tokens=0,
        )
        slot = await self.quota.acquire(chat.id, owner=owner.identity)
        if not slot.acquired:
            if slot.owner_active is not None and slot.owner_active >= self.quota.per_owner:
                raise SessionLimitReached()
            raise SessionLimitReached("The service has too many active chat sessions; try again later")
        try:
            if title is not None:
                chat.title_ciphertext = CHAT_SESSION_TITLE.seal(self.cipher, title, chat.id)
            async with unit_of_work(self._sessionmaker) as db:
                await ChatRepository(db).add_session(chat)
        except BaseException:
            await self.quota.release(chat.id, owner=owner.identity)
            raise
        return self._session_view(chat)

    async def list_sessions(self, owner: Owner, *, before: datetime | None, limit: int) -> list[SessionView]:
        size = min(max(limit, 1), MAX_PAGE)
        page = session_page(owner, active_since=self._active_since(), before=before, limit=size)
        return [self._session_view(row) for row in await read_batch(self._sessionmaker, page)]

    async def get_session(self, owner: Owner, session_id: str) -> SessionView:
        row = await read_batch(
            self._sessionmaker, owned_session(session_id, owner, active_since=self._active_since())
        )
        if row is None:
            raise _session_not_found()
        return self._session_view(row)

    async def delete_session(self, owner: Owner, session_id: str) -> None:
        async with unit_of_work(self._sessionmaker) as db:
            if not await ChatRepository(db).delete_session(session_id, owner):
                raise _session_not_found()
        await self.quota.release(session_id, owner=owner.identity)

    # -- messages ----------------------------------------------------------------------------

    async def history(self, owner: Owner, session_id: str, *, before: int | None, limit: int) -> Page:
        size = min(max(limit, 1), MAX_PAGE)
        rows = await read_batch(
            self._sessionmaker,
            history_page(session_id, owner, active_since=self._active_since(), before_seq=before, limit=size),
        )
        if rows is None:
            raise _session_not_found()
        items = [self._message_view(row) for row in rows]
        next_before = items[0].seq if len(items) == size and items[0].seq > 1 else None
        return Page(items=items, next_before=next_before)

    def _prompt(self, session_id: str, content: str, turn: Turn) -> list[llm.ChatMessage]:
        """The prompt for the message of ``turn``: the system prompt, recent history and the
        message itself."""
        history = [
            (role, message_id, ciphertext) for message_id, role, ciphertext in turn.recent if role in _SPOKEN
        ]
        texts = CHAT_MESSAGE_CONTENT.open_many(
            self.cipher, [(ciphertext, f"{session_id}:{message_id}") for _, message_id, ciphertext in history]
        )
        return [
            llm.ChatMessage("system", self.system_prompt),
            *(llm.ChatMessage(role, text) for (role, _, _), text in zip(history, texts, strict=True)),  # type: ignore[arg-type]
            llm.ChatMessage("user", content),
        ]

    async def _begin_call(
        self,
        stack: AsyncExitStack,
        owner: Owner,
        session_id: str,
        content: str,
        options: GenerationOptions,
        gate: LimitGate | None,
    ) -> tuple[list[llm.ChatMessage], Meter]:
        """The message's one transaction before the model is asked: reserve the message's place
        in the owner's session, store the user's message in it, read the prompt, admit the call.

        The admission (the route's limits, the budget's worst case for this prompt, the session's
        quota slot) is one Redis round trip made inside the transaction, before it commits: a
        refusal rolls the transaction back and stores nothing. The budget's meter is entered on
        ``stack``, which settles it however the call ends; the transaction is committed before the
        model is called.
        """
        now = self.clock()
        message = self._sealed(session_id, "user", content, now=now)
        async with write_batch(self._sessionmaker, on_loop=True) as batch:
            turn = await MessageLog(batch).open_turn(
                message,
                owner,
                active_since=self._active_since(),
                now=now,
                history=self.limits.max_history_messages - 1,
            )
            if turn is None:
                raise _session_not_found()
            prompt = self._prompt(session_id, content, turn)
            renewal = self.quota.renewal(session_id, owner=owner.identity)
            meter = await stack.enter_async_context(
                self.budget.completion(owner.identity, prompt, options, gate=gate, renewal=renewal)
            )
        return prompt, meter

    async def send(
        self,
        owner: Owner,
        session_id: str,
        content: str,
        options: GenerationOptions,
        *,
        gate: LimitGate | None = None,
    ) -> MessageView:
        """Post a screened message and return the stored, screened reply.

        ``gate``: the route's rate limits, decided with the budget (see ``_begin_call``).
        Upstream failures raise after the message is kept.
        """
        async with AsyncExitStack() as stack:
            prompt, meter = await self._begin_call(stack, owner, session_id, content, options, gate)
            meter.calling()
            completion = await self.provider.complete(prompt, meter.options)
            meter.finish(completion.usage)
        reply = await self.screen.check_reply(completion.content, session_id=session_id)
        return await self._store_reply(
            session_id,
            reply,
            status=MessageStatus.COMPLETE,
            usage=completion.usage,
            model=completion.model,
        )

    def stream(
        self,
        owner: Owner,
        session_id: str,
        content: str,
        options: GenerationOptions,
        *,
        gate: LimitGate | None = None,
    ) -> AsyncIterator[StreamEvent]:
        """Post a message and stream the reply.

        An unknown session, a refused limit or budget and errors before the first chunk (breaker
        open) raise from the first ``__anext__``, so the caller can still answer with a plain
        error response. The budget's reservation lives inside the stream, settled however it ends.
        """
        return self._stream_reply(owner, session_id, content, options, gate)

    async def _stream_reply(
        self,
        owner: Owner,
        session_id: str,
        content: str,
        options: GenerationOptions,
        gate: LimitGate | None,
    ) -> AsyncIterator[StreamEvent]:
        async with AsyncExitStack() as stack:
            prompt, meter = await self._begin_call(stack, owner, session_id, content, options, gate)
            # Deltas pass the guard's hold-back scanner: only text known not to leak is sent.
            screened = self.screen.reply_stream(session_id=session_id)
            usage: Usage | None = None
            stored = False
            meter.calling()
            try:
                async for chunk in self.provider.stream(prompt, meter.options):
                    if chunk.delta:
                        meter.produced(chunk.delta)
                        if released := screened.feed(chunk.delta):
                            yield StreamEvent(delta=released)
                    usage = chunk.usage or usage
                meter.finish(usage)
                reply = await screened.finish()
                message = await self._store_reply(
                    session_id, reply, status=MessageStatus.COMPLETE, usage=usage, model=self.provider.model
                )
                stored = True
                yield StreamEvent(delta=reply.unsent, message=message)
            except StreamInterrupted:
                reply = await screened.finish()
                message = await self._store_partial(session_id, reply)
                stored = True
                yield StreamEvent(delta=reply.unsent, message=message, error="upstream_interrupted")
            finally:
                if not stored and screened.released:
                    # The client went away mid-stream (or the task was cancelled): keep what it was
                    # sent, all of it screened; the held-back rest was never seen by anyone.
                    with anyio.CancelScope(shield=True):
                        await self._store_partial(session_id, Reply(screened.released))

    async def transcribe(
        self, owner: Owner, audio: Path, *, filename: str, content_type: str, size: int
    ) -> Transcription:
        """Speech to text for an uploaded file, charged to the budget by its size."""
        async with self.budget.transcription(owner.identity, size) as meter:
            meter.calling()
            transcript = await self.provider.transcribe(audio, filename=filename, content_type=content_type)
            meter.finish_at(meter.reserved)
        return transcript

    async def _store_partial(self, session_id: str, reply: Reply) -> MessageView:
        return await self._store_reply(
            session_id,
            reply,
            status=MessageStatus.INCOMPLETE,
            usage=None,
            model=self.provider.model,
        )

    async def _store_reply(
        self,
        session_id: str,
        reply: Reply,
        *,
        status: MessageStatus,
        usage: Usage | None,
        model: str,
    ) -> MessageView:
        """Store a screened reply; a withheld one is stored as its replacement, never the leak."""
        now = self.clock()
        message = self._sealed(
            session_id,
            "assistant",
            reply.text,
            now=now,
            status=MessageStatus.WITHHELD if reply.withheld else status,
            provider=self.provider.name,
            model=model,
            usage=usage,
        )
        if usage is not None:
            # Token accounting: a log event for usage metrics (the tokens are spent, stored or not).
            # Bastion's own text but for a model name the upstream chose, which the chain scans.
            log_own(
                "bastion.chat",
                logging.INFO,
                "model_usage",
                {
                    "session_id": Own(session_id),  # an owned session's id: checked by _begin_call
                    "provider": Own(self.provider.name),
                    "model": Own(model) if model == self.provider.model else model,
                    "prompt_tokens": usage.prompt_tokens,
                    "completion_tokens": usage.completion_tokens,
                    "status": Own(status),
                },
            )
        async with write_batch(self._sessionmaker, on_loop=True) as batch:
            # Token accounting per message and per session: the totals grow with the reply's place.
            seq = await MessageLog(batch).add_reply(
                message,
                prompt_tokens=usage.prompt_tokens if usage is not None else 0,
                completion_tokens=usage.completion_tokens if usage is not None else 0,
            )
        if seq is None:
            raise _session_not_found()  # deleted while the model answered
        message.seq = seq
        return replace(self._message_view(message, content=reply.text), warnings=reply.warnings)

    # -- sealing -----------------------------------------------------------------------------

    def _sealed(
        self,
        session_id: str,
        role: str,
        text: str,
        *,
        now: datetime,
        status: MessageStatus = MessageStatus.COMPLETE,
        provider: str | None = None,
        model: str | None = None,
        usage: Usage | None = None,
    ) -> NewMessage:
        """A new message, its text sealed to its row; its ``seq`` is given when its place is taken."""
        message_id = new_id()
        return NewMessage(
            id=message_id,
            session_id=session_id,
            role=role,
            content_ciphertext=CHAT_MESSAGE_CONTENT.seal(self.cipher, text, f"{session_id}:{message_id}"),
            status=status,
            provider=provider,
            model=model,
            prompt_tokens=usage.prompt_tokens if usage is not None else None,
            completion_tokens=usage.completion_tokens if usage is not None else None,
            created_at=now,
        )

    def _open_text(self, session_id: str, message_id: str, ciphertext: str) -> str:
        return CHAT_MESSAGE_CONTENT.open(self.cipher, ciphertext, f"{session_id}:{message_id}")

    def _session_view(self, chat: ChatSession | SessionRow) -> SessionView:
        title = (
            CHAT_SESSION_TITLE.open(self.cipher, chat.title_ciphertext, chat.id)
            if chat.title_ciphertext
            else None
        )
        return SessionView(
            id=chat.id,
            title=title,
            created_at=chat.created_at,
            last_active_at=chat.last_active_at,
            expires_at=chat.last_active_at + self.limits.session_ttl,
            message_count=chat.message_count,
            prompt_tokens=chat.prompt_tokens,
            completion_tokens=chat.completion_tokens,
        )

    def _message_view(self, message: NewMessage | MessageRow, *, content: str | None = None) -> MessageView:
        """The view of a stored message; ``content``: its text when already known (just sealed)."""
        return MessageView(
            id=message.id,
            session_id=message.session_id,
            seq=message.seq,
            role=message.role,
            content=content
            if content is not None
            else self._open_text(message.session_id, message.id, message.content_ciphertext),
            status=message.status,
            created_at=message.created_at,
            provider=message.provider,
            model=message.model,
            prompt_tokens=message.prompt_tokens,
            completion_tokens=message.completion_tokens,
            offline=message.provider == "offline",
        )
