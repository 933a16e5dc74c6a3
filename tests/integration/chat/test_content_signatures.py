# SPDX-License-Identifier: Apache-2.0
"""Signed model replies over HTTP: every surface verifies with the published JWKS, tampering fails.

The model is the fake upstream, so what it returned is known to the byte: signing must leave the
reply's text exactly as the model wrote it.
"""

from __future__ import annotations

import base64
import hashlib
import io
from dataclasses import replace
from datetime import timedelta

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import select

from bastion.auth.keyring import Keyring
from bastion.auth.tokens import AccessTokens, TokenInvalid
from bastion.crypto import signatures
from bastion.crypto.content_keys import ContentKeys, rotate_content_key
from bastion.crypto.models import ContentSigningKey
from bastion.crypto.signatures import SignatureInvalid, split_stream, verify
from bastion.db.types import utcnow
from tests.conftest import SettingsFactory
from tests.integration.chat.conftest import chat_app, new_session, upstream_settings
from tests.integration.chat.test_upstream import wav_bytes
from tests.support.content_signatures import published
from tests.support.fake_upstream import FakeUpstream, Fault

# Non-ASCII on purpose: the signed bytes are the UTF-8 the client receives, not an escaped form.
REPLY = ("Breathe in ", "for four — ", "hold, ", "and let go. 🌿")


def flipped(body: bytes, at: int | None = None) -> bytes:
    """``body`` with one bit of one byte changed (by default in the middle)."""
    index = len(body) // 2 if at is None else at
    return body[:index] + bytes([body[index] ^ 0x01]) + body[index + 1 :]


def with_field(header: str, name: str, value: str) -> str:
    parts = [f"{name}={value}" if part.startswith(f"{name}=") else part for part in header.split(";")]
    return ";".join(parts)


def check(response: httpx.Response, keys: dict[str, ed25519.Ed25519PublicKey]) -> signatures.Verified:
    """A JSON reply's signature as a client checks it: the header against the exact body bytes."""
    assert response.status_code == 200, response.text
    return verify(
        response.content,
        response.headers[signatures.HEADER],
        keys,
        request_id=response.headers["x-request-id"],
    )


def check_stream(response: httpx.Response, keys: dict[str, ed25519.Ed25519PublicKey]) -> signatures.Verified:
    assert response.status_code == 200, response.text
    assert signatures.HEADER.lower() not in response.headers  # headers left before the body existed
    signed, value = split_stream(response.content)
    return verify(signed, value, keys, request_id=response.headers["x-request-id"])


async def test_every_model_reply_is_signed_and_verifies_with_the_jwks(
    make_settings: SettingsFactory, upstream: FakeUpstream
) -> None:
    async with chat_app(make_settings, **upstream_settings(upstream)) as (_app, http, auth):
        session = await new_session(http, auth)
        url = f"/api/sessions/{session['id']}/messages"

        upstream.script(Fault.reply(*REPLY))
        reply = await http.post(url, json={"content": "help me calm down"}, headers=auth)
        keys = await published(http)
        assert len(keys) == 1
        verified = check(reply, keys)
        assert verified.kid in keys and verified.request_id == reply.headers["x-request-id"]
        # The message content is the model's, unchanged, and the body is what was signed.
        assert reply.json()["content"] == "".join(REPLY)
        assert "🌿".encode() in reply.content

        upstream.script(Fault.reply(*REPLY))
        streamed = await http.post(url, json={"content": "again", "stream": True}, headers=auth)
        assert check_stream(streamed, keys).kid == verified.kid
        assert streamed.text.rstrip().splitlines()[-2] == "event: signature"

        upstream.script(Fault.reply("breathe with me"), Fault.reply(*REPLY))
        files = {"audio": ("note.wav", io.BytesIO(wav_bytes()), "audio/wav")}
        voice = await http.post(f"/api/sessions/{session['id']}/voice-chat", files=files, headers=auth)
        check(voice, keys)
        assert voice.json()["message"]["content"] == "".join(REPLY)

        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        upstream.script(Fault.reply(*REPLY))
        completion = await http.post("/v1/chat/completions", json=body, headers=auth)
        check(completion, keys)
        assert completion.json()["choices"][0]["message"]["content"] == "".join(REPLY)

        upstream.script(Fault.reply(*REPLY))
        v1_stream = await http.post("/v1/chat/completions", json={**body, "stream": True}, headers=auth)
        check_stream(v1_stream, keys)
        # OpenAI clients stop at [DONE]; the signature is a comment line after it.
        before, after = v1_stream.content.split(b"data: [DONE]\n\n")
        assert after.startswith(signatures.STREAM_COMMENT_PREFIX) and b"content" in before

        # Replies that are not the model's carry no signature: history, errors.
        history = await http.get(url, headers=auth)
        missing = await http.post("/api/sessions/nope/messages", json={"content": "x"}, headers=auth)
        assert missing.status_code == 404
        for unsigned in (history, missing):
            assert signatures.HEADER.lower() not in unsigned.headers


