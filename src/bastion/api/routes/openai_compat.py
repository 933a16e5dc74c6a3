# SPDX-License-Identifier: Apache-2.0
"""POST /v1/chat/completions: OpenAI-compatible, so existing clients and SDKs work with Bastion keys.

Stateless (the client sends the conversation, nothing is stored), under the same permission,
rate-limit policies, daily token budget and content guard as /api/sessions: the user messages are
screened on the way in, the reply on the way out (docs/guardrails.md).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import StreamingResponse

from bastion.api.content_types import require_json
from bastion.api.contract import SSE_EVENT
from bastion.api.deps import guard_origin, require, require_principal, settings_of
from bastion.api.ratelimit import rate_limit
from bastion.api.responses import content_warning
from bastion.api.schemas.openai_compat import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionRequest,
    Choice,
    CompletionUsage,
    Model,
    ModelList,
)
from bastion.api.signing import SignedJSONResponse, reply_signer, signed_stream
from bastion.api.streams import stream_failure
from bastion.auth.permissions import Permission
from bastion.chat.completions import CompletionService, ScreenedChunk
from bastion.chat.repository import Owner
from bastion.chat.wiring import TextServices
from bastion.crypto.randomness import new_id
from bastion.errors import InvalidField
from bastion.llm import base as llm
from bastion.llm.base import GenerationOptions, Usage
from bastion.ratelimit.policies import Policy

# `completions:use`: users hold it by role; keys need the `completions` scope (ML_API_KEYS have it).
# Checked before the limits: a caller without it spends nothing.
COMPLETIONS_USE = require(Permission.COMPLETIONS_USE)
router = APIRouter(
    prefix="/v1",
    tags=["openai-compatible"],
    dependencies=[
        Depends(COMPLETIONS_USE),
        Depends(require_json),
        Depends(rate_limit(Policy.MESSAGES)),
        Depends(rate_limit(Policy.MESSAGES_HOURLY)),
        Depends(rate_limit(Policy.MESSAGES_USER_HOURLY)),
    ],
)
# Listing the model spends no message allowance: only the global per-client limit applies.
models_router = APIRouter(prefix="/v1", tags=["openai-compatible"], dependencies=[Depends(COMPLETIONS_USE)])


@models_router.get("/models", response_model=ModelList)
async def list_models(request: Request) -> ModelList:
    """The one model Bastion serves (LLM_MODEL, or the offline model's name), so that OpenAI
    clients that list models before they complete find it."""
    return ModelList(data=[Model(id=request.app.state.llm.model)])


def completion_service(request: Request) -> CompletionService:
    """The request's completion service: taken in the handler, like its signer, because FastAPI
    solves each dependency on every request (the router's already declare the permission)."""
    services: TextServices = request.app.state.text_services
    return services.completions_for(guard_origin(request))


async def _messages(
    body: ChatCompletionRequest, request: Request, service: CompletionService
) -> list[llm.ChatMessage]:
    settings = settings_of(request)
    if len(body.messages) > settings.max_history_messages + 1:
        raise InvalidField(
            "body.messages", "too_long", f"At most {settings.max_history_messages + 1} messages per request"
        )
    out: list[llm.ChatMessage] = []
    for index, message in enumerate(body.messages):
        text = message.text()
        if len(text) > settings.max_message_length:
            raise InvalidField(
                f"body.messages.{index}.content",
                "string_too_long",
                f"String should have at most {settings.max_message_length} characters",
            )
        role = "system" if message.role == "developer" else message.role
        out.append(llm.ChatMessage(role, text))
    if not any(m.role == "user" and m.content.strip() for m in out):
        raise InvalidField(
            "body.messages", "no_user_message", "At least one non-empty user message is required"
        )
    # The caller's own system and assistant messages are its prompt and its history; what its
    # users wrote is screened (each once), and the model receives the guard's normalized text.
    users = [i for i, m in enumerate(out) if m.role == "user" and m.content.strip()]
    screened = await service.screen.check_inputs(
        [(f"body.messages.{i}.content", out[i].content) for i in users], scan_as="content"
    )
    for index, text in zip(users, screened, strict=True):
        out[index] = llm.ChatMessage("user", text)
    return out


def _usage(usage: Usage) -> CompletionUsage:
    return CompletionUsage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
    )


@router.post(
    "/chat/completions",
    response_model=ChatCompletion,
    response_class=SignedJSONResponse,
    responses={
        200: {
            "description": "A completion, or with stream=true chat.completion.chunk events ending in [DONE]",
            "content": {"text/event-stream": {"schema": SSE_EVENT}},
        }
    },
)
async def chat_completions(
    body: ChatCompletionRequest, request: Request, response: Response
) -> ChatCompletion | StreamingResponse:
    principal = require_principal(request)
    signer = await reply_signer(request)
    service = completion_service(request)
    messages = await _messages(body, request, service)
    options = GenerationOptions(
        max_tokens=body.max_completion_tokens or body.max_tokens, temperature=body.temperature
    )
    owner = Owner.of(principal)
    completion_id = f"chatcmpl-{new_id()}"
    created = int(time.time())
    if not body.stream:
        screened = await service.complete(owner, messages, options)
        result = screened.completion
        content_warning(response, screened.warnings)
        return ChatCompletion(
            id=completion_id,
            created=created,
            model=result.model,
            choices=[
                Choice(message=AssistantMessage(content=result.content), finish_reason=result.finish_reason)
            ],
            usage=_usage(result.usage),
        )
    chunks = await service.stream(owner, messages, options)
    first = await anext(chunks)  # errors before the first chunk are plain JSON errors
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    model = request.app.state.llm.model
    stream = _sse(
        first, chunks, request, completion_id=completion_id, created=created, model=model, usage=include_usage
    )
    return StreamingResponse(
        # The signature is an SSE comment after [DONE]: the OpenAI SDK stops at [DONE] and every
        # SSE parser skips comments, so no client sees an event it does not know.
        signed_stream(stream, signer, comment=True),
        media_type="text/event-stream; charset=utf-8",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _sse(
    first: ScreenedChunk,
    rest: AsyncIterator[ScreenedChunk],
    request: Request,
    *,
    completion_id: str,
    created: int,
    model: str,
    usage: bool,
) -> AsyncIterator[bytes]:
    def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        payload = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": choices,
            **extra,
        }
        return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()

    async def chunks() -> AsyncIterator[ScreenedChunk]:
        yield first
        async for chunk in rest:
            yield chunk

    yield event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
    try:
        async for chunk in chunks():
            if chunk.delta:
                yield event([{"index": 0, "delta": {"content": chunk.delta}, "finish_reason": None}])
            if chunk.finish_reason is not None:
                # Headers went out with the first byte: a flagged reply says so in its last chunk
                # (an extra field OpenAI clients ignore).
                warning = {"content_warning": list(chunk.warnings)} if chunk.warnings else {}
                yield event([{"index": 0, "delta": {}, "finish_reason": chunk.finish_reason}], **warning)
                if usage and chunk.usage is not None:
                    yield event([], usage=_usage(chunk.usage).model_dump())
    except Exception as exc:
        detail = stream_failure(exc, request)
        if detail is None:
            raise
        # The OpenAI wire format reports a failure inside a stream as an "error" object.
        error = {"message": detail["message"], "type": detail["error"], "code": detail["error"]}
        yield f"data: {json.dumps({'error': error})}\n\n".encode()
        return
    finally:
        await rest.aclose()  # type: ignore[attr-defined]
    yield b"data: [DONE]\n\n"
