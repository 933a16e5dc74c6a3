# SPDX-License-Identifier: Apache-2.0
"""Signed model replies: the ``X-Content-Signature`` format, signing, and verification.

A reply is signed with a detached Ed25519 signature (RFC 8032) over a short, versioned text that
names the SHA-256 digest of the exact body bytes, the request id, the key id and the time::

    bastion-content-signature/v1
    sha256=<64 lowercase hex digits of SHA-256(body)>
    rid=<request id>
    kid=<key id>
    t=<unix seconds>

The five lines are joined by a single LF (0x0A), with no trailing LF, and encoded as ASCII. Every
field has a closed alphabet without LF, so the text is unambiguous. It also contains characters
('/', LF) that a JWS signing input (base64url and one '.') never contains, so a content signature
can never pass as a JWT signature and no JWT signature can pass as a content signature.

The header (and the signature event of a stream) carries the fields back::

    X-Content-Signature: v1;kid=content-0f1e2d3c4b5a6978;t=1767225600;rid=<id>;sha256=<hex>;sig=<b64url>

``sig`` is the 64-byte signature in unpadded base64url. ``sha256`` repeats the digest so a
verifier can say "the body was changed" apart from "the signature is wrong"; the signature covers
it through the signed text. Public keys are published in the JWKS (``kty`` OKP, ``crv`` Ed25519,
``alg`` EdDSA, ``use`` sig) under key ids of the form ``content-<16 hex digits>``; only those key
ids verify content, and access tokens refuse them.

This module needs nothing from Bastion but ``cryptography``: client developers may copy it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

HEADER = "X-Content-Signature"
VERSION = "v1"
TAG = "bastion-content-signature/v1"
CONTENT_KID_PREFIX = "content-"

_KID = re.compile(r"content-[0-9a-f]{16}")
_RID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_TIME = re.compile(r"[0-9]{1,12}")
_HEX = re.compile(r"[0-9a-f]{64}")
_SIG = re.compile(r"[A-Za-z0-9_-]{86}")
_FIELDS = ("kid", "t", "rid", "sha256", "sig")
_CONTENT_JWK = ("OKP", "Ed25519", "EdDSA", "sig")  # kty, crv, alg, use

# A stream ends with its signature: /api/sessions streams with a named event (EventSource clients
# can listen for it), /v1 streams with an SSE comment line (SSE parsers, the OpenAI SDK's too,
# skip comments), after `data: [DONE]`.
STREAM_EVENT_PREFIX = b"event: signature\ndata: "
STREAM_COMMENT_PREFIX = b": signature "


class SignatureInvalid(Exception):
    """Why a signature did not verify; ``reason`` is one of the codes below, ``str()`` a sentence."""

    MALFORMED = "malformed"
    UNKNOWN_KEY = "unknown_key"
    NOT_A_CONTENT_KEY = "not_a_content_key"
    DIGEST_MISMATCH = "digest_mismatch"
    BAD_SIGNATURE = "bad_signature"
    REQUEST_ID_MISMATCH = "request_id_mismatch"

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


def is_content_kid(kid: str) -> bool:
    """True for the key ids of content-signing keys (which never sign or verify a token)."""
    return kid.startswith(CONTENT_KID_PREFIX)


def new_content_kid(random_hex: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{16}", random_hex):
        raise ValueError("a content key id takes 16 lowercase hex digits")
    return CONTENT_KID_PREFIX + random_hex


@dataclass(frozen=True, slots=True)
class ContentSignature:
    """The parsed ``X-Content-Signature`` value."""

    kid: str
    time: int
    request_id: str
    digest: str  # lowercase hex SHA-256 of the body
    signature: bytes

    def header_value(self) -> str:
        sig = base64.urlsafe_b64encode(self.signature).rstrip(b"=").decode()
        return f"{VERSION};kid={self.kid};t={self.time};rid={self.request_id};sha256={self.digest};sig={sig}"

    def signing_input(self) -> bytes:
        return signing_input(self.digest, self.request_id, self.kid, self.time)


def signing_input(digest: str, request_id: str, kid: str, time: int) -> bytes:
    """The exact bytes the Ed25519 signature covers (module docstring)."""
    _check_fields(kid, str(time), request_id, digest)
    return f"{TAG}\nsha256={digest}\nrid={request_id}\nkid={kid}\nt={time}".encode("ascii")


def _check_fields(kid: str, time: str, request_id: str, digest: str) -> None:
    for name, value, pattern in (
        ("kid", kid, _KID),
        ("t", time, _TIME),
        ("rid", request_id, _RID),
        ("sha256", digest, _HEX),
    ):
        if not pattern.fullmatch(value):
            raise SignatureInvalid(SignatureInvalid.MALFORMED, f"the signature's {name} is malformed")


def sign(
    private_key: ed25519.Ed25519PrivateKey, *, kid: str, digest: str, request_id: str, time: int
) -> ContentSignature:
    """Sign a body digest (``hashlib.sha256(body).hexdigest()``) for one response."""
    payload = signing_input(digest, request_id, kid, time)
    return ContentSignature(kid, time, request_id, digest, private_key.sign(payload))


def parse(value: str) -> ContentSignature:
    """Parse a header value; ``SignatureInvalid(malformed)`` for anything but the v1 form."""
    parts = [part.strip() for part in value.strip().split(";")]
    if not parts or parts[0] != VERSION:
        raise SignatureInvalid(SignatureInvalid.MALFORMED, "not a v1 content signature")
    fields: dict[str, str] = {}
    for part in parts[1:]:
        name, sep, field = part.partition("=")
        if not sep or name not in _FIELDS or name in fields:
            raise SignatureInvalid(SignatureInvalid.MALFORMED, f"unexpected signature field {name[:16]!r}")
        fields[name] = field
    if set(fields) != set(_FIELDS):
        missing = ", ".join(sorted(set(_FIELDS) - set(fields)))
        raise SignatureInvalid(SignatureInvalid.MALFORMED, f"the signature lacks {missing}")
    _check_fields(fields["kid"], fields["t"], fields["rid"], fields["sha256"])
    if not _SIG.fullmatch(fields["sig"]):
        raise SignatureInvalid(SignatureInvalid.MALFORMED, "the signature's sig is malformed")
    try:
        raw = base64.urlsafe_b64decode(fields["sig"] + "==")
    except (binascii.Error, ValueError) as exc:  # pragma: no cover - the pattern admits only base64url
        raise SignatureInvalid(SignatureInvalid.MALFORMED, "the signature's sig is not base64url") from exc
    return ContentSignature(fields["kid"], int(fields["t"]), fields["rid"], fields["sha256"], raw)


def content_keys_of(jwks: Mapping[str, Any]) -> dict[str, ed25519.Ed25519PublicKey]:
    """The content-signing public keys of a JWK Set (token keys and anything else are left out)."""
    keys: dict[str, ed25519.Ed25519PublicKey] = {}
    entries = jwks.get("keys")
    if not isinstance(entries, list):
        raise ValueError("not a JWK Set: no 'keys' list")
    for jwk in entries:
        if not isinstance(jwk, Mapping):
            continue
        kid = jwk.get("kid")
        if not isinstance(kid, str) or not _KID.fullmatch(kid):
            continue
        if (jwk.get("kty"), jwk.get("crv"), jwk.get("alg"), jwk.get("use")) != (
            "OKP",
            "Ed25519",
            "EdDSA",
            "sig",
        ):
            continue
        x = jwk.get("x")
        if not isinstance(x, str):
            continue
        try:
            raw = base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))
            keys[kid] = ed25519.Ed25519PublicKey.from_public_bytes(raw)
        except (binascii.Error, ValueError):
            continue
    return keys


@dataclass(frozen=True, slots=True)
class Verified:
    kid: str
    time: int
    request_id: str


def verify(
    body: bytes,
    header_value: str,
    keys: Mapping[str, ed25519.Ed25519PublicKey],
    *,
    request_id: str | None = None,
) -> Verified:
    """Check ``header_value`` against the exact ``body`` bytes; ``SignatureInvalid`` says why not.

    ``keys`` maps content key ids to public keys (``content_keys_of(jwks)``). With ``request_id``
    (the response's X-Request-ID) the signed request id must be that one.
    """
    signature = parse(header_value)
    if not is_content_kid(signature.kid):  # pragma: no cover - parse() admits content kids only
        raise SignatureInvalid(SignatureInvalid.NOT_A_CONTENT_KEY, f"{signature.kid} is not a content key")
    key = keys.get(signature.kid)
    if key is None:
        raise SignatureInvalid(SignatureInvalid.UNKNOWN_KEY, f"key {signature.kid} is not published")
    if request_id is not None and request_id != signature.request_id:
        raise SignatureInvalid(
            SignatureInvalid.REQUEST_ID_MISMATCH, "the signature names another request id than the response"
        )
    if hashlib.sha256(body).hexdigest() != signature.digest:
        raise SignatureInvalid(SignatureInvalid.DIGEST_MISMATCH, "the body is not the one that was signed")
    try:
        key.verify(signature.signature, signature.signing_input())
    except InvalidSignature as exc:
        raise SignatureInvalid(SignatureInvalid.BAD_SIGNATURE, "the signature does not verify") from exc
    return Verified(signature.kid, signature.time, signature.request_id)


# -- streams ---------------------------------------------------------------------------------------


def stream_event(signature: ContentSignature, *, comment: bool) -> bytes:
    """The last block of a signed stream: a named event, or (``comment``) an SSE comment line."""
    value = signature.header_value().encode("ascii")
    if comment:
        return STREAM_COMMENT_PREFIX + value + b"\n\n"
    return STREAM_EVENT_PREFIX + b'{"signature":"' + value + b'"}\n\n'


def split_stream(body: bytes) -> tuple[bytes, str]:
    """A saved stream as (the signed bytes before its signature block, the signature value).

    The signature block must be the stream's last: bytes after it were not signed.
    """
    for prefix in (STREAM_EVENT_PREFIX, STREAM_COMMENT_PREFIX):
        start = body.rfind(b"\n\n" + prefix)
        start = start + 2 if start >= 0 else (0 if body.startswith(prefix) else -1)
        if start < 0:
            continue
        block = body[start:]
        match = _stream_block(block, prefix)
        if match is None:
            raise SignatureInvalid(SignatureInvalid.MALFORMED, "the stream does not end with its signature")
        return body[:start], match
    raise SignatureInvalid(SignatureInvalid.MALFORMED, "the stream carries no signature")


def _stream_block(block: bytes, prefix: bytes) -> str | None:
    if not block.endswith(b"\n\n") or block.count(b"\n") != (3 if prefix is STREAM_EVENT_PREFIX else 2):
        return None
    inner = block[len(prefix) : -2].decode("ascii", errors="replace")
    if prefix is STREAM_COMMENT_PREFIX:
        return inner
    opening, closing = '{"signature":"', '"}'
    if not (inner.startswith(opening) and inner.endswith(closing)):
        return None
    return inner[len(opening) : -len(closing)]


class StreamDigest:
    """SHA-256 of every byte a stream sent so far (what its closing signature covers)."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()

    def add(self, chunk: bytes) -> bytes:
        self._hash.update(chunk)
        return chunk

    def hexdigest(self) -> str:
        return self._hash.hexdigest()
