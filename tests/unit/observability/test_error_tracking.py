# SPDX-License-Identifier: Apache-2.0
"""The Sentry event scrubber and the SENTRY_DSN setting (the delivery itself: tests/integration)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from bastion.observability.errortracking import EventScrubber
from bastion.observability.redaction import REDACTED, Redactor
from bastion.settings import ConfigurationError, load_settings
from tests.conftest import SettingsFactory
from tests.unit.test_settings import strong_production_env

CONFIGURED = "configured-secret-value-0042"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJlLXZhbHVl"


@pytest.fixture
def scrubber() -> EventScrubber:
    return EventScrubber(Redactor(extra_names=("X-Tenant-Key",), secret_values=(CONFIGURED,)))


def event() -> dict[str, Any]:
    return {
        "timestamp": datetime(2026, 1, 2, tzinfo=UTC),
        "message": f"failed with {CONFIGURED}",
        "user": {"ip_address": "203.0.113.9", "id": "u-1"},
        "request": {
            "method": "POST",
            "url": "https://api.example.org/api/x?token=abc123def#frag",
            "query_string": "token=abc123def",
            "cookies": {"session": "cookie-value-1"},
            "data": {"password": "body-password-1"},
            "env": {"REMOTE_ADDR": "203.0.113.9"},
            "headers": {
                "Authorization": f"Bearer {JWT}",
                "X-Tenant-Key": "tenant-secret-1",
                "X-CSRF-Token": "csrf-value-1",
                "Proxy-Authorization": "Basic dXNlcjpwYXNz",
                "X-Forwarded-For": "203.0.113.9",
                "User-Agent": f"agent with {CONFIGURED}",
                "Content-Type": "application/json",
            },
        },
        "breadcrumbs": {"values": [{"message": "key bst_ab12cd_SECRETPART123 refused", "data": {}}]},
        "extra": {"dsn": "postgresql://bastion:pa55word-long@db/x", "nested": {"api_key": "k-1"}},
        "tags": {"note": f"token {JWT}"},
        "exception": {
            "values": [
                {
                    "type": "RuntimeError",
                    "value": f"upstream said password=hunter2hunter2 and {CONFIGURED}",
                    "stacktrace": {"frames": [{"function": "f", "vars": {"secret": CONFIGURED}}]},
                }
            ]
        },
    }


def test_an_event_keeps_what_helps_and_loses_every_credential(scrubber: EventScrubber) -> None:
    out = scrubber(event(), {})  # type: ignore[arg-type]
    assert out is not None
    text = repr(out)
    for secret in (
        CONFIGURED,
        JWT,
        "abc123def",
        "cookie-value-1",
        "body-password-1",
        "tenant-secret-1",
        "csrf-value-1",
        "dXNlcjpwYXNz",
        "203.0.113.9",
        "SECRETPART123",
        "pa55word-long",
        "hunter2hunter2",
        "k-1",
    ):
        assert secret not in text, secret
    request = out["request"]
    assert request == {
        "method": "POST",
        "url": "https://api.example.org/api/x",
        "headers": {"User-Agent": f"agent with {REDACTED}", "Content-Type": "application/json"},
    }
    assert "user" not in out
    assert out["timestamp"] == datetime(2026, 1, 2, tzinfo=UTC)  # still a timestamp for the SDK
    assert out["exception"]["values"][0]["type"] == "RuntimeError"


def test_breadcrumbs_are_scrubbed_as_they_are_recorded(scrubber: EventScrubber) -> None:
    crumb = {"category": "httpx", "message": f"GET /x?api_key={CONFIGURED}", "data": {"token": "t-1"}}
    out = scrubber.breadcrumb(crumb, None)  # type: ignore[arg-type]
    assert out is not None
    assert CONFIGURED not in repr(out) and "t-1" not in repr(out)
    assert out["category"] == "httpx"


@pytest.mark.parametrize(
    "dsn", ["ftp://key@sentry.example.org/1", "https://sentry.example.org/1", "https://key@host/", "nonsense"]
)
def test_a_malformed_dsn_is_refused_without_echoing_it(make_settings: SettingsFactory, dsn: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        make_settings(SENTRY_DSN=dsn)
    assert "SENTRY_DSN is not a Sentry DSN" in refused.value.render()
    assert dsn not in refused.value.render()


def test_production_wants_https_unless_http_is_explicitly_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    strong_production_env(monkeypatch)
    monkeypatch.setenv("SENTRY_DSN", "http://key@relay.internal:9000/3")
    with pytest.raises(ConfigurationError) as refused:
        load_settings()
    assert "SENTRY_DSN must be https in production" in refused.value.render()
    monkeypatch.setenv("SENTRY_ALLOW_HTTP", "true")
    settings = load_settings()
    assert any("SENTRY_DSN is plain http" in warning for warning in settings.warnings())
    monkeypatch.setenv("SENTRY_DSN", "https://key@o1.ingest.sentry.io/3")
    monkeypatch.delenv("SENTRY_ALLOW_HTTP")
    assert load_settings().secret("SENTRY_DSN") == "https://key@o1.ingest.sentry.io/3"


def test_url_passwords_count_as_secrets_on_their_own(make_settings: SettingsFactory) -> None:
    settings = make_settings(REDIS_URL="redis://:redis-Pass-774%2F21@cache:6379/0")
    values = settings.secret_values()
    assert "redis-Pass-774/21" in values
    assert "redis://:redis-Pass-774%2F21@cache:6379/0" in values
