# SPDX-License-Identifier: Apache-2.0
"""Every configuration check, once: what production refuses, what it warns about, what a review flags.

Each rule yields one message per thing it found (a message names settings, never a value). The ids
are stable: operators ignore them by id, CI matches them, docs/deploy.md lists them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from bastion.crypto import material
from bastion.deploycheck.registry import Context, Registry, Scope, Severity
from bastion.redis_client import RedisTarget
from bastion.redis_client import describe as describe_redis_url
from bastion.settings import GENERATED_SECRETS, misspelled_variables

CHECKS = Registry()
add = CHECKS.add
CRITICAL, HIGH, MEDIUM, LOW = Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM, Severity.LOW

# Database connection settings that make the driver refuse a connection without TLS.
TLS_REQUIRED = frozenset({"require", "verify-ca", "verify-full"})
# Beyond these, records are kept long enough that retention is off in all but name.
RETENTION_CEILINGS = {
    "RETENTION_DAYS_APP": 365,
    "RETENTION_DAYS_ACCESS": 365,
    "RETENTION_DAYS_SECURITY": 7 * 365,
}


def _is_local(host: str | None) -> bool:
    """Loopback, or no host at all (a unix socket): traffic that never crosses a network."""
    if not host or host == "localhost" or host.startswith("/"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# -- refused in production ------------------------------------------------------------------------


@add("debug-on", CRITICAL, "set DEBUG=false", scope=Scope.AUDIT, refuses=True)
def _debug(context: Context) -> Iterator[str]:
    if context.settings.debug:
        yield "DEBUG must be false in production"


@add(
    "cors-wildcard",
    CRITICAL,
    "list each browser origin: ALLOWED_ORIGINS=https://app.example.org",
    scope=Scope.AUDIT,
    refuses=True,
)
def _cors_wildcard(context: Context) -> Iterator[str]:
    if "*" in context.settings.allowed_origins:
        yield "ALLOWED_ORIGINS must list explicit origins in production, not '*'"


@add(
    "require-api-key-off",
    HIGH,
    "set REQUIRE_API_KEY=true (the production default)",
    scope=Scope.AUDIT,
    refuses=True,
)
def _require_api_key(context: Context) -> Iterator[str]:
    if not context.settings.require_api_key:
        yield "REQUIRE_API_KEY must be true in production"


@add(
    "hosts-wildcard",
    HIGH,
    "list the public names: ALLOWED_HOSTS=api.example.org",
    scope=Scope.AUDIT,
    refuses=True,
)
def _hosts_wildcard(context: Context) -> Iterator[str]:
    if "*" in context.settings.allowed_hosts:
        yield "ALLOWED_HOSTS must list explicit host names in production, not '*'"


@add(
    "secret-missing",
    CRITICAL,
    "bastion secrets generate --output-dir secrets, then NAME_FILE=secrets/NAME",
    scope=Scope.AUDIT,
    refuses=True,
)
def _secret_missing(context: Context) -> Iterator[str]:
    for name in context.settings.required_secrets():
        if context.settings.secret(name) is None:
            yield f"{name} is missing (generate one with `bastion secrets generate --single {name}`)"


@add(
    "hash-cost-low",
    HIGH,
    "unset ARGON2_MEMORY_KIB, ARGON2_TIME_COST and BCRYPT_ROUNDS (the defaults are the minimum)",
    scope=Scope.AUDIT,
    refuses=True,
)
def _hash_cost(context: Context) -> Iterator[str]:
    settings = context.settings
    if (settings.argon2_memory_kib, settings.argon2_time_cost) < (19_456, 2) or settings.bcrypt_rounds < 12:
        yield "ARGON2_MEMORY_KIB/ARGON2_TIME_COST/BCRYPT_ROUNDS are below the safe minimum"


@add("smtp-plaintext", HIGH, "set SMTP_SECURITY=starttls or tls", scope=Scope.AUDIT, refuses=True)
def _smtp(context: Context) -> Iterator[str]:
    if context.settings.smtp_host and context.settings.smtp_security == "none":
        yield "SMTP_SECURITY=none sends password-reset mail in clear text"


@add(
    "secret-weak",
    CRITICAL,
    "replace it: bastion secrets generate --single NAME",
    scope=Scope.AUDIT,
    refuses=True,
)
def _secret_weak(context: Context) -> Iterator[str]:
    for name in ("SECRET_KEY", "SESSION_SECRET", "CSRF_SECRET", "API_KEY_SALT"):
        value = context.settings.secret(name)
        if value is not None and (why := material.weakness(value)):
            yield f"{name} is too weak: it {why}"


@add(
    "static-key-weak",
    HIGH,
    "issue managed keys (`bastion keys create`) or 32+ random bytes per static key",
    scope=Scope.AUDIT,
    refuses=True,
)
def _static_keys(context: Context) -> Iterator[str]:
    # Static API keys are bearer secrets too: each one as strong as a generated secret.
    for name in ("API_KEYS", "ML_API_KEYS"):
        keys = [part.strip() for part in (context.settings.secret(name) or "").split(",") if part.strip()]
        for position, key in enumerate(keys, start=1):
            if why := material.weakness(key):
                yield f"{name} key #{position} is too weak: it {why}"


# -- the deployment as a whole ---------------------------------------------------------------------


@add(
    "environment-not-production",
    HIGH,
    "set ENVIRONMENT=production (it turns every production refusal on)",
    scope=Scope.AUDIT,
)
def _environment(context: Context) -> Iterator[str]:
    if not context.settings.is_production:
        yield (
            f"ENVIRONMENT={context.settings.environment}: weak secrets, wildcard CORS and DEBUG are "
            "not refused, and secrets are generated"
        )


@add(
    "secret-generated",
    HIGH,
    "supply your own: bastion secrets generate --output-dir secrets, then NAME_FILE=secrets/NAME",
    scope=Scope.AUDIT,
)
def _secret_generated(context: Context) -> Iterator[str]:
    names = sorted(context.settings.generated_secrets)
    if names:
        yield (
            f"{', '.join(names)} were generated by Bastion ({context.settings.environment} defaults), "
            "not supplied by the deployment"
        )


@add("secret-reused", HIGH, "give each secret its own value: bastion secrets generate --single NAME")
def _secret_reused(context: Context) -> Iterator[str]:
    seen: dict[str, str] = {}
    names = [*GENERATED_SECRETS, "ALERT_WEBHOOK_SECRET", "AUDIT_LOG_SINK_TOKEN", "OPENAI_API_KEY"]
    for name in names:
        value = context.settings.secret(name)
        if value is None:
            continue
        if value in seen:
            yield f"{name} has the same value as {seen[value]}: one leak exposes both"
        else:
            seen[value] = name


@add(
    "secret-stale",
    MEDIUM,
    "rotate it with the command named (docs/secrets.md); the previous value verifies during the grace",
    source="database",
)
def _secret_stale(context: Context) -> Iterator[str]:
    if context.secret_statuses is None:
        return
    from bastion.db.types import utcnow
    from bastion.rotation.service import rotation_warnings

    statuses = list(context.secret_statuses)
    yield from rotation_warnings(statuses, utcnow(), context.settings.secret_rotation_days)


@add("setting-misspelled", MEDIUM, "rename the variable to the setting it means", scope=Scope.ALWAYS)
def _misspelled(context: Context) -> Iterator[str]:
    yield from misspelled_variables()


# -- access ------------------------------------------------------------------------------------------


@add(
    "open-registration-self-service-keys",
    MEDIUM,
    "set REGISTRATION=invite or closed, or API_KEY_SELF_SERVICE=false",
    scope=Scope.ALWAYS,
)
def _open_registration(context: Context) -> Iterator[str]:
    settings = context.settings
    if settings.require_api_key and settings.registration == "open" and settings.api_key_self_service:
        yield (
            "REQUIRE_API_KEY=true with REGISTRATION=open and API_KEY_SELF_SERVICE=true: anyone can "
            "register and mint a key; set REGISTRATION=invite or closed, or API_KEY_SELF_SERVICE=false"
        )


@add("cors-http-origin", MEDIUM, "list https:// origins only")
def _cors_http(context: Context) -> Iterator[str]:
    if any(origin.startswith("http://") for origin in context.settings.allowed_origins):
        yield "ALLOWED_ORIGINS includes a plain-http origin"


@add(
    "https-not-enforced",
    HIGH,
    "set FORCE_HTTPS=true, and TRUSTED_PROXIES to the TLS proxy's address (bastion nginx-config)",
)
def _https(context: Context) -> Iterator[str]:
    settings = context.settings
    if not settings.force_https and not settings.trusted_proxies:
        yield (
            "FORCE_HTTPS is false and TRUSTED_PROXIES is empty: nothing redirects plain http or "
            "sends HSTS, and no TLS-terminating proxy is declared"
        )


@add("docs-exposed", MEDIUM, "unset ENABLE_DOCS (off in production)")
def _docs(context: Context) -> Iterator[str]:
    if context.settings.docs_enabled:
        yield "ENABLE_DOCS=true: /docs, /redoc and /openapi.json describe every route publicly"


@add(
    "metrics-open",
    MEDIUM,
    "keep PROMETHEUS_HOST=127.0.0.1 (or a private address only the scraper reaches), or unset "
    "PROMETHEUS_PORT so /metrics needs admin or service credentials",
)
def _metrics(context: Context) -> Iterator[str]:
    settings = context.settings
    if settings.prometheus_port is not None and not _is_local(settings.prometheus_host):
        yield (
            f"PROMETHEUS_PORT serves /metrics without authentication on {settings.prometheus_host}, "
            "beyond this machine"
        )


# -- shared state ----------------------------------------------------------------------------------


@add(
    "database-sqlite",
    HIGH,
    "DATABASE_URL=postgresql+asyncpg://USER@HOST/DB?ssl=verify-full (docs/database.md)",
)
def _sqlite(context: Context) -> Iterator[str]:
    if context.settings.database_url.get_secret_value().startswith("sqlite"):
        yield "DATABASE_URL is SQLite: a single file on one node; use PostgreSQL in production"


@add("database-no-tls", MEDIUM, "add ?ssl=verify-full (or ssl=require) to DATABASE_URL")
def _database_tls(context: Context) -> Iterator[str]:
    raw = context.settings.database_url.get_secret_value()
    try:
        url = make_url(raw)
    except ArgumentError:
        return
    if url.get_backend_name() != "postgresql" or _is_local(url.host) or "host" in url.query:
        return
    mode = str(url.query.get("ssl") or url.query.get("sslmode") or "")
    if not mode:
        yield "DATABASE_URL has no ssl= parameter: the database connection is not encrypted"
    elif mode not in TLS_REQUIRED:
        yield f"DATABASE_URL has ssl={mode}: the connection may fall back to clear text"


@add(
    "redis-missing",
    MEDIUM,
    "set REDIS_URL (rediss://:PASSWORD@HOST:6380/0) so every instance shares limits and revocations",
)
def _redis_missing(context: Context) -> Iterator[str]:
    if context.settings.redis_url is None:
        yield "REDIS_URL is unset: limits and revocations are per process, not shared"


@add(
    "auth-cache-long",
    MEDIUM,
    "set AUTH_CACHE_SECONDS to 1 (the default) or less",
)
def _auth_cache_long(context: Context) -> Iterator[str]:
    seconds = context.settings.auth_cache_seconds
    if seconds > 1:
        yield (
            f"AUTH_CACHE_SECONDS={seconds:g}: a disabled account or an ended session made by a command "
            f"without Redis, or on another worker, stays accepted up to {seconds:g} s"
        )


@add(
    "workers-without-redis",
    HIGH,
    "set REDIS_URL, or run one worker",
    scope=Scope.AUDIT,
)
def _workers(context: Context) -> Iterator[str]:
    if context.workers > 1 and context.settings.redis_url is None:
        yield (
            f"{context.workers} workers without REDIS_URL: each worker keeps its own limits "
            f"(a limit of N allows up to {context.workers}xN)"
        )


def _redis_target(context: Context) -> RedisTarget | None:
    """Where REDIS_URL points when any of it (any Cluster node) is beyond this machine."""
    if context.settings.redis_url is None:
        return None
    target = describe_redis_url(context.settings.redis_url.get_secret_value())
    if all(_is_local(host) for host in target.hosts):
        return None
    return target


def _remote_hosts(target: RedisTarget) -> str:
    return ", ".join(host for host in target.hosts if not _is_local(host))


@add("redis-no-auth", HIGH, "run Redis with requirepass (or an ACL user) and put it in REDIS_URL")
def _redis_auth(context: Context) -> Iterator[str]:
    target = _redis_target(context)
    if target is not None and not target.has_password:
        yield (
            f"REDIS_URL names {_remote_hosts(target)} without a password: "
            "anyone on that network can change limits"
        )


@add(
    "redis-no-tls",
    MEDIUM,
    "use rediss:// (Redis with tls-port) in REDIS_URL, rediss+cluster:// for a Cluster (TLS to every node)",
)
def _redis_tls(context: Context) -> Iterator[str]:
    target = _redis_target(context)
    if target is not None and not target.tls:
        yield (
            f"REDIS_URL reaches {_remote_hosts(target)} without TLS: "
            "the password and every key cross the network"
        )


@add(
    "rate-limit-fail-open",
    HIGH,
    "unset RATE_LIMIT_FAIL_MODE (closed in production)",
)
def _fail_open(context: Context) -> Iterator[str]:
    if context.settings.rate_limit_fail_mode == "open":
        yield "RATE_LIMIT_FAIL_MODE=open: limits are not enforced while Redis is unreachable"


@add(
    "token-budget-below-cap",
    MEDIUM,
    "raise RATE_LIMIT_TOKEN_BUDGET_PER_DAY or lower LLM_MAX_COMPLETION_TOKENS",
    scope=Scope.ALWAYS,
)
def _token_budget(context: Context) -> Iterator[str]:
    budget = context.settings.rate_limit_token_budget_per_day
    if budget is not None and budget < context.settings.llm_max_completion_tokens:
        yield (
            "RATE_LIMIT_TOKEN_BUDGET_PER_DAY is below LLM_MAX_COMPLETION_TOKENS: each call reserves "
            "its prompt plus that cap, so only callers asking for fewer tokens are ever served"
        )


# -- accountability ----------------------------------------------------------------------------------


@add("audit-db-missing", MEDIUM, "keep db in AUDIT_LOG_SINK (AUDIT_LOG_SINK=db,https://collector...)")
def _audit_db(context: Context) -> Iterator[str]:
    if "db" not in context.settings.audit_log_sink.split(","):
        yield (
            "AUDIT_LOG_SINK has no db: audit records are not chained, GET /api/admin/audit and "
            "`bastion audit verify` see nothing"
        )


@add("audit-http-sink", HIGH, "use an https:// collector in AUDIT_LOG_SINK")
def _audit_http(context: Context) -> Iterator[str]:
    for sink in context.settings.audit_log_sink.split(","):
        if sink.startswith("http://") and not _is_local(urlsplit(sink).hostname):
            yield "AUDIT_LOG_SINK sends audit records over plain http: use an https:// collector"


@add(
    "audit-single-copy",
    LOW,
    "add a copy off this database: AUDIT_LOG_SINK=db,stdout (shipped by the log collector) or db,https://...",
)
def _audit_copy(context: Context) -> Iterator[str]:
    if context.settings.audit_log_sink.split(",") == ["db"]:
        yield "AUDIT_LOG_SINK=db only: whoever can write the database can also remove the trail of it"


@add("retention-long", LOW, "keep the defaults (30 / 90 / 365 days) unless a law asks for longer")
def _retention(context: Context) -> Iterator[str]:
    for name, ceiling in RETENTION_CEILINGS.items():
        days = getattr(context.settings, name.lower())
        if days > ceiling:
            yield f"{name}={days}: records are kept so long that retention is effectively off"


@add("sentry-plain-http", MEDIUM, "use an https:// SENTRY_DSN")
def _sentry(context: Context) -> Iterator[str]:
    if (context.settings.secret("SENTRY_DSN") or "").startswith("http://"):
        yield "SENTRY_DSN is plain http (SENTRY_ALLOW_HTTP): error reports are not encrypted"


# -- the model -----------------------------------------------------------------------------------------


@add(
    "injection-action-log",
    MEDIUM,
    "set INJECTION_ACTION=flag (audited) or block (refused with 422)",
)
def _injection(context: Context) -> Iterator[str]:
    if context.settings.injection_action == "log":
        yield "INJECTION_ACTION=log: suspected prompt injections reach the model and leave no audit record"


@add(
    "llm-offline",
    HIGH,
    "LLM_PROVIDER=openai with LLM_BASE_URL, LLM_MODEL and OPENAI_API_KEY_FILE",
)
def _offline(context: Context) -> Iterator[str]:
    if context.settings.llm_provider == "offline":
        yield "LLM_PROVIDER=offline: replies come from the development model"


@add("llm-plain-http", HIGH, "use an https:// LLM_BASE_URL")
def _llm_http(context: Context) -> Iterator[str]:
    settings = context.settings
    url = settings.llm_base_url or ""
    if (
        settings.llm_provider != "offline"
        and url.startswith("http://")
        and not _is_local(urlsplit(url).hostname)
    ):
        yield "LLM_BASE_URL is plain http: prompts and the API key cross the network unencrypted"


@add("openai-key-unused", LOW, "unset OPENAI_API_KEY, or set LLM_PROVIDER=openai", scope=Scope.ALWAYS)
def _unused_key(context: Context) -> Iterator[str]:
    if context.settings.llm_provider == "offline" and context.settings.secret("OPENAI_API_KEY") is not None:
        yield "OPENAI_API_KEY is set but LLM_PROVIDER=offline: the key is unused"
