# SPDX-License-Identifier: Apache-2.0
"""Chat sessions, messages (JSON or Server-Sent Events) and voice messages. Owners only."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from fastapi.responses import StreamingResponse

from bastion.api.content_types import require_json
from bastion.api.contract import SSE_EVENT
from bastion.api.deps import guard_origin, request_client_ip, require, require_principal, settings_of
from bastion.api.ratelimit import RouteLimits, concurrency_limit, rate_limit
from bastion.api.responses import content_warning
from bastion.api.schemas.chat import (
    MessageCreate,
    MessageOut,
    MessagePage,
    SessionCreate,
    SessionList,
    SessionOut,
    VoiceReply,
)
from bastion.api.schemas.types import Instant, PositiveInt64
from bastion.api.signing import SignedJSONResponse, reply_signer, signed_stream
from bastion.api.streams import stream_failure
from bastion.audit.events import AuditEvent
from bastion.audit.service import AuditService
from bastion.auth.permissions import Permission
from bastion.auth.principal import Principal
from bastion.chat.audio import check_audio
from bastion.chat.repository import Owner
from bastion.chat.service import ChatService
from bastion.chat.upload import receive_upload
from bastion.chat.views import StreamEvent
from bastion.chat.wiring import TextServices
from bastion.errors import BastionError, InvalidField, error_body, request_id_of
from bastion.llm.base import GenerationOptions
from bastion.ratelimit.policies import Policy
from bastion.settings import Settings

router = APIRouter(prefix="/api/sessions", tags=["chat"])
SessionId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
# Listed first in the routes' dependencies where a limit or a check follows: the permission is
# checked before any allowance is spent (check_route_access refuses the other order), and a caller
# without it gets its 401/403 before the Content-Type check's 415.
CHAT_USE = require(Permission.CHAT_USE)
VOICE_USE = require(Permission.VOICE_USE)
ChatUser = Annotated[Principal, Depends(CHAT_USE)]

# FastAPI solves each dependency of a route on every request (about 12 to 15 µs each, before the
# dependency's own work): what needs nothing but the request (the service, the signer, the
# message limits) is taken from it in the handler, and a route whose decorator already declares
# the permission reads the caller with ``require_principal`` instead of solving it twice.


def chat_service(request: Request) -> ChatService:
    """The chat service for this request (its screen names the request's caller and address)."""
    services: TextServices = request.app.state.text_services
    return services.chat_for(guard_origin(request))


def _checked_content(content: str, settings: Settings, *, field: str = "body.content") -> str:
    if not content.strip():
        raise InvalidField(field, "blank", "The message is empty")
    if len(content) > settings.max_message_length:
        raise InvalidField(
            field, "string_too_long", f"String should have at most {settings.max_message_length} characters"
        )
    return content


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    dependencies=[Depends(CHAT_USE), Depends(require_json), Depends(rate_limit(Policy.SESSIONS_CREATE))],
)
async def create_session(request: Request, body: SessionCreate | None = None) -> SessionOut:
    principal = require_principal(request)
    view = await chat_service(request).create_session(Owner.of(principal), title=body.title if body else None)
    await _audit(request, principal, AuditEvent.CHAT_SESSION_CREATED, view.id)
    return SessionOut.of(view)


async def _audit(request: Request, principal: Principal, event: AuditEvent, session_id: str) -> None:
    await AuditService(sessionmaker=request.app.state.sessionmaker).record(
        event,
        actor_type="api_key" if principal.api_key_id else "user",
        actor_id=principal.api_key_id or principal.user_id,
        target_type="chat_session",
        target_id=session_id,
        ip=request_client_ip(request),
        request_id=request_id_of(request),
    )


