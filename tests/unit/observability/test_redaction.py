# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

import pytest

from bastion.observability.redaction import REDACTED, Own, Redactor

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJlLXZhbHVl"


@pytest.fixture
def redactor() -> Redactor:
    return Redactor(extra_names=("X-Tenant-Key",), secret_values=("s3cr3t-configured-value",))


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("GET /x?token=abc123def&page=2", "abc123def"),
        ("GET /api/admin/users?email=person%40example.com&limit=5", "person%40example.com"),
        ("GET /x?page=2&api_key=zzz999yyy", "zzz999yyy"),
        ("/reset?access_token=tok-1234567", "tok-1234567"),
        ("password=hunter2hunter2", "hunter2hunter2"),
        ("Authorization: Bearer abc.def.ghi-123", "abc.def.ghi-123"),
        ("auth header was basic dXNlcjpwYXNz", "dXNlcjpwYXNz"),
        (f"token {JWT} rejected", JWT),
        ("key bst_ab12cd_SECRETPART123 leaked", "SECRETPART123"),
        ("upstream sk-proj-abcdefghijklmnop failed", "abcdefghijklmnop"),
        ("connect postgresql://bastion:pa55word@db:5432/x failed", "pa55word"),
        ('{"password": "hunter2hunter2", "email": "a@b.c"}', "hunter2hunter2"),
        ("{'refresh_token': 'rt-value-123'}", "rt-value-123"),
        ("failed with s3cr3t-configured-value inside", "s3cr3t-configured-value"),
        ("x-tenant-key: tenantsecret99", "tenantsecret99"),
        ("cookie: session=abcdef123456; theme=dark", "abcdef123456"),
        ("-----BEGIN PRIVATE KEY-----\nMC4CAQAw\n-----END PRIVATE KEY-----", "MC4CAQAw"),
    ],
)
def test_text_scrubbing(redactor: Redactor, text: str, secret: str) -> None:
    out = redactor.text(text)
    assert secret not in out
    assert REDACTED in out


def test_harmless_text_is_kept(redactor: Redactor) -> None:
    text = "GET /api/sessions?page=2&session_id=abc&monkey=banana status=200"
    assert redactor.text(text) == text


def test_event_dicts_redact_sensitive_keys_at_any_depth(redactor: Redactor) -> None:
    event = {
        "event": "request",
        "headers": {"authorization": "Bearer abc", "X-API-Key": "k", "accept": "json", "x-tenant-key": "t"},
        "password": "p",
        "items": [{"refresh_token": "r"}],
        "count": 3,
        "request_id": "id-1",
    }
    out = redactor(None, "info", event)
    assert out["headers"] == {
        "authorization": REDACTED,
        "X-API-Key": REDACTED,
        "accept": "json",
        "x-tenant-key": REDACTED,
    }
    assert out["password"] == REDACTED
    assert out["items"] == [{"refresh_token": REDACTED}]
    assert out["count"] == 3 and out["request_id"] == "id-1"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f"next=/x&monkey={JWT}", JWT),
        ("redirect=postgresql://u:pa55word@db/x", "pa55word"),
        ('{"monkey": "bst_ab12cd_SECRETPART123"}', "SECRETPART123"),
        ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA=="),
        ("note=s3cr3t-configured-value", "s3cr3t-configured-value"),
    ],
)
def test_credentials_inside_harmless_pairs_are_scrubbed(redactor: Redactor, text: str, secret: str) -> None:
    out = redactor.text(text)
    assert secret not in out and REDACTED in out


@pytest.mark.parametrize("unit", ["a.", "eyJ-", "a.b", "'a':\"", "key=", "key=a&", "bearer ", "x://"])
def test_long_hostile_text_is_scrubbed_in_one_pass(redactor: Redactor, unit: str) -> None:
    # Text built to make a backtracking matcher retry at every position; RE2 reads it once.
    text = unit * 20_000
    out = redactor.text(text)
    assert out == text or REDACTED in out


def test_own_text_is_written_unscanned_and_everything_else_is_scanned(redactor: Redactor) -> None:
    event = {"event": Own("request"), "route": Own("/token={token}"), "query": "token=abc123def", "n": 1}
    out = redactor(None, "info", event)
    assert out == {"event": "request", "route": "/token={token}", "query": f"token={REDACTED}", "n": 1}


def test_structlog_bookkeeping_passes_through(redactor: Redactor) -> None:
    record = object()
    out = redactor(None, "info", {"event": "x", "_record": record, "_from_structlog": True})
    assert out["_record"] is record and out["_from_structlog"] is True
