# SPDX-License-Identifier: Apache-2.0
"""Typed, validated settings from the environment, a `.env` file and `NAME_FILE` secret files.

This is the only module that reads ``os.environ``. Everything else receives a ``Settings``.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import os
import stat
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, PrivateAttr, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from bastion.crypto import material
from bastion.outbound import host_problems, is_metadata_host, url_problems
from bastion.redis_client import URL_FORMS as REDIS_URL_FORMS
from bastion.redis_client import check_url as check_redis_url

if TYPE_CHECKING:
    from bastion.deploycheck.registry import Check, Finding

Environment = Literal["development", "test", "production"]

# Secrets that may be generated in development and must be supplied in production.
GENERATED_SECRETS = tuple(material.GENERATORS)
# Every field that may carry credentials: these also accept NAME_FILE, are never echoed in errors,
# and their values are scrubbed from logs.
SECRET_FIELDS = (
    *GENERATED_SECRETS,
    "SMTP_PASSWORD",
    "OPENAI_API_KEY",
    "API_KEYS",
    "ML_API_KEYS",
    "DATABASE_URL",
    "REDIS_URL",
    "SENTRY_DSN",
    "ALERT_WEBHOOK_URL",
    "ALERT_WEBHOOK_SECRET",
)
DEV_SECRETS_FILE = "secrets.json"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

CommaList = Annotated[list[str], NoDecode]


# Secrets used as HMAC keys: shorter than this is a typo or a placeholder, never a key.
MIN_SECRET_CHARS = 32
# Drivers DATABASE_URL may name, and the async driver to use instead of each synchronous one.
ASYNC_DRIVERS = frozenset({"postgresql+asyncpg", "sqlite+aiosqlite"})
SYNC_DRIVERS = {
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+psycopg2": "postgresql+asyncpg",
    "postgresql+psycopg": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
    "sqlite+pysqlite": "sqlite+aiosqlite",
}


def _set(value: Any) -> bool:
    return value is not None


# Settings whose feature this version does not have yet: setting one is refused (never silently
# ignored). Each entry goes when its feature lands.
NOT_IN_THIS_VERSION: dict[str, tuple[str, Callable[[Any], bool]]] = {}


# Response headers Bastion (or the HTTP layer) sets itself: LICENSE_HEADER may not be one of them,
# or the license link would replace, or sit beside, a header clients and browsers rely on.
RESPONSE_HEADERS = frozenset(
    {
        "allow",
        "cache-control",
        "connection",
        "content-disposition",
        "content-encoding",
        "content-language",
        "content-length",
        "content-location",
        "content-security-policy",
        "content-security-policy-report-only",
        "content-type",
        "content-warning",
        "date",
        "etag",
        "expires",
        "keep-alive",
        "last-modified",
        "link",
        "location",
        "permissions-policy",
        "pragma",
        "referrer-policy",
        "retry-after",
        "server",
        "set-cookie",
        "strict-transport-security",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "vary",
        "www-authenticate",
        "x-accel-buffering",
        "x-content-signature",
        "x-content-type-options",
        "x-csrf-token",
        "x-frame-options",
        "x-permitted-cross-domain-policies",
        "x-powered-by",
        "x-request-id",
        "x-xss-protection",
    }
)
RESPONSE_HEADER_PREFIXES = ("access-control-", "cross-origin-", "x-ratelimit-", "sec-", "proxy-")

MAX_TERMS_BYTES = 1_000_000
TERMS_TYPES = {".txt": "text/plain", ".md": "text/markdown", ".html": "text/html"}


def terms_problems(path: Path | None) -> list[str]:
    """What keeps TERMS_FILE from being served (nothing when unset)."""
    if path is None:
        return []
    # The file a link points to too: terms.txt -> /etc/passwd or /proc/self/environ is refused.
    suffixes = {path.suffix.lower(), Path(os.path.realpath(path)).suffix.lower()}
    if not suffixes <= TERMS_TYPES.keys():
        return [f"TERMS_FILE must end in {', '.join(TERMS_TYPES)} (and so must a file it links to)"]
    try:
        size = path.stat().st_size
    except OSError as exc:
        return [f"TERMS_FILE {path} cannot be read ({exc.strerror})"]
    if not path.is_file() or size > MAX_TERMS_BYTES:
        return [f"TERMS_FILE {path} must be a file of at most {MAX_TERMS_BYTES} bytes"]
    return []


# Settings earlier versions read, and what replaced them: still set means a choice that no longer
# takes effect, so it is refused with the new names.
RETIRED_SETTINGS = {
    "LOGIN_MAX_FAILURES": "LOGIN_DELAY_AFTER_FAILURES (per client) and LOGIN_LOCK_FAILURES (account-wide)",
}


def retired_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    present = environ if environ is not None else os.environ
    return [
        f"{name} no longer exists: use {replacement}"
        for name, replacement in RETIRED_SETTINGS.items()
        if name in present or f"{name}_FILE" in present
    ]


def misspelled_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """Environment variables that look like a misspelled Bastion setting (close to a known name)."""
    known = {name.upper() for name in Settings.model_fields}
    known |= {f"{name}_FILE" for name in known}
    found = []
    for name in sorted(environ if environ is not None else os.environ):
        if name in known or "_" not in name or not name.isupper():
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.85)
        if close:
            found.append(f"{name} is not a Bastion setting: did you mean {close[0]}?")
    return found


class ConfigurationError(Exception):
    """The settings cannot be used; ``problems`` names each one, with no secret values."""

    def __init__(self, problems: Iterable[str], *, heading: str = "Bastion cannot start") -> None:
        self.problems = list(problems)
        self.heading = heading
        super().__init__(self.render())

    def render(self) -> str:
        lines = [f"{self.heading}: {len(self.problems)} configuration problem(s)"]
        lines += [f"  - {problem}" for problem in self.problems]
        return "\n".join(lines)


class SecretFileSource(PydanticBaseSettingsSource):
    """Reads ``NAME_FILE`` for any setting: the path of a file holding the value (container secrets)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        problems: list[str] = []
        for name in self.settings_cls.model_fields:
            env_name = name.upper()
            path = os.environ.get(f"{env_name}_FILE")
            if not path:
                continue
            if os.environ.get(env_name):
                problems.append(f"{env_name} and {env_name}_FILE are both set; set only one")
                continue
            try:
                values[name] = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
            except (OSError, UnicodeDecodeError) as exc:
                problems.append(f"{env_name}_FILE names a file that cannot be read ({type(exc).__name__})")
        if problems:
            raise ConfigurationError(problems)
        return values


