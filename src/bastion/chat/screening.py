# SPDX-License-Identifier: Apache-2.0
"""The content guard on what goes to the model and what comes back, each verdict accounted for.

Input (a chat message, a voice transcript, the user messages of a /v1 request) is scanned once,
before anything is reserved or stored: ``block`` raises ``GuardBlocked`` (a 422), otherwise the
normalized text of the verdict (invisible characters gone, homoglyphs folded by NFKC, dangerous
links neutralized) is what the model receives and what is stored.

Replies are scanned before they are sent or stored. A leak (the deployment's canary, the system
prompt, a secret, a data-exfiltration link) is withheld and replaced by ``WITHHELD_REPLY``; a
``flag`` verdict (profanity, a neutralized link) passes with its categories, which the routes
send as the Content-Warning header. Streams go through the guard's ``StreamScanner``: it holds
back enough of the reply to catch a canary split across chunks before any part of it is sent.

Every verdict that is not a plain allow is a structured log line; ``flag`` and ``block`` are
audit events too (INJECTION_ACTION=log makes a suspected injection an allow that is only logged).
Both carry ids, direction, categories, score and action; never the text.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

from bastion.audit.events import AuditEvent, Result
from bastion.audit.service import AuditService
from bastion.errors import GuardBlocked
from bastion.guard import Action, Direction, Guard, ScanContext, StreamScanner, Verdict
from bastion.observability.logging import get_logger
from bastion.observability.metrics import NULL_METRICS, NullMetrics

WITHHELD_REPLY = "This reply was withheld by the content guard. Please ask in another way."

_EVENTS = {
    (Direction.input, Action.flag): AuditEvent.GUARD_INPUT_FLAGGED,
    (Direction.input, Action.block): AuditEvent.GUARD_INPUT_BLOCKED,
    (Direction.output, Action.flag): AuditEvent.GUARD_OUTPUT_FLAGGED,
    (Direction.output, Action.block): AuditEvent.GUARD_OUTPUT_WITHHELD,
}
_RANK = {Action.allow: 0, Action.flag: 1, Action.block: 2}


@dataclass(frozen=True, slots=True)
class Origin:
    """Who sent the text and in which request: what the log line and the audit event name."""

    request_id: str | None = None
    ip: str | None = None
    user_id: str | None = None
    api_key_id: str | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    """A screened reply: the text to send and store, and what the guard said about it."""

    text: str
    #: categories of a flag verdict, for the Content-Warning header (empty when clean)
    warnings: tuple[str, ...] = ()
    withheld: bool = False
    #: the part of ``text`` a stream has not sent yet (the held-back rest, or the replacement)
    unsent: str = ""


class Screen:
    """The shared guard applied to one request's texts (``at`` gives the screen of a request: it
    names the caller in its log lines and audit events)."""

    def __init__(
        self, *, guard: Guard, audit: AuditService, origin: Origin, metrics: NullMetrics = NULL_METRICS
    ) -> None:
        self.guard = guard
        self.metrics = metrics
        self.audit = audit
        self.origin = origin
        self.log = get_logger("bastion.guard")

    def at(self, origin: Origin) -> Screen:
        """This screen for the texts of the request ``origin`` names."""
        screen = copy.copy(self)
        screen.origin = origin
        return screen

    async def check_input(self, text: str, *, field: str, scan_as: str, session_id: str | None = None) -> str:
        """The text the model may receive; raises ``GuardBlocked`` when the guard refuses it.

        ``field`` names the request field in an error; ``scan_as`` is the guard's field (its
        length limit): ``message``, ``transcript`` or ``content``.
        """
        return (await self.check_inputs([(field, text)], scan_as=scan_as, session_id=session_id))[0]

    async def check_inputs(
        self, texts: Sequence[tuple[str, str]], *, scan_as: str, session_id: str | None = None
    ) -> list[str]:
        """Several texts of one request ((field, text) pairs), each scanned once, recorded as one."""
        context = ScanContext(field=scan_as)
        verdicts = [(field, self.guard.scan_input(text, context)) for field, text in texts]
        if not verdicts:
            return []
        worst = max(verdicts, key=lambda pair: _RANK[pair[1].action])
        # one text (a chat message): its verdict is the request's
        merged = worst[1] if len(verdicts) == 1 else _merge([verdict for _, verdict in verdicts])
        await self.record(merged, Direction.input, field=worst[0], session_id=session_id)
        if merged.blocked:
            raise GuardBlocked(worst[0], [str(c) for c in worst[1].categories])
        return [verdict.text for _, verdict in verdicts]

    async def check_reply(self, text: str, *, session_id: str | None = None) -> Reply:
        """A whole reply screened: withheld and replaced when it leaks."""
        verdict = self.guard.scan_output(text)
        await self.record(verdict, Direction.output, field="reply", session_id=session_id)
        return _reply(verdict, verdict.text, unsent=verdict.text)

    def reply_stream(self, *, session_id: str | None = None) -> ReplyStream:
        return ReplyStream(self, self.guard.stream(), session_id=session_id)

    async def record(
        self, verdict: Verdict, direction: Direction, *, field: str, session_id: str | None
    ) -> None:
        if verdict.action is Action.allow and not verdict.categories:
            return  # a plain allow: nothing to log or audit
        categories = [str(c) for c in verdict.categories]
        score = round(verdict.score, 4)
        self.metrics.guard_verdict(str(direction), str(verdict.action), categories)
        self.log.warning(
            "guard_verdict",
            direction=str(direction),
            field=field,
            action=str(verdict.action),
            categories=categories,
            score=score,
            request_id=self.origin.request_id,
            session_id=session_id,
            user_id=self.origin.user_id,
            api_key_id=self.origin.api_key_id,
        )
        event = _EVENTS.get((direction, verdict.action))
        if event is None:  # allowed with categories: INJECTION_ACTION=log, logged only
            return
        await self.audit.record(
            event,
            result=Result.FAILURE if verdict.blocked else Result.SUCCESS,
            actor_type="api_key" if self.origin.api_key_id else "user",
            actor_id=self.origin.api_key_id or self.origin.user_id,
            target_type="chat_session" if session_id else None,
            target_id=session_id,
            ip=self.origin.ip,
            request_id=self.origin.request_id,
            details={
                "direction": str(direction),
                "field": field,
                "action": str(verdict.action),
                "categories": categories,
                "score": score,
                "user_id": self.origin.user_id,
            },
        )


class ReplyStream:
    """A streamed reply through the guard's hold-back scanner.

    ``feed`` returns what may be sent now; ``finish`` screens the whole reply, records the
    verdict and returns the rest to send (or the replacement, when the reply leaked).
    """

    def __init__(self, screen: Screen, scanner: StreamScanner, *, session_id: str | None) -> None:
        self._screen = screen
        self._scanner = scanner
        self._session_id = session_id
        self._released: list[str] = []

    def feed(self, delta: str) -> str:
        released = self._scanner.feed(delta)
        if released:
            self._released.append(released)
        return released

    @property
    def released(self) -> str:
        """Everything sent so far (all of it screened)."""
        return "".join(self._released)

    async def finish(self) -> Reply:
        """The whole screened reply (to store), with the rest still to send in ``unsent``."""
        rest, verdict = self._scanner.finish()
        await self._screen.record(verdict, Direction.output, field="reply", session_id=self._session_id)
        return _reply(verdict, self.released + rest, unsent=rest)


def _reply(verdict: Verdict, text: str, *, unsent: str) -> Reply:
    if verdict.blocked:
        return Reply(WITHHELD_REPLY, withheld=True, unsent=WITHHELD_REPLY)
    warnings = tuple(str(c) for c in verdict.categories) if verdict.action is Action.flag else ()
    return Reply(text, warnings=warnings, unsent=unsent)


def _merge(verdicts: Sequence[Verdict]) -> Verdict:
    """One verdict for a request's texts: the strictest action, the highest score, every category."""
    action = max((v.action for v in verdicts), key=_RANK.__getitem__)
    categories = tuple(dict.fromkeys(c for v in verdicts for c in v.categories))
    return Verdict(action, max(v.score for v in verdicts), categories, "")
