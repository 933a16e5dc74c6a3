# SPDX-License-Identifier: Apache-2.0
"""Chat against a misbehaving OpenAI-compatible upstream: nothing the user wrote is lost."""

from __future__ import annotations

import io
import json
import struct

import pytest

from tests.conftest import SettingsFactory
from tests.integration.auth.helpers import assert_error
from tests.integration.chat.conftest import chat_app, new_session, upstream_settings
from tests.integration.chat.test_sessions_and_messages import sse_events
from tests.support.fake_upstream import SECRET_IN_ERROR, FakeUpstream, Fault


async def test_reply_from_upstream_and_history_sent(
    make_settings: SettingsFactory, upstream: FakeUpstream
) -> None:
    async with chat_app(make_settings, **upstream_settings(upstream, MAX_HISTORY_MESSAGES=3)) as (
        _app,
        http,
        auth,
    ):
        session = await new_session(http, auth)
        url = f"/api/sessions/{session['id']}/messages"
        for text in ("one", "two", "three"):
            reply = await http.post(url, json={"content": text}, headers=auth)
            assert reply.status_code == 200
        assert reply.json()["content"] == "echo: three" and reply.json()["offline"] is False
        sent = upstream.requests[-1].json()["messages"]
        # The system prompt plus only the newest MAX_HISTORY_MESSAGES messages.
        assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
        assert sent[-1]["content"] == "three"
        assert upstream.requests[-1].headers["authorization"] == "Bearer sk-fake-upstream-0123456789"


async def test_user_message_survives_upstream_failure(
    make_settings: SettingsFactory, upstream: FakeUpstream
) -> None:
    async with chat_app(make_settings, **upstream_settings(upstream)) as (_app, http, auth):
        session = await new_session(http, auth)
        url = f"/api/sessions/{session['id']}/messages"
        upstream.script(Fault.status_code(500), Fault.status_code(500))
        failed = await http.post(url, json={"content": "please remember this"}, headers=auth)
        assert_error(failed, 502, "upstream_error")
        assert SECRET_IN_ERROR not in failed.text
        assert upstream.count() == 2  # one try and LLM_MAX_RETRIES=1 retry
        history = (await http.get(url, headers=auth)).json()["items"]
        assert [(m["role"], m["content"]) for m in history] == [("user", "please remember this")]


async def test_open_breaker_fails_fast_with_retry_after(
    make_settings: SettingsFactory, upstream: FakeUpstream
) -> None:
    settings = upstream_settings(upstream, LLM_MAX_RETRIES=0, LLM_BREAKER_THRESHOLD=2)
    async with chat_app(make_settings, **settings) as (_app, http, auth):
        session = await new_session(http, auth)
        url = f"/api/sessions/{session['id']}/messages"
        upstream.script(Fault.status_code(503), Fault.status_code(503))
        for _ in range(2):
            assert (await http.post(url, json={"content": "hi"}, headers=auth)).status_code == 503
        refused = await http.post(url, json={"content": "hi", "stream": True}, headers=auth)
        detail = assert_error(refused, 503, "upstream_unavailable")
        assert int(refused.headers["retry-after"]) >= 1 and detail["retry_after"] >= 1
        assert upstream.count() == 2  # the open breaker never called upstream


async def test_stream_cut_midway_keeps_the_partial_reply(
    make_settings: SettingsFactory, upstream: FakeUpstream
) -> None:
    async with chat_app(make_settings, **upstream_settings(upstream)) as (_app, http, auth):
        session = await new_session(http, auth)
        url = f"/api/sessions/{session['id']}/messages"
        upstream.script(Fault.stream_break(after=2))
        response = await http.post(
            url, json={"content": "tell me a long story", "stream": True}, headers=auth
        )
        assert response.status_code == 200
        events = sse_events(response.text)
        names = [name for name, _ in events]
        # The short partial reply was all held back by the guard's stream scanner: it is sent,
        # screened, with the error.
        assert names == ["delta", "error", "done"]
        assert events[0][1]["content"] == "echo: tell"
        assert events[1][1]["error"] == "upstream_interrupted"
        done = events[-1][1]
        assert done["status"] == "incomplete" and done["content"] == "echo: tell"
        history = (await http.get(url, headers=auth)).json()["items"]
        assert [(m["role"], m["status"]) for m in history] == [
            ("user", "complete"),
            ("assistant", "incomplete"),
        ]


def wav_bytes(seconds: float = 0.1) -> bytes:
    frames = b"\0\0" * int(16000 * seconds)
    header = (
        b"RIFF"
        + struct.pack("<I", 36 + len(frames))
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, 16000, 32000, 2, 16)
    )
    return header + b"data" + struct.pack("<I", len(frames)) + frames