class Settings(BaseSettings):
    """Every configuration variable of Bastion. Field ``name`` is read from env ``NAME``."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        case_sensitive=False,
        extra="ignore",
        validate_default=True,
    )

    # Secrets filled in by Bastion itself (development and test), for the deploy check.
    _generated: set[str] = PrivateAttr(default_factory=set)

    environment: Environment = "development"
    debug: bool = False
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    var_dir: Path = Path("./var")

    database_url: SecretStr = SecretStr("")
    redis_url: SecretStr | None = None

    secret_key: SecretStr | None = None
    jwt_algorithm: Literal["EdDSA", "RS256", "HS256"] = "EdDSA"
    jwt_private_keys: SecretStr | None = None
    access_token_minutes: int = Field(30, ge=1, le=24 * 60)
    refresh_token_days: int = Field(7, ge=1, le=365)
    database_encryption_key: SecretStr | None = None
    session_secret: SecretStr | None = None
    csrf_secret: SecretStr | None = None
    api_key_salt: SecretStr | None = None
    password_hasher: Literal["argon2", "bcrypt"] = "argon2"  # noqa: S105 - an algorithm name
    password_policy: Literal["seed", "nist"] = "seed"  # noqa: S105 - a policy name

    smtp_host: str | None = None
    smtp_port: int = Field(587, ge=1, le=65535)
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str | None = None

    require_api_key: bool | None = None  # resolved from the environment when unset
    api_key_header: str = Field("X-API-Key", pattern=r"^[A-Za-z0-9-]{1,64}$")
    api_keys: SecretStr | None = None
    ml_api_keys: SecretStr | None = None
    # Users may create their own keys (never above their own rights or the operator's allowances);
    # false: only administrators issue keys.
    api_key_self_service: bool = True
    # Who may create an account: anyone (open), holders of an admin's invitation (invite), or
    # nobody: administrators create accounts (closed).
    registration: Literal["open", "invite", "closed"] = "open"
    invitation_days: int = Field(7, ge=1, le=90)  # how long an invitation stays valid

    allowed_origins: CommaList = ["http://localhost:8000", "http://127.0.0.1:8000"]
    allowed_hosts: CommaList = ["localhost", "127.0.0.1"]
    trusted_proxies: CommaList = []
    # IPv6 clients are limited and blocked per network of this prefix (a client usually holds a
    # whole /64); IPv4-mapped addresses count as IPv4.
    rate_limit_ipv6_prefix: int = Field(64, ge=32, le=128)
    force_https: bool = False

    rate_limit_per_minute: int = Field(100, ge=1)
    rate_limit_fail_mode: Literal["open", "closed"] | None = None  # closed in production when unset
    rate_limit_messages_per_hour: int = Field(100, ge=1)
    # All of one user's keys (and tokens) together; RATE_LIMIT_MESSAGES_PER_HOUR when unset.
    rate_limit_messages_per_user_hour: int | None = Field(None, ge=1)
    rate_limit_voice_concurrent: int = Field(10, ge=1)
    max_sessions_per_api_key: int = Field(50, ge=1)
    max_total_sessions: int = Field(1000, ge=1)
    max_message_length: int = Field(10_000, ge=1, le=1_000_000)
    max_journal_length: int = Field(50_000, ge=1, le=10_000_000)
    max_audio_size_mb: int = Field(10, ge=1, le=200)
    max_history_messages: int = Field(100, ge=1, le=10_000)
    session_ttl_minutes: int = Field(90, ge=1)

    # What a suspected prompt injection or jailbreak gets: allowed and logged (log), allowed,
    # logged and audited (flag), or refused with a 422 (block). docs/guardrails.md.
    injection_action: Literal["log", "flag", "block"] = "flag"
    profanity_filter: bool = True  # profanity in input and replies is flagged (Content-Warning)

    llm_provider: Literal["offline", "openai"] = "offline"
    llm_base_url: str | None = None
    llm_model: str | None = None
    openai_api_key: SecretStr | None = None
    llm_timeout_seconds: float = Field(30.0, gt=0, le=600)
    llm_max_retries: int = Field(2, ge=0, le=10)
    # Sent upstream as max_tokens on every completion (a caller's lower max_tokens is kept), and
    # reserved from the daily token budget with the prompt's estimate before the call.
    llm_max_completion_tokens: int = Field(1024, ge=1, le=32_768)
    # What a transcription costs in the daily token budget, per MB of uploaded audio.
    transcription_tokens_per_mb: int = Field(1000, ge=1, le=10_000_000)
    # Model provider resilience (beyond the documented table).
    llm_breaker_threshold: int = Field(5, ge=1, le=1000)
    llm_breaker_recovery_seconds: float = Field(30.0, gt=0, le=3600)
    llm_transcription_model: str = Field("whisper-1", min_length=1, max_length=128)
    # How often each instance runs the retention purges (expired chat sessions, ...).
    maintenance_interval_seconds: int = Field(900, ge=1, le=24 * 3600)

    # Sent as a response header value and in error bodies: an http(s) URL of printable ASCII.
    license_url: str | None = Field(None, pattern=r"^https?://[\x21-\x7e]{1,2040}$")
    license_header: str = Field("X-License", pattern=r"^[A-Za-z0-9-]{1,64}$")
    # The operator's terms of use, served at /legal/terms (.txt, .md or .html; at most 1 MB).
    terms_file: Path | None = None

    audit_log_sink: str = "db"
    audit_log_sink_token: SecretStr | None = None  # bearer token sent to an http(s) collector
    audit_file_max_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    audit_file_backups: int = Field(5, ge=0, le=1000)
    audit_sink_buffer: int = Field(10_000, ge=100, le=1_000_000)
    access_log: bool = True  # one access_logs row per request (batched)
    access_log_flush_seconds: float = Field(1.0, gt=0, le=60)
    retention_days_app: int = Field(30, ge=1)
    retention_days_access: int = Field(90, ge=1)
    retention_days_security: int = Field(365, ge=1)

    enable_json_logging: bool = True
    log_level: str = "INFO"
    # Error tracking (docs/error-tracking.md): a Sentry DSN, https in production unless
    # SENTRY_ALLOW_HTTP (a relay on the same host or a private network) says plain http is meant.
    sentry_dsn: SecretStr | None = None
    sentry_allow_http: bool = False
    alert_webhook_url: SecretStr | None = None

    # -- anomaly detection and alerts (bastion.alerts, docs/alerts.md) ---------------------------
    # Each detector alerts when its count goes above the threshold within its window (0: off).
    alert_auth_failures: int = Field(10, ge=0)  # failed authentications per client address or account
    alert_auth_failure_window_seconds: int = Field(300, ge=1, le=7 * 24 * 3600)
    alert_rate_limit_violations: int = Field(100, ge=0)  # 429 answers per client address
    alert_rate_limit_window_seconds: int = Field(3600, ge=1, le=7 * 24 * 3600)
    alert_server_errors: int = Field(10, ge=0)  # 5xx answers, all clients together
    alert_server_error_window_seconds: int = Field(60, ge=1, le=7 * 24 * 3600)
    alert_key_refusals: int = Field(20, ge=0)  # 401 and 429 answers to one API key
    alert_key_refusal_window_seconds: int = Field(300, ge=1, le=7 * 24 * 3600)
    alert_prompt_extraction: int = Field(5, ge=0)  # prompt-extraction verdicts per key, account or address
    alert_prompt_extraction_window_seconds: int = Field(3600, ge=1, le=7 * 24 * 3600)
    alert_session_creations: int = Field(200, ge=0)  # chat sessions created, all callers together
    alert_session_creation_window_seconds: int = Field(300, ge=1, le=7 * 24 * 3600)
    # A key's tokens in the current hour above FACTOR x its baseline (a weighted mean of its earlier
    # active hours, the latest weighing BASELINE_WEIGHT), once the hour reaches MIN_TOKENS (0: off).
    alert_token_usage_factor: float = Field(5.0, ge=0, le=1000)
    alert_token_usage_min_tokens: int = Field(10_000, ge=1)
    alert_token_baseline_weight: float = Field(0.3, gt=0, le=1)
    alert_admin_new_network: bool = True  # an administrator signing in from a network not seen before
    alert_queue_size: int = Field(1000, ge=1, le=100_000)  # alerts waiting to be stored and sent
    # Each alert is POSTed here as JSON; signed with HMAC-SHA256 when ALERT_WEBHOOK_SECRET is set.
    alert_webhook_secret: SecretStr | None = None
    alert_webhook_allow_http: bool = False  # production refuses a plain-http ALERT_WEBHOOK_URL unless true
    alert_webhook_timeout_seconds: float = Field(5.0, gt=0, le=60)  # per attempt
    alert_webhook_max_attempts: int = Field(6, ge=1, le=20)
    alert_webhook_backoff_seconds: float = Field(1.0, gt=0, le=300)  # first retry; doubles, with jitter
    alert_webhook_queue_size: int = Field(1000, ge=1, le=100_000)
    # A second, unauthenticated listener for the metrics (docs/metrics.md); loopback by default.
    prometheus_port: int | None = Field(None, ge=1, le=65535)
    prometheus_host: str = Field("127.0.0.1", min_length=1, max_length=255)

    # -- identity (accounts, tokens, passwords) ---------------------------------------------------
    jwt_issuer: str = Field("bastion", min_length=1, max_length=200)
    jwt_audience: str = Field("bastion-api", min_length=1, max_length=200)
    jwt_key_grace_days: int = Field(7, ge=0, le=365)  # retired signing keys still verify this long
    # After `bastion keys rotate-content-signing`, the previous content key's public half stays in
    # the JWKS this long, so replies it signed still verify (docs/signatures.md).
    content_key_grace_days: int = Field(30, ge=0, le=3650)
    # Secret rotation (docs/secrets.md): `bastion check` and `bastion secrets status` warn about a
    # secret older than this; a settings value seen for the first time replaces the previous one,
    # which keeps verifying SECRET_GRACE_DAYS (also `bastion secrets rotate`'s default grace).
    secret_rotation_days: int = Field(90, ge=1, le=365)
    secret_grace_days: int = Field(7, ge=0, le=90)
    session_max_days: int = Field(30, ge=1, le=365)  # absolute lifetime of a refresh-token family
    # Ended sessions and revoked tokens this process remembers without Redis (memory bound).
    revocation_max_entries: int = Field(100_000, ge=100, le=10_000_000)
    password_reset_minutes: int = Field(30, ge=5, le=24 * 60)
    # Hash cost. Production refuses values under these defaults; tests lower them to stay fast.
    argon2_memory_kib: int = Field(19_456, ge=8, le=4 * 1024 * 1024)
    argon2_time_cost: int = Field(2, ge=1, le=100)
    argon2_parallelism: int = Field(1, ge=1, le=64)
    bcrypt_rounds: int = Field(12, ge=4, le=20)
    password_hash_workers: int = Field(4, ge=1, le=64)  # threads that hash; never the event loop
    # Password throttle: every password check (login, password change) counts; docs/identity.md.
    login_failure_window_minutes: int = Field(15, ge=1, le=24 * 60)  # how long failures are counted
    login_delay_after_failures: int = Field(3, ge=1, le=100)  # per account and client, before waits
    login_delay_seconds: int = Field(2, ge=1, le=3600)  # the first wait; doubles per further failure
    login_delay_max_seconds: int = Field(900, ge=1, le=24 * 3600)  # the longest wait
    login_ip_max_failures: int = Field(30, ge=1, le=100_000)  # per client address, within the window
    # The account-wide lock: consecutive failures (NIST SP 800-63B: at most 100) from many clients.
    login_lock_failures: int = Field(100, ge=1, le=100)
    login_lock_clients: int = Field(10, ge=1, le=100)  # distinct client addresses among them
    login_lock_window_hours: int = Field(24, ge=1, le=7 * 24)  # a quiet period that forgets them
    login_lockout_minutes: int = Field(15, ge=1, le=24 * 60)  # first lock; doubles each time after
    login_throttle_max_keys: int = Field(100_000, ge=100)  # in-process entries kept (memory bound)
    auth_purge_interval_seconds: int = Field(3600, ge=1, le=7 * 24 * 3600)
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"

    # -- HTTP and transport hardening (bastion.web middleware, API docs) -------------------------
    max_request_body_bytes: int = Field(1024 * 1024, ge=1024, le=1024**3)
    max_json_body_bytes: int = Field(1024 * 1024, ge=1024, le=1024**3)
    request_body_timeout_seconds: float = Field(30.0, gt=0, le=3600)
    # How long a client has to send its request line and headers (bastion serve; slowloris).
    request_header_timeout_seconds: float = Field(10.0, gt=0, le=300)
    max_request_headers: int = Field(100, ge=16, le=1000)
    max_request_header_bytes: int = Field(32 * 1024, ge=4096, le=1024 * 1024)
    x_xss_protection: Literal["0", "1; mode=block"] = "0"
    enable_docs: bool | None = None  # /docs, /redoc, /openapi.json; off in production when unset
    microphone_paths: CommaList = []  # path prefixes whose pages may use the microphone

    @field_validator("microphone_paths", mode="before")
    @classmethod
    def _split_paths(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @property
    def docs_enabled(self) -> bool:
        return self.enable_docs if self.enable_docs is not None else not self.is_production

    # -- rate limiting and abuse control (bastion.ratelimit) -----------------------------------
    # Route policies are rates written "N/second|minute|hour|day[;burst=N]" (burst defaults to N).
    # RATE_LIMIT_PER_MINUTE, RATE_LIMIT_MESSAGES_PER_HOUR, RATE_LIMIT_VOICE_CONCURRENT and the
    # MAX_*SESSIONS caps above are the documented knobs; these refine the rest of the policy table.
    rate_limit_global_burst: int | None = Field(None, ge=1)  # RATE_LIMIT_PER_MINUTE when unset
    rate_limit_register: str = "3/minute;burst=3"
    rate_limit_login: str = "5/minute;burst=3"
    rate_limit_refresh: str = "10/minute;burst=5"
    rate_limit_password_reset: str = "3/minute"  # noqa: S105 - per IP and, separately, per email
    rate_limit_password_change: str = "5/minute;burst=3"  # noqa: S105 - per user
    rate_limit_sessions_create: str = "20/hour"  # per API key
    rate_limit_messages: str = "30/minute;burst=10"  # per user
    rate_limit_voice: str = "100/hour"  # per API key
    rate_limit_journal_create: str = "20/minute;burst=5"
    rate_limit_journal_read: str = "60/minute;burst=10"
    rate_limit_export: str = "3/hour"  # per user: an export reads everything the account holds
    rate_limit_max_keys: int = Field(1_000_000, ge=100)  # in-process identities kept (memory bound)
    rate_limit_redis_timeout_seconds: float = Field(0.5, gt=0, le=10)  # per limiter call, fail fast
    # PostgreSQL: the longest a request waits for a connection or a statement before it answers 503.
    database_timeout_seconds: float = Field(5.0, gt=0, le=60)
    rate_limit_penalty_cap_seconds: int = Field(900, ge=1)  # longest escalated Retry-After
    rate_limit_strike_window_seconds: int = Field(600, ge=1)  # quiet time that forgets strikes
    rate_limit_block_violations: int = Field(100, ge=0)  # 429s per window that block (0: never)
    rate_limit_block_violations_window_seconds: int = Field(3600, ge=1)
    rate_limit_block_auth_failures: int = Field(10, ge=0)  # failed logins per window that block
    rate_limit_block_auth_failures_window_seconds: int = Field(300, ge=1)
    rate_limit_block_seconds: int = Field(3600, ge=1)  # how long an automatic block lasts
    rate_limit_voice_lease_seconds: int = Field(600, ge=1)  # a dead instance's voice slot frees after
    rate_limit_token_budget_per_day: int | None = Field(None, ge=1)  # model tokens per key per UTC day

    # -- API keys, blocklist and service identities (bastion.auth.api_keys, bastion.auth.mtls) ---
    api_key_rotation_grace_days: float = Field(7.0, ge=0, le=365)  # a rotated-out secret works this long
    api_key_cache_seconds: float = Field(30.0, ge=0, le=3600)  # verified keys kept in memory (0: never)
    # Verified access tokens and their users kept in memory (bastion.auth.cache; 0: never). Changes
    # made through Bastion reach every instance within INVALIDATION_POLL_SECONDS; this bounds the rest.
    auth_cache_seconds: float = Field(1.0, ge=0, le=60)
    api_key_last_used_seconds: int = Field(60, ge=1, le=86_400)  # last_used_at written at most this often
    api_key_max_per_user: int = Field(100, ge=1, le=100_000)
    # How often each instance checks the shared revocation and blocklist versions (Redis): a
    # revocation or a network block reaches every instance within this (and well within a second).
    invalidation_poll_seconds: float = Field(0.25, gt=0, le=1.0)
    # Client-certificate subjects allowed in as a service: "DN=>name" entries separated by ";",
    # e.g. "CN=billing,O=Example=>billing;CN=reports=>reports" (attribute order does not matter).
    mtls_service_identities: str | None = None
    # Behind a TLS-terminating proxy: the header carrying the verified client subject, believed
    # only from TRUSTED_PROXIES (e.g. nginx `proxy_set_header X-Client-Cert-Subject $ssl_client_s_dn`).
    mtls_client_header: str | None = Field(None, pattern=r"^[A-Za-z0-9-]{1,64}$")

    @field_validator("mtls_service_identities")
    @classmethod
    def _service_identities(cls, value: str | None) -> str | None:
        from bastion.auth.mtls import ServiceIdentities

        ServiceIdentities.parse(value)  # raises ValueError naming the expected form
        return value

    @field_validator(
        "rate_limit_register",
        "rate_limit_login",
        "rate_limit_refresh",
        "rate_limit_password_reset",
        "rate_limit_password_change",
        "rate_limit_sessions_create",
        "rate_limit_messages",
        "rate_limit_voice",
        "rate_limit_journal_create",
        "rate_limit_journal_read",
        "rate_limit_export",
    )
    @classmethod
    def _rates(cls, value: str) -> str:
        from bastion.ratelimit.algorithm import Rate

        Rate.parse(value)  # raises ValueError with the expected form
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, SecretFileSource(settings_cls), dotenv_settings)

    # -- field parsing -------------------------------------------------------------------------

    @field_validator("allowed_origins", "allowed_hosts", "trusted_proxies", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("allowed_origins")
    @classmethod
    def _origins_have_no_path(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            if origin != "*" and (origin.count("/") != 2 or not origin.startswith(("http://", "https://"))):
                raise ValueError("each origin is scheme://host[:port], with no path or trailing slash")
        return origins

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_are_networks(cls, proxies: list[str]) -> list[str]:
        for proxy in proxies:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError as exc:
                raise ValueError("each trusted proxy is an IP address or CIDR") from exc
        return proxies

    @property
    def license_headers(self) -> list[tuple[str, str]]:
        """``[(LICENSE_HEADER, LICENSE_URL)]`` when LICENSE_URL is set: added to every response."""
        return [(self.license_header, self.license_url)] if self.license_url else []

    @field_validator("license_header")
    @classmethod
    def _license_header_is_free(cls, value: str) -> str:
        lowered = value.lower()
        if lowered in RESPONSE_HEADERS or lowered.startswith(RESPONSE_HEADER_PREFIXES):
            raise ValueError(f"{value} is a header Bastion sets itself; choose another name (e.g. X-License)")
        return value

    @field_validator("license_url")
    @classmethod
    def _license_url_has_a_host(cls, value: str | None) -> str | None:
        if value is not None and not value.split("://", 1)[1].split("/", 1)[0].strip("@:"):
            raise ValueError("must be an absolute http(s) URL with a host")
        return value

    @field_validator("injection_action", mode="before")
    @classmethod
    def _injection_action(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() in ("log", "flag", "block"):
            return value.strip().lower()
        raise ValueError("must be one of log, flag, block")

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level(cls, value: Any) -> Any:
        if isinstance(value, str) and value.upper() in LOG_LEVELS:
            return value.upper()
        raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")

    @field_validator("audit_log_sink")
    @classmethod
    def _audit_sinks(cls, value: str) -> str:
        sinks = [s.strip() for s in value.split(",") if s.strip()]
        if not sinks:
            raise ValueError("name at least one sink: db, stdout, file:PATH or an http(s) URL")
        for sink in sinks:
            if sink in ("db", "stdout") or (sink.startswith("file:") and len(sink) > len("file:")):
                continue
            if sink.startswith(("http://", "https://")):
                # No credentials or query in it: AUDIT_LOG_SINK_TOKEN carries the token.
                if refused := url_problems("a collector URL", sink):
                    raise ValueError("; ".join(refused))
                if not urlsplit(sink).query:
                    continue
                raise ValueError("a collector URL takes no query (AUDIT_LOG_SINK_TOKEN carries the token)")
            raise ValueError("each sink is db, stdout, file:PATH or an http(s) URL")
        return ",".join(sinks)

    # -- whole-object rules --------------------------------------------------------------------

    @model_validator(mode="after")
    def _resolve(self) -> Settings:
        if self.require_api_key is None:
            self.require_api_key = self.environment == "production"
        if self.rate_limit_fail_mode is None:
            self.rate_limit_fail_mode = "closed" if self.environment == "production" else "open"
        if not self.database_url.get_secret_value():
            self.database_url = SecretStr(f"sqlite+aiosqlite:///{self.var_dir / 'bastion.db'}")
        # Auditing (`bastion check --deploy`): what production refuses becomes findings to report.
        problems = self._format_problems() if AUDITING.get() else self.problems()
        if problems:
            heading = (
                "Bastion refuses to start in production" if self.is_production else "Bastion cannot start"
            )
            raise ConfigurationError(problems, heading=heading)
        if self.environment == "development":
            self._fill_secrets(self._persisted_dev_secrets())
        elif self.environment == "test":
            self._fill_secrets(material.generate_all(self.jwt_algorithm))
        return self

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    def secret(self, name: str) -> str | None:
        value = getattr(self, name.lower())
        if value is None:
            return None
        raw = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        return raw or None

    def required_secrets(self) -> list[str]:
        names = ["DATABASE_ENCRYPTION_KEY", "SESSION_SECRET", "CSRF_SECRET", "API_KEY_SALT"]
        names.insert(0, "SECRET_KEY" if self.jwt_algorithm == "HS256" else "JWT_PRIVATE_KEYS")
        return names

    def problems(self) -> list[str]:
        """Everything wrong with these settings; in production that includes unsafe choices."""
        problems = self._format_problems()
        if not self.is_production:
            return problems
        # Each refusal is a check of the deploy check's registry (bastion.deploycheck.rules).
        return problems + [finding.message for finding in self.findings(lambda check: check.refuses)]

    def _format_problems(self) -> list[str]:
        problems: list[str] = [*self._url_problems(), *self._unavailable(), *retired_variables()]
        symmetric = ["SESSION_SECRET", "CSRF_SECRET", "API_KEY_SALT"]
        if self.jwt_algorithm == "HS256":
            symmetric.append("SECRET_KEY")
        for name in symmetric:
            value = self.secret(name)
            # Production judges every secret's strength (below); elsewhere refuse what cannot work.
            if not self.is_production and value is not None and len(value) < MIN_SECRET_CHARS:
                problems.append(f"{name} is too short: at least {MIN_SECRET_CHARS} characters")
        problems += terms_problems(self.terms_file)
        if self.smtp_host is not None:
            problems += host_problems("SMTP_HOST", self.smtp_host)
        if self.llm_provider == "openai":
            if not self.llm_base_url or not self.llm_base_url.startswith(("http://", "https://")):
                problems.append("LLM_BASE_URL must be an http(s) URL when LLM_PROVIDER=openai")
            else:  # OPENAI_API_KEY carries the credential; the model server is never a metadata service
                problems += url_problems("LLM_BASE_URL", self.llm_base_url)
                if "?" in self.llm_base_url or "#" in self.llm_base_url:
                    # The endpoint's paths (/chat/completions) are appended to it.
                    problems.append("LLM_BASE_URL must not carry a query or a fragment")
            if not self.llm_model:
                problems.append("LLM_MODEL is required when LLM_PROVIDER=openai")
        if (raw := self.secret("DATABASE_ENCRYPTION_KEY")) is not None:
            try:
                keys = material.parse_encryption_keys(raw)
            except ValueError as exc:
                problems.append(f"DATABASE_ENCRYPTION_KEY is malformed: {exc}")
            else:
                for kid, key in keys.items():
                    if len(set(key)) < 16:
                        problems.append(f"DATABASE_ENCRYPTION_KEY key {kid!r} is too weak: not random bytes")
        problems += self._webhook_problems()
        if self.login_lock_clients > self.login_lock_failures:
            problems.append("LOGIN_LOCK_CLIENTS cannot exceed LOGIN_LOCK_FAILURES (no lock could happen)")
        if self.login_delay_max_seconds < self.login_delay_seconds:
            problems.append("LOGIN_DELAY_MAX_SECONDS must be at least LOGIN_DELAY_SECONDS")
        if (raw := self.secret("JWT_PRIVATE_KEYS")) is not None and self.jwt_algorithm != "HS256":
            try:
                material.parse_signing_keyset(raw, self.jwt_algorithm)
            except ValueError as exc:
                problems.append(f"JWT_PRIVATE_KEYS is malformed: {exc}")
        return problems

    def _url_problems(self) -> list[str]:
        """DATABASE_URL and REDIS_URL that no driver would open: named, never echoed."""
        problems: list[str] = []
        try:
            database = make_url(self.database_url.get_secret_value())
        except ArgumentError:
            problems.append(
                "DATABASE_URL is not a database URL (postgresql+asyncpg://... or sqlite+aiosqlite:///...)"
            )
        else:
            driver = database.drivername
            if driver in SYNC_DRIVERS:
                problems.append(
                    f"DATABASE_URL needs an async driver: use {SYNC_DRIVERS[driver]}:// instead of {driver}://"
                )
            elif driver not in ASYNC_DRIVERS:
                problems.append(
                    f"DATABASE_URL scheme {driver!r} is not supported: use postgresql+asyncpg:// or sqlite+aiosqlite://"
                )
        if self.redis_url is not None:
            try:
                check_redis_url(self.redis_url.get_secret_value())
            except ValueError:
                problems.append(f"REDIS_URL is malformed: use {REDIS_URL_FORMS}")
        if (dsn := self.secret("SENTRY_DSN")) is not None:
            problems += self._sentry_dsn_problems(dsn)
        return problems

    def _webhook_problems(self) -> list[str]:
        """ALERT_WEBHOOK_URL: an absolute http(s) URL, https in production unless explicitly allowed."""
        secret = self.secret("ALERT_WEBHOOK_SECRET")
        if secret is not None and len(secret) < MIN_SECRET_CHARS:
            return [f"ALERT_WEBHOOK_SECRET is too short: at least {MIN_SECRET_CHARS} characters"]
        url = self.secret("ALERT_WEBHOOK_URL")
        if url is None:
            return []
        try:
            parsed = urlsplit(url)
            valid = parsed.scheme in ("http", "https") and bool(parsed.hostname)
        except ValueError:
            valid = False
        if not valid:
            return ["ALERT_WEBHOOK_URL must be an absolute http(s) URL"]
        if refused := url_problems("ALERT_WEBHOOK_URL", url):  # ALERT_WEBHOOK_SECRET signs instead
            return refused
        if parsed.scheme == "http" and self.is_production and not self.alert_webhook_allow_http:
            return [
                "ALERT_WEBHOOK_URL is plain http: alerts would cross the network unencrypted "
                "(use https, or set ALERT_WEBHOOK_ALLOW_HTTP=true for a receiver on a private network)"
            ]
        return []

    def _sentry_dsn_problems(self, dsn: str) -> list[str]:
        # sentry-sdk's own parser, so what passes here is what the SDK will open; imported only
        # when a DSN is set.
        from sentry_sdk.utils import BadDsn, Dsn

        try:
            parsed = Dsn(dsn)
        except (BadDsn, ValueError):
            return ["SENTRY_DSN is not a Sentry DSN: use https://PUBLIC_KEY@HOST/PROJECT_ID"]
        if is_metadata_host(parsed.host or ""):
            return ["SENTRY_DSN points at a link-local or cloud metadata address; refused"]
        if parsed.scheme == "http" and self.is_production and not self.sentry_allow_http:
            return [
                "SENTRY_DSN must be https in production (error reports would cross the network in "
                "clear text); set SENTRY_ALLOW_HTTP=true for a relay on this host or a private network"
            ]
        return []

    def _unavailable(self) -> list[str]:
        """Settings whose feature is not in this version: refused rather than silently ignored."""
        problems = []
        for name, (feature, is_set) in NOT_IN_THIS_VERSION.items():
            if name in self.model_fields_set and is_set(getattr(self, name)):
                problems.append(f"{name.upper()} is not available in this version ({feature}); unset it")
        return problems

    # -- development secrets -------------------------------------------------------------------

    def _fill_secrets(self, generated: dict[str, str]) -> None:
        for name, value in generated.items():
            if self.secret(name) is None:
                setattr(self, name.lower(), SecretStr(value))
                self._generated.add(name)

    def _persisted_dev_secrets(self) -> dict[str, str]:
        """Secrets generated once into VAR_DIR (mode 0600) and reused on every restart."""
        path = self.var_dir / DEV_SECRETS_FILE
        self.var_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        stored: dict[str, str] = {}
        if path.exists():
            if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                path.chmod(0o600)
            try:
                loaded = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ConfigurationError([f"{path} is unreadable; delete it to regenerate ({exc})"]) from exc
            stored = {k: v for k, v in loaded.items() if isinstance(k, str) and isinstance(v, str)}
        missing = {
            name: value
            for name, value in material.generate_all(self.jwt_algorithm).items()
            if name not in stored
        }
        if self.jwt_algorithm != "HS256" and "JWT_PRIVATE_KEYS" in stored:
            try:
                material.parse_signing_keyset(stored["JWT_PRIVATE_KEYS"], self.jwt_algorithm)
            except ValueError:
                # The algorithm changed since the keys were made: make keys for the new one.
                missing["JWT_PRIVATE_KEYS"] = material.signing_keyset(self.jwt_algorithm)
        if missing:
            stored.update(missing)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(stored, handle, indent=2)
        return stored

    # -- derived values ------------------------------------------------------------------------

    def secret_values(self) -> list[str]:
        """Every configured secret value, for scrubbing logs and error reports.

        The passwords inside DATABASE_URL and REDIS_URL count on their own too: a driver's error
        message may quote one without the rest of the URL.
        """
        values: list[str] = []
        for name in SECRET_FIELDS:
            raw = self.secret(name)
            if raw is None:
                continue
            if name in ("API_KEYS", "ML_API_KEYS"):
                values.extend(part.strip() for part in raw.split(",") if part.strip())
            else:
                values.append(raw)
            if name in ("DATABASE_URL", "REDIS_URL") and (password := _url_password(raw)):
                values += {password, unquote(password)}  # as written, and as a driver shows it
        return [value for value in values if len(value) >= 8]

    def findings(self, select: Callable[[Check], bool], **context: Any) -> list[Finding]:
        """What the checks chosen by ``select`` find in these settings (bastion.deploycheck)."""
        from bastion.deploycheck.registry import Context
        from bastion.deploycheck.rules import CHECKS

        return CHECKS.run(Context(self, **context), select=select)

    def warnings(self) -> list[str]:
        """Choices that are allowed but deserve an operator's attention, said at every start.

        These are the deploy check's findings that apply to this environment; `bastion check`
        shows every check's findings whatever the environment.
        """
        from bastion.deploycheck.registry import Scope

        def applies(check: Check) -> bool:
            if check.refuses or check.scope is Scope.AUDIT:
                return False
            return check.scope is Scope.ALWAYS or self.is_production

        return [finding.message for finding in self.findings(applies)]

    @property
    def generated_secrets(self) -> frozenset[str]:
        """Secrets Bastion generated itself (development and test), not supplied by the deployment."""
        return frozenset(self._generated)


def _url_password(url: str) -> str | None:
    """The password part of ``scheme://user:password@host/...`` as written (percent-encoded), if any."""
    try:
        return urlsplit(url).password or None
    except ValueError:
        return None