@router.get("")
async def list_sessions(
    request: Request,
    principal: ChatUser,
    before: Annotated[Instant | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> SessionList:
    views = await chat_service(request).list_sessions(Owner.of(principal), before=before, limit=limit)
    items = [SessionOut.of(v) for v in views]
    return SessionList(items=items, next=items[-1].last_active_at if len(items) == limit else None)


@router.get("/{session_id}")
async def get_session(session_id: SessionId, request: Request, principal: ChatUser) -> SessionOut:
    return SessionOut.of(await chat_service(request).get_session(Owner.of(principal), session_id))


@router.delete("/{session_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_session(session_id: SessionId, request: Request, principal: ChatUser) -> Response:
    await chat_service(request).delete_session(Owner.of(principal), session_id)
    await _audit(request, principal, AuditEvent.CHAT_SESSION_DELETED, session_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{session_id}/messages")
async def history(
    session_id: SessionId,
    request: Request,
    principal: ChatUser,
    before: Annotated[PositiveInt64 | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> MessagePage:
    page = await chat_service(request).history(Owner.of(principal), session_id, before=before, limit=limit)
    return MessagePage(items=[MessageOut.of(m) for m in page.items], next=page.next_before)


def _wants_stream(request: Request, body: MessageCreate) -> bool:
    return body.stream or "text/event-stream" in request.headers.get("accept", "")


# With `"stream": true` or `Accept: text/event-stream` the answer is a server-sent event stream.
SSE_ANSWER: dict[str, Any] = {
    "description": (
        "The reply, or with stream=true an event stream (events delta, done, error). A reply the "
        "content guard withheld has status `withheld` and a replacement text; a stream's `done` "
        "event carries `content_warning` where a JSON reply has the Content-Warning header"
    ),
    "content": {"text/event-stream": {"schema": SSE_EVENT}},
}


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'), default=str)}\n\n".encode()


# The message policies are decided together with the call's token budget and the session's
# quota slot, in one round trip (``RouteLimits``, ``ChatService._begin_call``).
MESSAGE_POLICIES = (Policy.MESSAGES, Policy.MESSAGES_HOURLY, Policy.MESSAGES_USER_HOURLY)


@router.post(
    "/{session_id}/messages",
    dependencies=[Depends(CHAT_USE), Depends(require_json)],
    response_model=MessageOut,
    response_class=SignedJSONResponse,
    responses={200: SSE_ANSWER},
)
async def post_message(
    session_id: SessionId, body: MessageCreate, request: Request, response: Response
) -> Response | MessageOut:
    principal = require_principal(request)
    # The key before anything is spent: a database outage creating the first one is a 503.
    signer = await reply_signer(request)
    limits = RouteLimits(request, response, MESSAGE_POLICIES)
    service = chat_service(request)
    try:
        content = await service.screen.check_input(
            _checked_content(body.content, settings_of(request)),
            field="body.content",
            scan_as="message",
            session_id=session_id,
        )
        options = GenerationOptions(max_tokens=body.max_tokens, temperature=body.temperature)
        owner = Owner.of(principal)
        if not _wants_stream(request, body):
            reply = await service.send(owner, session_id, content, options, gate=limits)
            content_warning(response, reply.warnings)
            return MessageOut.of(reply)
        events = service.stream(owner, session_id, content, options, gate=limits)
        # Pull the first event before answering: an unknown session, a refusal or an open breaker
        # is still a plain JSON error, not a 200 stream that fails.
        first = await anext(events)
    except BastionError:
        # Refused before its admission (an empty or screened-out message, an unknown session):
        # the attempt still spends the caller's allowance, and a caller over it gets the 429.
        await limits.spend()
        raise
    return StreamingResponse(
        signed_stream(_event_stream(first, events, request), signer, comment=False),
        media_type="text/event-stream; charset=utf-8",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _event_stream(
    first: StreamEvent, rest: AsyncIterator[StreamEvent], request: Request
) -> AsyncIterator[bytes]:
    async def all_events() -> AsyncIterator[StreamEvent]:
        yield first
        async for event in rest:
            yield event

    try:
        async for event in all_events():
            if event.delta:
                yield _sse("delta", {"content": event.delta})
            if event.error is not None:
                body = error_body(
                    status_code=502,
                    code=event.error,
                    message="The model stream ended early; the partial reply was kept",
                    request_id=request_id_of(request),
                )
                yield _sse("error", body["detail"])
            if event.message is not None:
                done = MessageOut.of(event.message).model_dump(mode="json")
                if event.message.warnings:
                    # Headers went out with the first byte: a stream's warning is in its last event.
                    done["content_warning"] = list(event.message.warnings)
                yield _sse("done", done)
    except Exception as exc:
        detail = stream_failure(exc, request)
        if detail is None:
            raise
        yield _sse("error", detail)
    finally:
        aclose = getattr(rest, "aclose", None)
        if aclose is not None:
            await aclose()


_VOICE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["audio"],
                    "properties": {"audio": {"type": "string", "format": "binary"}},
                    "additionalProperties": False,  # one part: a second one is a 400
                }
            }
        },
    }
}


@router.post(
    "/{session_id}/voice-chat",
    openapi_extra=_VOICE_BODY,
    dependencies=[
        Depends(VOICE_USE),
        Depends(rate_limit(Policy.VOICE)),
        Depends(concurrency_limit(Policy.VOICE)),
        Depends(reply_signer),
    ],
    response_class=SignedJSONResponse,
)
async def voice_chat(session_id: SessionId, request: Request, response: Response) -> VoiceReply:
    """Multipart field ``audio``: wav, webm, mp3, m4a, ogg or opus up to MAX_AUDIO_SIZE_MB."""
    settings = settings_of(request)
    service = chat_service(request)
    owner = Owner.of(require_principal(request))
    await service.get_session(owner, session_id)  # 404 before reading any of the upload
    cap = settings.max_audio_size_mb * 1024 * 1024
    async with receive_upload(request, field_name="audio", max_bytes=cap) as upload:
        _kind, mime, filename = check_audio(
            declared_type=upload.content_type, filename=upload.filename, head=upload.head
        )
        transcript = await service.transcribe(
            owner, upload.path, filename=filename, content_type=mime, size=upload.size
        )
    # The transcript is screened like a typed message before it reaches the model.
    text = await service.screen.check_input(
        _checked_content(transcript.text, settings, field="audio"),
        field="audio",
        scan_as="transcript",
        session_id=session_id,
    )
    reply = await service.send(owner, session_id, text, GenerationOptions())
    content_warning(response, reply.warnings)
    return VoiceReply(transcript=text, message=MessageOut.of(reply))
