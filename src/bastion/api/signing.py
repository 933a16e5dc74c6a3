# SPDX-License-Identifier: Apache-2.0
"""Model replies signed on their way out (docs/signatures.md).

A route that answers with model text awaits ``reply_signer(request)`` first thing in its handler
(or lists ``Depends(reply_signer)`` among its dependencies, after its limits) and declares
``response_class=SignedJSONResponse``: the JSON body is rendered once, by the same code as any
other reply, and the signature is computed over exactly those bytes as the response is sent, so
signing can never change what the client receives. Streams hash every chunk they send and close
with a signature over all of it (``signed_stream``).

The key is fetched before the model is called: creating the first key needs the database, and a
database outage is then a 503 before any tokens are spent, never an unsigned reply.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric import ed25519
from fastapi import Request
from starlette.types import Receive, Scope, Send

from bastion.api.responses import UTF8JSONResponse
from bastion.crypto import signatures
from bastion.crypto.content_keys import ContentKeys
from bastion.crypto.signatures import ContentSignature, StreamDigest
from bastion.errors import request_id_of

SIGNER_STATE = "content_signer"


@dataclass(frozen=True, slots=True)
class ReplySigner:
    """Signs the replies of one request with the current content key."""

    kid: str
    key: ed25519.Ed25519PrivateKey
    request_id: str
    clock: Callable[[], datetime]

    def sign_digest(self, digest: str) -> ContentSignature:
        return signatures.sign(
            self.key,
            kid=self.kid,
            digest=digest,
            request_id=self.request_id,
            time=int(self.clock().timestamp()),
        )

    def sign(self, body: bytes) -> ContentSignature:
        return self.sign_digest(hashlib.sha256(body).hexdigest())


async def reply_signer(request: Request) -> ReplySigner:
    """The request's signer (the first content key is created here when there is none yet)."""
    keys: ContentKeys = request.app.state.content_keys
    entry = await keys.signing_key()
    request_id = request_id_of(request)
    if request_id is None or not isinstance(entry.signing_key, ed25519.Ed25519PrivateKey):
        raise RuntimeError("content signing needs the request id and a private key")
    signer = ReplySigner(entry.kid, entry.signing_key, request_id, keys.clock)
    request.scope.setdefault("state", {})[SIGNER_STATE] = signer
    return signer


class SignedJSONResponse(UTF8JSONResponse):
    """A JSON model reply carrying ``X-Content-Signature`` over its exact body bytes."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        signer = (scope.get("state") or {}).get(SIGNER_STATE)
        if not isinstance(signer, ReplySigner):
            raise RuntimeError("a signed reply's route must get its signer from reply_signer")
        if 200 <= self.status_code < 300:
            self.headers[signatures.HEADER] = signer.sign(bytes(self.body)).header_value()
        await super().__call__(scope, receive, send)


async def signed_stream(
    chunks: AsyncIterator[bytes], signer: ReplySigner, *, comment: bool
) -> AsyncIterator[bytes]:
    """Pass ``chunks`` through, then close with a signature over every byte sent before it.

    ``comment``: the signature as an SSE comment line (OpenAI-compatible streams), else as a named
    ``signature`` event. A stream the client abandons ends without one.
    """
    digest = StreamDigest()
    async for chunk in chunks:
        yield digest.add(chunk)
    yield signatures.stream_event(signer.sign_digest(digest.hexdigest()), comment=comment)