async def test_voice_message_is_transcribed_then_answered(
    make_settings: SettingsFactory, upstream: FakeUpstream
) -> None:
    async with chat_app(make_settings, **upstream_settings(upstream)) as (_app, http, auth):
        session = await new_session(http, auth)
        url = f"/api/sessions/{session['id']}/voice-chat"
        files = {"audio": ("../../etc/passwd\\evil name.wav", io.BytesIO(wav_bytes()), "audio/wav")}
        response = await http.post(url, files=files, headers=auth)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["transcript"] == "transcribed words from audio"
        assert body["message"]["content"] == "echo: transcribed words from audio"
        [upload] = [r for r in upstream.requests if r.path == "/v1/audio/transcriptions"]
        assert b'filename="evil_name.wav"' in upload.body
        assert b"passwd" not in upload.body.split(b"\r\n\r\n", 1)[0]


@pytest.mark.parametrize(
    ("filename", "content", "mime", "status", "code"),
    [
        ("clip.wav", b"ID3" + b"\0" * 200, "audio/wav", 415, "invalid_audio"),  # lying MIME type
        ("clip.mp3", wav_bytes(), "audio/wav", 415, "invalid_audio"),  # extension disagrees
        ("clip.exe", wav_bytes(), "audio/wav", 415, "invalid_audio"),
        ("clip", wav_bytes(), "audio/wav", 415, "invalid_audio"),
        ("clip.wav", wav_bytes(), "text/plain", 415, "invalid_audio"),
        ("clip.wav", b"", "audio/wav", 422, "empty_upload"),
    ],
)
async def test_bad_audio_is_refused(
    make_settings: SettingsFactory,
    upstream: FakeUpstream,
    filename: str,
    content: bytes,
    mime: str,
    status: int,
    code: str,
) -> None:
    async with chat_app(make_settings, **upstream_settings(upstream)) as (_app, http, auth):
        session = await new_session(http, auth)
        response = await http.post(
            f"/api/sessions/{session['id']}/voice-chat",
            files={"audio": (filename, io.BytesIO(content), mime)},
            headers=auth,
        )
        assert_error(response, status, code)
        assert upstream.count("/v1/audio/transcriptions") == 0
        history = (await http.get(f"/api/sessions/{session['id']}/messages", headers=auth)).json()["items"]
        assert history == []


async def test_voice_limits_and_malformed_uploads(
    make_settings: SettingsFactory, upstream: FakeUpstream
) -> None:
    async with chat_app(make_settings, **upstream_settings(upstream, MAX_AUDIO_SIZE_MB=1)) as (
        _app,
        http,
        auth,
    ):
        session = await new_session(http, auth)
        url = f"/api/sessions/{session['id']}/voice-chat"
        big = wav_bytes(seconds=40)  # ~1.3 MB
        assert_error(
            await http.post(url, files={"audio": ("a.wav", io.BytesIO(big), "audio/wav")}, headers=auth), 413
        )
        multipart = {**auth, "Content-Type": "multipart/form-data; boundary=XyZ"}
        part = (
            b'--XyZ\r\nContent-Disposition: form-data; name="audio"; filename="a.wav"\r\n'
            b"Content-Type: audio/wav\r\n\r\n"
        )
        cases = [
            ({"headers": auth}, 415, "unsupported_media_type"),  # no body, no multipart type
            ({"content": b"--XyZ--\r\n", "headers": multipart}, 422, "validation_error"),  # no file at all
            (
                {"content": part + wav_bytes()[:100], "headers": multipart},
                400,
                "malformed_multipart",
            ),  # truncated
            (
                {
                    "content": b'--XyZ\r\nContent-Disposition: form-data; name="audio"\r\n\r\n'
                    b"RIFF\r\n--XyZ--\r\n",
                    "headers": multipart,
                },
                422,
                "validation_error",
            ),  # a field, not a file
            (
                {
                    "content": part + wav_bytes() + b"\r\n" + part + wav_bytes() + b"\r\n--XyZ--\r\n",
                    "headers": multipart,
                },
                422,
                "validation_error",
            ),
            (
                {"content": b"garbage", "headers": {**auth, "Content-Type": "multipart/form-data"}},
                400,
                "malformed_multipart",
            ),
        ]
        for kwargs, status, code in cases:
            assert_error(await http.post(url, **kwargs), status, code)  # type: ignore[arg-type]
        assert upstream.count("/v1/audio/transcriptions") == 0
        import glob
        import tempfile

        assert glob.glob(f"{tempfile.gettempdir()}/bastion-audio-*") == []  # every spool file removed


async def test_voice_on_the_offline_model_is_a_clear_501(make_settings: SettingsFactory) -> None:
    async with chat_app(make_settings) as (_app, http, auth):
        session = await new_session(http, auth)
        response = await http.post(
            f"/api/sessions/{session['id']}/voice-chat",
            files={"audio": ("a.wav", io.BytesIO(wav_bytes()), "audio/wav")},
            headers=auth,
        )
        detail = assert_error(response, 501, "not_available")
        assert "offline" in str(detail["message"])
        assert json.loads(response.text)["detail"]["request_id"]
