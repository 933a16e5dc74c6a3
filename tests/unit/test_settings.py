# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from bastion.crypto import material
from bastion.settings import ConfigurationError, Settings, load_settings
from tests.conftest import SettingsFactory


def strong_production_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = material.generate_all("EdDSA")
    values.update(
        ENVIRONMENT="production",
        ALLOWED_ORIGINS="https://app.example.org",
        ALLOWED_HOSTS="api.example.org",
        DATABASE_URL="postgresql+asyncpg://u:p@db/bastion?ssl=require",
    )
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def test_defaults_match_the_design(make_settings: SettingsFactory) -> None:
    settings = make_settings()
    assert settings.host == "127.0.0.1"
    assert settings.port == 8000
    assert settings.jwt_algorithm == "EdDSA"
    assert settings.access_token_minutes == 30
    assert settings.refresh_token_days == 7
    assert settings.require_api_key is False
    assert settings.rate_limit_fail_mode == "open"
    assert settings.allowed_origins == ["http://localhost:8000", "http://127.0.0.1:8000"]
    assert settings.allowed_hosts == ["localhost", "127.0.0.1"]
    assert settings.max_message_length == 10_000
    assert settings.injection_action == "flag"
    assert settings.llm_provider == "offline"
    assert settings.audit_log_sink == "db"
    assert settings.api_key_header == "X-API-Key"


def test_reads_environment_and_comma_lists(
    monkeypatch: pytest.MonkeyPatch, make_settings: SettingsFactory
) -> None:
    monkeypatch.setenv("PORT", "9001")
    monkeypatch.setenv("ALLOWED_ORIGINS", "https://a.example, https://b.example:8443")
    monkeypatch.setenv("TRUSTED_PROXIES", "10.0.0.0/8,::1")
    monkeypatch.setenv("RATE_LIMIT_PER_MINUTE", "7")
    monkeypatch.setenv("LOG_LEVEL", "debug")
    settings = make_settings()
    assert settings.port == 9001
    assert settings.allowed_origins == ["https://a.example", "https://b.example:8443"]
    assert settings.trusted_proxies == ["10.0.0.0/8", "::1"]
    assert settings.rate_limit_per_minute == 7
    assert settings.log_level == "DEBUG"


def test_reads_dotenv_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text(
        "ENVIRONMENT=test\nMAX_MESSAGE_LENGTH=123\nLICENSE_URL=https://l.example\n"
    )
    monkeypatch.chdir(tmp_path)
    settings = Settings(var_dir=tmp_path / "var")
    assert settings.max_message_length == 123
    assert settings.license_url == "https://l.example"


def test_environment_beats_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("ENVIRONMENT=test\nMAX_MESSAGE_LENGTH=123\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MAX_MESSAGE_LENGTH", "456")
    assert Settings(var_dir=tmp_path / "var").max_message_length == 456


def test_secret_from_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_settings: SettingsFactory
) -> None:
    secret = material.token()
    path = tmp_path / "secret_key"
    path.write_text(secret + "\n")
    monkeypatch.setenv("SECRET_KEY_FILE", str(path))
    monkeypatch.setenv("OPENAI_API_KEY_FILE", str(path))
    settings = make_settings()
    assert settings.secret("SECRET_KEY") == secret
    assert settings.secret("OPENAI_API_KEY") == secret


def test_secret_file_and_value_together_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_settings: SettingsFactory
) -> None:
    path = tmp_path / "s"
    path.write_text(material.token())
    monkeypatch.setenv("SESSION_SECRET_FILE", str(path))
    monkeypatch.setenv("SESSION_SECRET", material.token())
    with pytest.raises(ConfigurationError, match="SESSION_SECRET and SESSION_SECRET_FILE are both set"):
        make_settings()


def test_unreadable_secret_file_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEY_SALT_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigurationError, match="API_KEY_SALT_FILE names a file that cannot be read"):
        Settings(_env_file=None, environment="test", var_dir=tmp_path)  # type: ignore[call-arg]