# prometheus_client's own variable: the library reads it when it is first imported, to decide
# whether metric values live in memory or in per-process files (multiprocess mode). So it comes
# from the process environment only (a .env file is read too late for the library), and it is not
# a setting: `bastion serve --workers N` sets it for its workers (docs/metrics.md).
PROMETHEUS_MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"


def prometheus_multiproc_dir(environ: Mapping[str, str] | None = None) -> Path | None:
    """The directory of prometheus_client's multiprocess mode for this process, when it has one."""
    present = environ if environ is not None else os.environ
    # The library still honours the deprecated lower-case spelling.
    value = present.get(PROMETHEUS_MULTIPROC_DIR) or present.get(PROMETHEUS_MULTIPROC_DIR.lower())
    return Path(value) if value else None


# Set while `bastion check --deploy` loads the settings: production refusals are reported as the
# deploy check's findings (with their ids) instead of stopping the command. Never set by serve.
AUDITING: ContextVar[bool] = ContextVar("bastion_settings_auditing", default=False)


def load_settings(**overrides: Any) -> Settings:
    """Build settings, turning type errors into a ConfigurationError that never echoes a value."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_input=False, include_url=False):
            field = ".".join(str(part) for part in error["loc"]).upper() or "settings"
            problems.append(f"{field}: {error['msg']}")
        raise ConfigurationError(problems) from None
