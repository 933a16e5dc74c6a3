# SPDX-License-Identifier: Apache-2.0
"""The check registry: one rule per id, read by production refusals, startup warnings and the docs."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bastion.crypto import material
from bastion.db.types import utcnow
from bastion.deploycheck.live import LIVE_CHECKS
from bastion.deploycheck.registry import Context, Registry, Severity, failing
from bastion.deploycheck.rules import CHECKS
from bastion.rotation.service import SecretStatus
from bastion.settings import AUDITING, ConfigurationError, Settings

DOCS = Path(__file__).resolve().parents[3] / "docs" / "deploy.md"


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def production(**values: Any) -> Settings:
    base: dict[str, Any] = {
        **{name.lower(): value for name, value in material.generate_all("EdDSA").items()},
        "environment": "production",
        "allowed_origins": "https://app.example.org",
        "allowed_hosts": "api.example.org",
    }
    return settings(**{**base, **values})


def ids(found: Settings, **context: Any) -> set[str]:
    return {finding.id for finding in found.findings(lambda _: True, **context)}


def test_every_check_is_documented_with_its_severity() -> None:
    text = DOCS.read_text()
    documented = dict(re.findall(r"^\| `([a-z0-9-]+)` \| (critical|high|medium|low|info) \|", text, re.M))
    registered = {check.id: check.severity.label for check in CHECKS.checks}
    registered |= {check_id: severity.label for check_id, (severity, _) in LIVE_CHECKS.items()}
    assert documented == registered


def test_an_id_is_registered_once() -> None:
    registry = Registry()
    registry.add("x", Severity.LOW, "fix")(lambda context: [])
    with pytest.raises(ValueError, match="registered twice"):
        registry.add("x", Severity.LOW, "fix")


def test_production_refuses_exactly_the_refusing_checks(tmp_path: Path) -> None:
    weak = {"debug": True, "allowed_origins": "*", "require_api_key": False, "bcrypt_rounds": 4}
    with pytest.raises(ConfigurationError) as refused:
        production(**weak)
    token = AUDITING.set(True)
    try:
        audited = production(**weak)
    finally:
        AUDITING.reset(token)
    refusing = {finding.message for finding in audited.findings(lambda check: check.refuses)}
    assert refusing == set(refused.value.problems)
    assert {"debug-on", "cors-wildcard", "require-api-key-off", "hash-cost-low"} <= ids(audited)
    # Outside production the same rules are findings of `bastion check`, not startup warnings.
    dev = settings(environment="test", var_dir=tmp_path, debug=True)
    assert "debug-on" in ids(dev)
    assert not any("DEBUG" in warning for warning in dev.warnings())


def test_startup_warnings_are_the_checks_for_this_environment(tmp_path: Path) -> None:
    dev = settings(environment="test", var_dir=tmp_path, openai_api_key="sk-" + "x1" * 20)
    assert dev.warnings() == ["OPENAI_API_KEY is set but LLM_PROVIDER=offline: the key is unused"]
    assert {"environment-not-production", "secret-generated", "database-sqlite"} <= ids(dev)
    prod = production()
    warned = " ".join(prod.warnings())
    assert "DATABASE_URL is SQLite" in warned and "FORCE_HTTPS" in warned
    assert "secret-generated" not in ids(prod)  # every secret was supplied


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"database_url": "postgresql+asyncpg://u:p@db.internal/app"}, {"database-no-tls"}),
        ({"database_url": "postgresql+asyncpg://u:p@db.internal/app?ssl=prefer"}, {"database-no-tls"}),
        ({"database_url": "postgresql+asyncpg://u:p@db.internal/app?ssl=verify-full"}, set()),
        ({"database_url": "postgresql+asyncpg://u:p@127.0.0.1/app"}, set()),
        ({"redis_url": "redis://cache.internal:6379/0"}, {"redis-no-auth", "redis-no-tls"}),
        ({"redis_url": "redis://:pw@cache.internal:6379/0"}, {"redis-no-tls"}),
        ({"redis_url": "rediss://:pw@cache.internal:6380/0"}, set()),
        ({"redis_url": "redis://127.0.0.1:6379/0"}, set()),
        ({"redis_url": "redis+cluster://:pw@a.internal:7000,b.internal:7000"}, {"redis-no-tls"}),
        ({"redis_url": "rediss+cluster://:pw@a.internal:7000,b.internal:7000"}, set()),
        ({"redis_url": "redis+cluster://127.0.0.1:7000,[::1]:7001"}, set()),
        ({"redis_url": "redis+cluster://127.0.0.1:7000,c.internal:7001"}, {"redis-no-auth", "redis-no-tls"}),
        ({"prometheus_port": 9100, "prometheus_host": "10.0.0.5"}, {"metrics-open"}),
        ({"prometheus_port": 9100}, set()),
        ({"force_https": False, "trusted_proxies": "10.0.0.0/8"}, set()),
        ({"injection_action": "log"}, {"injection-action-log"}),
        ({"audit_log_sink": "db"}, {"audit-single-copy"}),
        ({"retention_days_security": 4000}, {"retention-long"}),
        (
            {"llm_provider": "openai", "llm_base_url": "http://llm.internal/v1", "llm_model": "m"},
            {"llm-plain-http"},
        ),
        ({"llm_provider": "openai", "llm_base_url": "http://127.0.0.1:9/v1", "llm_model": "m"}, set()),
    ],
)
def test_each_shared_state_and_transport_rule(values: dict[str, Any], expected: set[str]) -> None:
    considered = {
        "database-no-tls",
        "redis-no-auth",
        "redis-no-tls",
        "metrics-open",
        "https-not-enforced",
        "injection-action-log",
        "audit-single-copy",
        "retention-long",
        "llm-plain-http",
    }
    base: dict[str, Any] = {"force_https": True, "audit_log_sink": "db,stdout"}
    assert ids(production(**{**base, **values})) & considered == expected


def test_reused_stale_and_workers() -> None:
    shared = material.token()
    found = production(csrf_secret=shared, api_key_salt=shared, session_secret=material.token())
    reused = [f for f in found.findings(lambda check: check.id == "secret-reused")]
    assert [f.message for f in reused] == [
        "API_KEY_SALT has the same value as CSRF_SECRET: one leak exposes both"
    ]
    assert shared not in reused[0].message
    now = utcnow()
    statuses = [
        SecretStatus("CSRF_SECRET", "settings", "v1", now - timedelta(days=100), None),
        SecretStatus("SESSION_SECRET", "settings", "v1", now - timedelta(days=3), None),
    ]
    stale = found.findings(lambda check: check.id == "secret-stale", secret_statuses=statuses)
    assert (
        len(stale) == 1
        and stale[0].source == "database"
        and "CSRF_SECRET is 100 days old" in stale[0].message
    )
    assert "workers-without-redis" in ids(found, workers=4)
    assert "workers-without-redis" not in ids(found, workers=1)
    assert "workers-without-redis" not in ids(production(redis_url="redis://127.0.0.1:6379/0"), workers=4)


def test_fail_level_compares_severities() -> None:
    found = production().findings(lambda _: True, secret_statuses=None)
    assert failing(found, None) == []
    assert {f.severity for f in failing(found, Severity.HIGH)} <= {Severity.HIGH, Severity.CRITICAL}
    assert len(failing(found, Severity.INFO)) == len(found)
    assert Context(production()).workers == 1