def test_development_secrets_are_generated_once_private_and_reused(tmp_path: Path) -> None:
    var = tmp_path / "var"
    first = Settings(_env_file=None, environment="development", var_dir=var)  # type: ignore[call-arg]
    stored = var / "secrets.json"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert stat.S_IMODE(var.stat().st_mode) == 0o700
    second = Settings(_env_file=None, environment="development", var_dir=var)  # type: ignore[call-arg]
    for name in (
        "SECRET_KEY",
        "JWT_PRIVATE_KEYS",
        "DATABASE_ENCRYPTION_KEY",
        "SESSION_SECRET",
        "CSRF_SECRET",
    ):
        value = first.secret(name)
        assert value is not None
        assert value == second.secret(name)
        assert json.loads(stored.read_text())[name] == value
    # Each generated secret is strong enough for production.
    for name in ("SECRET_KEY", "SESSION_SECRET", "CSRF_SECRET", "API_KEY_SALT"):
        assert material.weakness(first.secret(name) or "") is None


def test_development_secrets_file_is_tightened(tmp_path: Path) -> None:
    var = tmp_path / "var"
    Settings(_env_file=None, environment="development", var_dir=var)  # type: ignore[call-arg]
    (var / "secrets.json").chmod(0o644)
    Settings(_env_file=None, environment="development", var_dir=var)  # type: ignore[call-arg]
    assert stat.S_IMODE((var / "secrets.json").stat().st_mode) == 0o600


def test_explicit_secret_wins_over_generated(tmp_path: Path) -> None:
    mine = material.token()
    settings = Settings(_env_file=None, environment="development", var_dir=tmp_path, secret_key=mine)  # type: ignore[call-arg]
    assert settings.secret("SECRET_KEY") == mine


def test_test_environment_writes_nothing(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, environment="test", var_dir=tmp_path / "var")  # type: ignore[call-arg]
    assert settings.secret("CSRF_SECRET")
    assert not (tmp_path / "var").exists()


def test_production_with_strong_settings_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    strong_production_env(monkeypatch)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.require_api_key is True
    assert settings.rate_limit_fail_mode == "closed"


def test_production_refusal_lists_every_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("DEBUG", "true")
    monkeypatch.setenv("ALLOWED_ORIGINS", "*")
    monkeypatch.setenv("REQUIRE_API_KEY", "false")
    monkeypatch.setenv("SECRET_KEY", "changeme")
    monkeypatch.setenv("SESSION_SECRET", "short")
    monkeypatch.setenv("CSRF_SECRET", "a" * 64)
    with pytest.raises(ConfigurationError) as caught:
        Settings(_env_file=None)  # type: ignore[call-arg]
    problems = "\n".join(caught.value.problems)
    assert "DEBUG must be false" in problems
    assert "ALLOWED_ORIGINS" in problems
    assert "REQUIRE_API_KEY must be true" in problems
    assert "JWT_PRIVATE_KEYS is missing" in problems
    assert "DATABASE_ENCRYPTION_KEY is missing" in problems
    assert "API_KEY_SALT is missing" in problems
    assert "SECRET_KEY is too weak: it looks like a placeholder" in problems
    assert "SESSION_SECRET is too weak" in problems
    assert "CSRF_SECRET is too weak" in problems
    assert len(caught.value.problems) == 9
    # The refusal never repeats a secret value.
    assert "changeme'" not in caught.value.render().replace("'changeme'", "")
    assert "short" not in problems.replace("shortest", "")


