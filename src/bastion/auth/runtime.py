# SPDX-License-Identifier: Apache-2.0
"""What identity shares between requests, built in the lifespan and kept on ``app.state.identity``.

Owns the hashing thread pool, the keyring and the versioned secrets (SESSION_SECRET, CSRF_SECRET,
API_KEY_SALT; both reloaded periodically so a rotation on any instance reaches all), the denylist
and login counters (Redis when configured, memory otherwise), the
mailer, background mail tasks and the maintenance loop that purges expired sessions and tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bastion.audit.service import AuditService
from bastion.auth.cache import AuthCache
from bastion.auth.csrf import CsrfTokens
from bastion.auth.keyring import Keyring, load_keyring, settings_only_keyring
from bastion.auth.mailer import Mailer, mailer_for
from bastion.auth.passwords import HashingPool, HashParameters, PasswordHasher
from bastion.auth.policy import PasswordPolicy
from bastion.auth.revocation import Denylist, MemoryDenylist, RedisDenylist, Revocations
from bastion.auth.service import IdentityService
from bastion.auth.throttle import PasswordThrottle, ThrottleRules, attempt_store_for
from bastion.auth.tokens import AccessTokens, SecretTokens
from bastion.crypto.fields import FieldCipher
from bastion.db.types import utcnow
from bastion.failover import Failover, fail_mode_of
from bastion.invalidation import Watched, version_counter
from bastion.observability.logging import get_logger
from bastion.ratelimit.service import RateLimiter
from bastion.ratelimit.storage.redis import fail_fast_client
from bastion.redis_client import RedisClient
from bastion.rotation.store import load_versions
from bastion.rotation.verifiers import SecretSet
from bastion.settings import Settings

KEYRING_RELOAD_SECONDS = 60.0


def throttle_rules(settings: Settings) -> ThrottleRules:
    return ThrottleRules(
        window_seconds=settings.login_failure_window_minutes * 60.0,
        delay_after=settings.login_delay_after_failures,
        delay_seconds=float(settings.login_delay_seconds),
        delay_max_seconds=float(settings.login_delay_max_seconds),
        client_max_failures=settings.login_ip_max_failures,
        account_window_seconds=settings.login_lock_window_hours * 3600.0,
        lock_failures=settings.login_lock_failures,
        lock_clients=settings.login_lock_clients,
        lock_seconds=settings.login_lockout_minutes * 60.0,
    )


def revocations_for(
    settings: Settings, redis: RedisClient | None, clock: Callable[[], datetime]
) -> Revocations:
    """The denylist: Redis (through a fail-fast client) when configured, this process otherwise.

    Checked on every authenticated request, so a Redis call gives up after
    RATE_LIMIT_REDIS_TIMEOUT_SECONDS and the fail mode (RATE_LIMIT_FAIL_MODE) answers instead.
    """
    memory = MemoryDenylist(max_entries=settings.revocation_max_entries, clock=lambda: clock().timestamp())
    primary: Denylist = memory
    if redis is not None:
        primary = RedisDenylist(
            fail_fast_client(redis, settings.rate_limit_redis_timeout_seconds), owns_client=True
        )
    failover: Failover[Denylist] = Failover(
        primary,
        memory,
        mode=fail_mode_of(settings),
        component="auth_denylist",
        message="Authentication is temporarily unavailable",
        # Accepting a token whose revocation could not be checked is worth an error in the log.
        level="error",
    )
    return Revocations(failover, token_lifetime=timedelta(minutes=settings.access_token_minutes), clock=clock)


class IdentityRuntime:
    def __init__(
        self,
        *,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        redis: RedisClient | None,
        keyring: Keyring,
        secrets: SecretSet | None = None,
        mailer: Mailer | None = None,
        limiter: RateLimiter | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.limiter = limiter
        self.sessionmaker = sessionmaker
        self.clock = clock
        self.keyring = keyring
        # Refresh/reset tokens and invitations are hashed under SESSION_SECRET, CSRF tokens signed
        # with CSRF_SECRET, managed API keys hashed under API_KEY_SALT: current values, plus the
        # previous ones during a rotation's grace period.
        self.secrets = secrets if secrets is not None else SecretSet.from_settings(settings, clock)
        self.hashing = HashingPool(
            PasswordHasher(
                HashParameters(
                    algorithm=settings.password_hasher,
                    argon2_memory_kib=settings.argon2_memory_kib,
                    argon2_time_cost=settings.argon2_time_cost,
                    argon2_parallelism=settings.argon2_parallelism,
                    bcrypt_rounds=settings.bcrypt_rounds,
                )
            ),
            workers=settings.password_hash_workers,
        )
        self.policy = PasswordPolicy(settings.password_policy)
        self.access_tokens = AccessTokens(
            keyring=lambda: self.keyring,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            lifetime=timedelta(minutes=settings.access_token_minutes),
            clock=clock,
        )
        self.revocations = revocations_for(settings, redis, clock)
        self.cache = AuthCache(
            Watched(
                version_counter(redis, "identity", fail_mode=fail_mode_of(settings)),
                interval=settings.invalidation_poll_seconds,
            ),
            ttl_seconds=settings.auth_cache_seconds,
        )
        # Wall-clock seconds from the runtime's clock: instances sharing Redis agree on "now".
        self.throttle = PasswordThrottle(
            store=attempt_store_for(
                redis, max_keys=settings.login_throttle_max_keys, fail_mode=fail_mode_of(settings)
            ),
            rules=throttle_rules(settings),
            clock=lambda: self.clock().timestamp(),
            ipv6_prefix=settings.rate_limit_ipv6_prefix,
        )
        self.mailer = mailer or mailer_for(settings)
        self.audit = AuditService(sessionmaker=sessionmaker, clock=clock)
        self.cipher = FieldCipher.for_settings(settings)
        self.background: set[asyncio.Task[None]] = set()
        self._maintenance: asyncio.Task[None] | None = None
        self._service: IdentityService | None = None
        self._keyring_loaded = time.monotonic()

    def __setattr__(self, name: str, value: object) -> None:
        # The service is built from these collaborators: replacing one (reloaded secrets, an
        # embedding app's own mailer) rebuilds it on next use.
        object.__setattr__(self, name, value)
        if not name.startswith("_"):
            object.__setattr__(self, "_service", None)

    @classmethod
    async def start(
        cls,
        *,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        redis: RedisClient | None,
        limiter: RateLimiter | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> IdentityRuntime:
        try:
            keyring = await load_keyring(sessionmaker, settings, clock=clock)
        except DBAPIError:
            # Not migrated yet: sign with the settings keys; identity routes need `bastion db upgrade`.
            get_logger("bastion.auth").warning("signing_keys_unavailable", hint="run `bastion db upgrade`")
            keyring = settings_only_keyring(settings, clock())
        secrets = await load_secrets(sessionmaker, settings, clock=clock, fallback=True)
        runtime = cls(
            settings=settings,
            sessionmaker=sessionmaker,
            redis=redis,
            keyring=keyring,
            secrets=secrets,
            limiter=limiter,
            clock=clock,
        )
        runtime._maintenance = asyncio.create_task(runtime._maintain(), name="bastion-identity-maintenance")
        return runtime

    @property
    def secret_tokens(self) -> SecretTokens:
        return self.secrets.session_tokens

    @property
    def csrf(self) -> CsrfTokens:
        return self.secrets.csrf

    def service(self) -> IdentityService:
        """The identity service, built once (and again after a reload changed the secrets)."""
        if self._service is None:
            self._service = self._build_service()
        return self._service

    def _build_service(self) -> IdentityService:
        return IdentityService(
            sessionmaker=self.sessionmaker,
            hashing=self.hashing,
            policy=self.policy,
            access_tokens=self.access_tokens,
            secret_tokens=self.secret_tokens,
            revocations=self.revocations,
            throttle=self.throttle,
            limiter=self.limiter,
            audit=self.audit,
            mailer=self.mailer,
            refresh_lifetime=timedelta(days=self.settings.refresh_token_days),
            session_lifetime=timedelta(days=self.settings.session_max_days),
            reset_lifetime=timedelta(minutes=self.settings.password_reset_minutes),
            registration=self.settings.registration,
            background=self.background,
            cipher=self.cipher,
            cache=self.cache,
            clock=self.clock,
        )

    async def reload_keyring(self) -> None:
        """Reload the signing keys and the versioned secrets: rotations made anywhere apply here."""
        self.keyring = await load_keyring(self.sessionmaker, self.settings, clock=self.clock)
        self.secrets = await load_secrets(self.sessionmaker, self.settings, clock=self.clock)
        self._keyring_loaded = time.monotonic()

    async def _maintain(self) -> None:
        """Purge expired sessions/tokens every AUTH_PURGE_INTERVAL_SECONDS; reload keys each minute."""
        log = get_logger("bastion.auth.maintenance")
        interval = float(self.settings.auth_purge_interval_seconds)
        tick = min(interval, KEYRING_RELOAD_SECONDS)
        next_purge = time.monotonic() + interval
        while True:
            await asyncio.sleep(tick)
            try:
                if time.monotonic() - self._keyring_loaded >= KEYRING_RELOAD_SECONDS:
                    await self.reload_keyring()
                if time.monotonic() >= next_purge:
                    next_purge = time.monotonic() + interval
                    counts = await self.service().purge()
                    log.info("auth_purge", **counts)
            except Exception as exc:  # keep the loop alive; the next tick retries
                log.warning("auth_maintenance_failed", error=type(exc).__name__)

    async def close(self) -> None:
        if self._maintenance is not None:
            self._maintenance.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintenance
        if self.background:
            await asyncio.wait(set(self.background), timeout=5)
        self.hashing.close()
        await self.revocations.aclose()


async def load_secrets(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    *,
    clock: Callable[[], datetime] = utcnow,
    fallback: bool = False,
) -> SecretSet:
    """The versioned secrets from the ``secret_versions`` table (first sight of settings values recorded).

    With ``fallback`` (startup, commands) a database without the table yet, or unreachable, gives
    the settings values alone, logged; the periodic reload keeps the last set it had instead.
    """
    try:
        return SecretSet.of(await load_versions(sessionmaker, settings, clock=clock), clock)
    except DBAPIError:
        if not fallback:
            raise
        get_logger("bastion.auth").warning("secret_versions_unavailable", hint="run `bastion db upgrade`")
        return SecretSet.from_settings(settings, clock)