async def test_one_changed_byte_or_header_field_fails(
    make_settings: SettingsFactory, upstream: FakeUpstream
) -> None:
    async with chat_app(make_settings, **upstream_settings(upstream)) as (_app, http, auth):
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        upstream.script(Fault.reply(*REPLY))
        reply = await http.post("/v1/chat/completions", json=body, headers=auth)
        upstream.script(Fault.reply(*REPLY))
        stream = await http.post("/v1/chat/completions", json={**body, "stream": True}, headers=auth)
        keys = await published(http)
        header, rid = reply.headers[signatures.HEADER], reply.headers["x-request-id"]
        check(reply, keys)

        for at in (0, len(reply.content) // 2, len(reply.content) - 1):
            with pytest.raises(SignatureInvalid) as caught:
                verify(flipped(reply.content, at), header, keys, request_id=rid)
            assert caught.value.reason == SignatureInvalid.DIGEST_MISMATCH
        with pytest.raises(SignatureInvalid):
            verify(reply.content + b" ", header, keys)

        parsed = signatures.parse(header)
        other_kid = "content-" + "0" * 16
        tampered = {
            "rid": with_field(header, "rid", "someone-elses-request"),
            "t": with_field(header, "t", str(parsed.time + 1)),
            "sha256": with_field(header, "sha256", hashlib.sha256(b"{}").hexdigest()),
        }
        for field, value in tampered.items():
            with pytest.raises(SignatureInvalid) as caught:
                # The body is the signed one; only the header changed.
                body_bytes = b"{}" if field == "sha256" else reply.content
                verify(body_bytes, value, keys)
            assert caught.value.reason == SignatureInvalid.BAD_SIGNATURE, field
        with pytest.raises(SignatureInvalid) as caught:
            verify(reply.content, with_field(header, "kid", other_kid), keys)
        assert caught.value.reason == SignatureInvalid.UNKNOWN_KEY
        # A key id swapped for another published key: the signature is not that key's.
        with pytest.raises(SignatureInvalid) as caught:
            verify(
                reply.content,
                with_field(header, "kid", other_kid),
                {**keys, other_kid: next(iter(keys.values()))},
            )
        assert caught.value.reason == SignatureInvalid.BAD_SIGNATURE
        # A genuine signature presented with another response's request id.
        with pytest.raises(SignatureInvalid) as caught:
            verify(reply.content, header, keys, request_id=stream.headers["x-request-id"])
        assert caught.value.reason == SignatureInvalid.REQUEST_ID_MISMATCH

        signed, value = split_stream(stream.content)
        verify(signed, value, keys)
        with pytest.raises(SignatureInvalid) as caught:
            verify(flipped(signed), value, keys)
        assert caught.value.reason == SignatureInvalid.DIGEST_MISMATCH
        with pytest.raises(SignatureInvalid) as caught:  # an event added after the signature
            split_stream(stream.content + b'data: {"choices":[]}\n\n')
        assert caught.value.reason == SignatureInvalid.MALFORMED
        with pytest.raises(SignatureInvalid) as caught:  # the stream cut before its signature
            split_stream(signed)
        assert caught.value.reason == SignatureInvalid.MALFORMED


async def test_content_keys_and_token_keys_never_stand_in_for_each_other(
    make_settings: SettingsFactory, upstream: FakeUpstream
) -> None:
    async with chat_app(make_settings, **upstream_settings(upstream)) as (app, http, auth):
        upstream.script(Fault.reply(*REPLY))
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        reply = await http.post("/v1/chat/completions", json=body, headers=auth)
        jwks = (await http.get("/.well-known/jwks.json")).json()
        token_key = app.state.identity.keyring.current
        content_key = app.state.content_keys.keyring.current
        by_kid = {jwk["kid"]: jwk for jwk in jwks["keys"]}
        # Both published, both EdDSA "sig" keys; told apart by the key id form alone.
        assert {token_key.kid, content_key.kid} <= by_kid.keys()
        assert by_kid[content_key.kid]["kid"].startswith("content-")
        assert {(k["kty"], k["crv"], k["alg"], k["use"]) for k in jwks["keys"]} == {
            ("OKP", "Ed25519", "EdDSA", "sig")
        }
        assert signatures.content_keys_of(jwks).keys() == {content_key.kid}

        # A JWT signed with the content key, claims copied from a genuine token: refused.
        claims = jwt.decode(auth["Authorization"].split()[1], options={"verify_signature": False})
        forged = jwt.encode(
            claims,
            content_key.signing_key,
            algorithm="EdDSA",
            headers={"kid": content_key.kid, "typ": "at+jwt"},
        )
        assert (
            await http.get("/api/auth/me", headers={"Authorization": f"Bearer {forged}"})
        ).status_code == 401
        # Even a keyring that held the content key would not accept it for a token.
        mixed = Keyring(
            [*app.state.identity.keyring.entries, replace(content_key, created_at=token_key.created_at)],
            algorithm="EdDSA",
            grace=timedelta(days=1),
        )
        settings = app.state.settings
        tokens = AccessTokens(
            keyring=lambda: mixed,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            lifetime=timedelta(minutes=5),
        )
        with pytest.raises(TokenInvalid) as caught:
            tokens.verify(forged)
        assert caught.value.reason == "key_purpose"

        # A content signature made with the token key: under its own kid it is no content key
        # id at all; under the content key's id it does not verify.
        digest = hashlib.sha256(reply.content).hexdigest()
        rid = reply.headers["x-request-id"]
        with pytest.raises(SignatureInvalid) as caught:
            signatures.sign(token_key.signing_key, kid=token_key.kid, digest=digest, request_id=rid, time=1)
        assert caught.value.reason == SignatureInvalid.MALFORMED
        impostor = signatures.sign(
            token_key.signing_key, kid=content_key.kid, digest=digest, request_id=rid, time=1
        )
        with pytest.raises(SignatureInvalid) as caught:
            verify(reply.content, impostor.header_value(), signatures.content_keys_of(jwks))
        assert caught.value.reason == SignatureInvalid.BAD_SIGNATURE
        # The token key, even handed over as if it were a content key, verifies no genuine reply.
        token_public = token_key.verify_key
        with pytest.raises(SignatureInvalid) as caught:
            verify(reply.content, reply.headers[signatures.HEADER], {content_key.kid: token_public})
        assert caught.value.reason == SignatureInvalid.BAD_SIGNATURE


async def test_rotation_keeps_old_replies_verifying_during_the_grace(
    make_settings: SettingsFactory, upstream: FakeUpstream
) -> None:
    async with chat_app(make_settings, **upstream_settings(upstream)) as (app, http, auth):
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        old_reply = await http.post("/v1/chat/completions", json=body, headers=auth)
        old_kid = signatures.parse(old_reply.headers[signatures.HEADER]).kid

        new_kid = await rotate_content_key(app.state.sessionmaker, app.state.cipher, grace=timedelta(days=30))
        await app.state.content_keys.reload()  # what each instance's minute reload does
        keys = await published(http)
        assert keys.keys() == {old_kid, new_kid}
        check(old_reply, keys)
        new_reply = await http.post("/v1/chat/completions", json=body, headers=auth)
        assert check(new_reply, keys).kid == new_kid

        # Past the grace: the old key is no longer published, its private half is erased.
        later = ContentKeys(
            sessionmaker=app.state.sessionmaker,
            cipher=app.state.cipher,
            grace=timedelta(days=30),
            clock=lambda: utcnow() + timedelta(days=31),
        )
        assert await later.reload() == 1
        assert [jwk["kid"] for jwk in later.jwks(later.clock())] == [new_kid]
        with pytest.raises(SignatureInvalid) as caught:
            verify(old_reply.content, old_reply.headers[signatures.HEADER], {new_kid: keys[new_kid]})
        assert caught.value.reason == SignatureInvalid.UNKNOWN_KEY
        async with app.state.sessionmaker() as db:
            rows = {row.kid: row for row in (await db.scalars(select(ContentSigningKey))).all()}
        assert rows[old_kid].private_ciphertext is None and rows[new_kid].private_ciphertext is not None
        # The public half stays: what the database knows of the old key is public.
        raw = base64.urlsafe_b64decode(rows[old_kid].public_key + "=")
        assert ed25519.Ed25519PublicKey.from_public_bytes(raw) == keys[old_kid]