def test_production_hs256_needs_a_strong_secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    strong_production_env(monkeypatch)
    monkeypatch.setenv("JWT_ALGORITHM", "HS256")
    monkeypatch.delenv("SECRET_KEY")
    with pytest.raises(ConfigurationError, match="SECRET_KEY is missing"):
        Settings(_env_file=None)  # type: ignore[call-arg]
    monkeypatch.setenv("SECRET_KEY", "0123456789abcdef" * 2)  # 128 bits of hex
    with pytest.raises(ConfigurationError, match="SECRET_KEY is too weak"):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_malformed_key_material_is_refused_in_any_environment(make_settings: SettingsFactory) -> None:
    with pytest.raises(ConfigurationError, match="DATABASE_ENCRYPTION_KEY is malformed"):
        make_settings(DATABASE_ENCRYPTION_KEY="k1:dG9vLXNob3J0")
    with pytest.raises(ConfigurationError, match="JWT_PRIVATE_KEYS is malformed"):
        make_settings(JWT_PRIVATE_KEYS='{"k1": "not a pem"}')
    with pytest.raises(ConfigurationError, match="not an RSA key"):
        make_settings(JWT_ALGORITHM="RS256", JWT_PRIVATE_KEYS=material.signing_keyset("EdDSA"))


def test_type_errors_are_listed_without_values(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PORT", "not-a-port-hunter2")
    monkeypatch.setenv("TRUSTED_PROXIES", "10.0.0.0/8,evil")
    with pytest.raises(ConfigurationError) as caught:
        load_settings(_env_file=None, environment="test", var_dir=tmp_path)
    text = caught.value.render()
    assert "PORT" in text and "TRUSTED_PROXIES" in text
    assert "hunter2" not in text and "evil" not in text


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ALLOWED_ORIGINS", "https://a.example/path"),
        ("LOG_LEVEL", "loud"),
        ("AUDIT_LOG_SINK", "db,ftp://x"),
        ("API_KEY_HEADER", "X-Key\r\nInjected: 1"),
        ("MAX_MESSAGE_LENGTH", "0"),
    ],
)
def test_invalid_values_are_refused(name: str, value: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=name):
        load_settings(_env_file=None, environment="test", var_dir=tmp_path, **{name.lower(): value})


def test_warnings_for_production_risks(monkeypatch: pytest.MonkeyPatch) -> None:
    strong_production_env(monkeypatch)
    monkeypatch.setenv("DATABASE_URL", "sqlite+aiosqlite:///./var/x.db")
    monkeypatch.setenv("RATE_LIMIT_FAIL_MODE", "open")
    warnings = "\n".join(Settings(_env_file=None).warnings())  # type: ignore[call-arg]
    assert "SQLite" in warnings
    assert "REDIS_URL is unset" in warnings
    assert "RATE_LIMIT_FAIL_MODE=open" in warnings


def test_a_token_budget_below_the_completion_cap_is_flagged(make_settings: SettingsFactory) -> None:
    flagged = make_settings(RATE_LIMIT_TOKEN_BUDGET_PER_DAY=500, LLM_MAX_COMPLETION_TOKENS=1024)
    assert any("LLM_MAX_COMPLETION_TOKENS" in warning for warning in flagged.warnings())
    fine = make_settings(RATE_LIMIT_TOKEN_BUDGET_PER_DAY=50_000)
    assert not any("LLM_MAX_COMPLETION_TOKENS" in warning for warning in fine.warnings())


def test_secret_values_cover_static_keys(make_settings: SettingsFactory) -> None:
    settings = make_settings(API_KEYS="static-key-one-123, static-key-two-456")
    values = settings.secret_values()
    assert "static-key-one-123" in values and "static-key-two-456" in values


def test_guard_settings_take_effect(make_settings: SettingsFactory) -> None:
    settings = make_settings(INJECTION_ACTION="Block", PROFANITY_FILTER="false")
    assert (settings.injection_action, settings.profanity_filter) == ("block", False)
    assert make_settings(INJECTION_ACTION="log").injection_action == "log"


@pytest.mark.parametrize("value", ["deny", "", "flag,block", "1"])
def test_an_unknown_injection_action_is_refused_by_name(value: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings(_env_file=None, environment="test", var_dir=tmp_path, injection_action=value)
    assert caught.value.problems == ["INJECTION_ACTION: Value error, must be one of log, flag, block"]
