# SPDX-License-Identifier: Apache-2.0
"""ALERT_* settings: the documented defaults, and the webhook URL checks."""

from __future__ import annotations

import pytest

from bastion.alerts.rules import Rule, Rules
from bastion.settings import ConfigurationError, Settings
from tests.conftest import SettingsFactory
from tests.unit.test_settings import strong_production_env


def test_defaults_are_the_issues_thresholds(make_settings: SettingsFactory) -> None:
    rules = Rules.from_settings(make_settings())
    assert rules.auth_failures == Rule(10, 300)  # more than 10 in 5 minutes
    assert rules.rate_limit == Rule(100, 3600)  # more than 100 in an hour
    assert rules.server_errors == Rule(10, 60)  # more than 10 in a minute
    assert (rules.tokens.factor, rules.tokens.min_tokens) == (5.0, 10_000)
    assert rules.admin_new_network is True


def test_a_webhook_url_is_accepted_now(make_settings: SettingsFactory) -> None:
    settings = make_settings(ALERT_WEBHOOK_URL="http://127.0.0.1:9/hook")
    assert settings.secret("ALERT_WEBHOOK_URL") == "http://127.0.0.1:9/hook"


@pytest.mark.parametrize(
    "url", ["ftp://example.org/x", "hooks.example.org/x", "https:///nohost", "http://[::1"]
)
def test_a_webhook_url_must_be_an_http_url(make_settings: SettingsFactory, url: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        make_settings(ALERT_WEBHOOK_URL=url)
    assert "ALERT_WEBHOOK_URL must be an absolute http(s) URL" in refused.value.problems
    assert url not in str(refused.value)  # a secret setting: never echoed


def test_a_short_webhook_secret_is_refused(make_settings: SettingsFactory) -> None:
    with pytest.raises(ConfigurationError, match="ALERT_WEBHOOK_SECRET is too short"):
        make_settings(ALERT_WEBHOOK_URL="https://hooks.example.org/x", ALERT_WEBHOOK_SECRET="short")


def test_production_refuses_a_plain_http_webhook_unless_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    strong_production_env(monkeypatch)
    monkeypatch.setenv("ALERT_WEBHOOK_URL", "http://hooks.internal/alerts")
    with pytest.raises(ConfigurationError, match="ALERT_WEBHOOK_URL is plain http"):
        Settings(_env_file=None)  # type: ignore[call-arg]
    monkeypatch.setenv("ALERT_WEBHOOK_ALLOW_HTTP", "true")
    assert Settings(_env_file=None).alert_webhook_allow_http is True  # type: ignore[call-arg]
    monkeypatch.setenv("ALERT_WEBHOOK_URL", "https://hooks.example.org/alerts")
    monkeypatch.delenv("ALERT_WEBHOOK_ALLOW_HTTP")
    assert Settings(_env_file=None).secret("ALERT_WEBHOOK_URL") == "https://hooks.example.org/alerts"  # type: ignore[call-arg]
