# SPDX-License-Identifier: Apache-2.0
"""Erasing an account for real: its rows go, its sessions end everywhere, its quota is released.

One write transaction removes the user, their sessions and refresh/reset tokens, chat sessions
and messages, journal entries and API keys (the person's and every key's), clears the address of
each invitation they spent, clears the client address of every audit record naming them or their
keys, and adds the erasure's own audit record (ids only). PostgreSQL and SQLite both run it
whole or not at all. What lives outside the database follows once it is committed: the ended
sessions go to the denylist, every instance drops its cached keys, the chat sessions' quota slots
are released. Each of those is logged when it cannot be done and is covered by a second line: a
token of an erased user names no account any more, a cached key lives API_KEY_CACHE_SECONDS at
most, a quota slot frees itself after SESSION_TTL_MINUTES idle.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bastion.audit.events import AuditEvent
from bastion.audit.repository import AuditRepository
from bastion.audit.service import new_record
from bastion.audit.sinks import fanout_of
from bastion.auth.api_key_repository import ApiKeyRepository
from bastion.auth.repository import IdentityRepository
from bastion.auth.service import WRONG_PASSWORD, Context, IdentityService
from bastion.chat.repository import ChatRepository
from bastion.db.session import unit_of_work
from bastion.errors import NotFound
from bastion.journal.repository import JournalRepository
from bastion.observability.logging import get_logger
from bastion.ownership import Owner
from bastion.ratelimit.quotas import SessionQuota


@dataclass(frozen=True, slots=True)
class Erased:
    """What one erasure removed (counts and the erased id; nothing that was in the rows)."""

    user_id: str
    chat_sessions: int
    journal_entries: int
    api_keys: int
    sessions_ended: int


class AccountErasure:
    """Erases accounts with the identity service's store, denylist and clock.

    ``quota`` releases the erased chat sessions' slots (None where no limiter runs: the slots then
    free themselves once idle); ``keys_changed`` tells every instance to drop its cached keys.
    """

    def __init__(
        self,
        *,
        identity: IdentityService,
        quota: SessionQuota | None,
        keys_changed: Callable[[], Awaitable[None]] | None,
    ) -> None:
        self.identity = identity
        self.quota = quota
        self.keys_changed = keys_changed
        self.log = get_logger("bastion.privacy")

    async def erase_own(self, user_id: str, password: str, context: Context) -> Erased:
        """The person erases their own account, after giving their password again.

        The password is checked by ``verify_password_attempt``: a wrong one counts like a failed
        login (the same throttle and automatic blocks) and is audited as a failed erasure.
        """
        user = await self.identity.me(user_id)
        await self.identity.verify_password_attempt(
            self.identity.email_of(user),
            user,
            password,
            context,
            event=AuditEvent.ACCOUNT_ERASED,
            message=WRONG_PASSWORD,
        )
        # The record of a self-erasure keeps no address: it would be the erased person's.
        return await self.erase(user_id, Context(ip=None, request_id=context.request_id), actor_id=user_id)

    async def erase(self, user_id: str, context: Context, *, actor_id: str | None) -> Erased:
        """Erase ``user_id`` (``NotFound`` when there is no such account); ``actor_id`` is who
        asked (the user, an administrator, or None for an operator's command)."""
        now = self.identity.clock()
        async with unit_of_work(self.identity.sessionmaker) as session:
            keys = ApiKeyRepository(session)
            key_ids = list(await keys.ids_of(user_id))
            chats = await ChatRepository(session).erase_account(user_id, key_ids)
            entries = await JournalRepository(session).erase_account(user_id, key_ids)
            removed_keys = await keys.delete_of(user_id)
            ended = await IdentityRepository(session).erase_user(user_id, now=now)
            if ended is None:
                raise NotFound()  # rolls back: nothing was there to erase
            audit = AuditRepository(session)
            await audit.forget_addresses([user_id, *key_ids])
            erased = Erased(user_id, len(chats), entries, removed_keys, len(ended))
            record = await audit.append(
                new_record(
                    AuditEvent.ACCOUNT_ERASED,
                    timestamp=now,
                    actor_type="user" if actor_id else "operator",
                    actor_id=actor_id,
                    target_type="user",
                    target_id=user_id,
                    ip=context.ip,
                    request_id=context.request_id,
                    details={
                        "chat_sessions": erased.chat_sessions,
                        "journal_entries": erased.journal_entries,
                        "api_keys": erased.api_keys,
                        "sessions_ended": erased.sessions_ended,
                    },
                )
            )
        await fanout_of(self.identity.sessionmaker).publish(record)
        await self._after_commit(ended, chats, bool(key_ids))
        return erased

    async def _after_commit(self, ended: list[str], chats: list[tuple[str, Owner]], had_keys: bool) -> None:
        # The user-wide form: a denylist that cannot be written is logged, not raised (the tokens
        # of an account that no longer exists are refused by the user lookup anyway).
        await self.identity.end_sessions(ended, user_wide=True)
        if had_keys and self.keys_changed is not None:
            try:
                await self.keys_changed()
            except Exception as exc:
                self.log.warning("erasure_key_cache_not_dropped", error=type(exc).__name__)
        if self.quota is None:
            return
        for session_id, owner in chats:
            try:
                await self.quota.release(session_id, owner=owner.identity)
            except Exception as exc:
                self.log.warning("erasure_quota_not_released", error=type(exc).__name__)
                return
