# SPDX-License-Identifier: Apache-2.0
"""Managed API keys: create, list, revoke, rotate, and verify presented keys.

Verification is one indexed read by public id plus an HMAC, and a verified key is then cached in
memory under a MAC of the WHOLE presented key (never a prefix: a cache keyed on the first
characters would let ``bst_<id>_<anything>`` in once the real key had been seen). A cached entry
carries its own deadline (the key's expiry, or the end of a rotated-out secret's grace period)
and lives at most API_KEY_CACHE_SECONDS. Revocation and rotation bump a shared version counter;
every instance drops its cache when it sees the version move (within INVALIDATION_POLL_SECONDS),
so a revoked key stops working everywhere within a second.

A rotation of API_KEY_SALT (``bastion secrets rotate API_KEY_SALT``) leaves the stored hashes under
the previous salt: during the grace period a key whose hash matches only under the previous salt
authenticates and its hash is replaced by the one under the current salt (so keys in use survive);
after the grace period the previous salt is never tried.

Rotation keeps the key id: rate limits, quotas, usage counters and the chat sessions a key owns
carry over to the new secret. The previous secret verifies until API_KEY_ROTATION_GRACE_DAYS after
the rotation; rotating again ends the older secret's grace at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bastion.audit.events import AuditEvent, Result
from bastion.audit.service import AuditService
from bastion.auth import api_keys
from bastion.auth.api_key_repository import ApiKeyRepository
from bastion.auth.api_keys import KeyHasher, StaticKeys
from bastion.auth.models import ApiKey
from bastion.auth.permissions import ADMIN_ONLY_SCOPES, KEY_SCOPES, SERVICE_ONLY_SCOPES, scope_permissions
from bastion.auth.principal import AuthMethod, Principal, Role
from bastion.auth.repository import IdentityRepository
from bastion.auth.service import Context
from bastion.crypto.fields import FieldCipher
from bastion.crypto.grace import in_grace
from bastion.crypto.registry import API_KEY_LAST_IP, API_KEY_NAME
from bastion.db.session import unit_of_work
from bastion.db.types import utcnow
from bastion.errors import Conflict, Forbidden, InvalidField, NotFound
from bastion.failover import fail_mode_of
from bastion.invalidation import Watched, version_counter
from bastion.observability.logging import get_logger
from bastion.redis_client import RedisClient
from bastion.settings import Settings

KEY_ROLES = ("user", "service")
MAX_LISTED_KEYS = 500
MAX_CACHED_KEYS = 10_000


class KeyRejected(Exception):
    """A presented key is not valid; ``reason`` is for the audit trail, never for the client."""

    def __init__(self, reason: str, key_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.key_id = key_id


@dataclass(frozen=True, slots=True)
class KeyView:
    """What may be shown about a key: never its secret or hash."""

    id: str
    user_id: str
    name: str
    role: str
    scopes: tuple[str, ...]
    messages_per_hour: int | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    rotated_at: datetime | None
    previous_valid_until: datetime | None
    last_used_at: datetime | None

    @classmethod
    def of(cls, key: ApiKey, cipher: FieldCipher) -> KeyView:
        return cls(
            id=key.id,
            user_id=key.user_id,
            name=API_KEY_NAME.open(cipher, key.name_ciphertext, key.id),
            role=key.role,
            scopes=tuple(key.scopes.split()),
            messages_per_hour=key.messages_per_hour,
            created_at=key.created_at,
            expires_at=key.expires_at,
            revoked_at=key.revoked_at,
            rotated_at=key.rotated_at,
            previous_valid_until=key.previous_valid_until,
            last_used_at=key.last_used_at,
        )


@dataclass(frozen=True, slots=True)
class Created:
    key: KeyView
    secret: str  # shown once


@dataclass(frozen=True, slots=True)
class _Cached:
    principal: Principal
    deadline: datetime | None  # expiry or end of grace, whichever is first
    cached_at: float  # monotonic


def _deadline(*values: datetime | None) -> datetime | None:
    present = [value for value in values if value is not None]
    return min(present) if present else None


def _matching_column(key: ApiKey, digest: str) -> str | None:
    """Which stored hash of ``key`` equals ``digest``: the current secret's, the rotated-out one's."""
    if api_keys.matches(key.secret_hash, digest):
        return "secret_hash"
    if api_keys.matches(key.previous_secret_hash, digest):
        return "previous_secret_hash"
    return None


def _can_manage(actor: Principal, key: ApiKey) -> bool:
    from bastion.auth.permissions import Permission, granted

    return key.user_id == actor.user_id or granted(actor, Permission.KEYS_MANAGE)


class ApiKeys:
    """Everything about managed and static API keys that outlives a request (``app.state.api_keys``)."""

    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        hasher: KeyHasher | Callable[[], KeyHasher],
        static: StaticKeys,
        version: Watched,
        audit: AuditService,
        grace: timedelta,
        cache_seconds: float,
        last_used_seconds: float,
        max_per_user: int,
        default_messages_per_hour: int,
        cipher: FieldCipher,
        self_service: bool = True,
        clock: Callable[[], datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.cipher = cipher
        # A callable follows the app's reloaded secrets (API_KEY_SALT rotations reach every instance).
        if isinstance(hasher, KeyHasher):
            fixed = hasher
            self._hasher: Callable[[], KeyHasher] = lambda: fixed
        else:
            self._hasher = hasher
        self.static = static
        self.version = version
        self.audit = audit
        self.grace = grace
        self.cache_seconds = cache_seconds
        self.last_used_seconds = last_used_seconds
        self.max_per_user = max_per_user
        self.default_messages_per_hour = default_messages_per_hour
        self.self_service = self_service
        self.clock = clock
        self.monotonic = monotonic
        self._cache: dict[bytes, _Cached] = {}
        self._touched: dict[str, float] = {}
        self.log = get_logger("bastion.auth.api_keys")

    @property
    def hasher(self) -> KeyHasher:
        return self._hasher()

    # -- verification ------------------------------------------------------------------------

    async def authenticate(self, presented: str, *, ip: str | None = None) -> Principal:
        """The principal of a valid key; ``KeyRejected`` otherwise (one reason per failure kind)."""
        if not api_keys.well_formed(presented):
            raise KeyRejected("malformed")
        static = self.static.match(presented)
        if static is not None:
            return static
        key_id = api_keys.parse_managed(presented)
        if key_id is None:
            raise KeyRejected("malformed" if not presented.startswith(api_keys.PREFIX) else "unknown")
        if self.version.due() and await self.version.changed():
            self._cache.clear()
        now = self.clock()
        cache_key = self.hasher.cache_key(presented)
        cached = self._cache.get(cache_key)
        if cached is not None:
            if self.monotonic() - cached.cached_at < self.cache_seconds and (
                cached.deadline is None or now < cached.deadline
            ):
                await self._touch(key_id, now, ip)
                return cached.principal
            del self._cache[cache_key]
        principal, deadline = await self._verify(key_id, presented, now)
        if self.cache_seconds > 0:
            if len(self._cache) >= MAX_CACHED_KEYS:
                self._cache.clear()  # bounded memory; the next requests re-verify
            self._cache[cache_key] = _Cached(principal, deadline, self.monotonic())
        await self._touch(key_id, now, ip)
        return principal

    async def _verify(self, key_id: str, presented: str, now: datetime) -> tuple[Principal, datetime | None]:
        hasher = self.hasher
        digest = hasher.managed(presented)
        async with self.sessionmaker() as session:
            key = await ApiKeyRepository(session).get(key_id)
            if key is None:
                raise KeyRejected("unknown")
            grace_end: datetime | None = None
            column = _matching_column(key, digest)
            stale: str | None = None  # the hash under a rotated-out salt, to replace
            older = in_grace(hasher.previous) if column is None else None
            if older is not None and hasher.previous is not None:
                stale = older.managed(presented)
                column = _matching_column(key, stale)
                grace_end = hasher.previous.until
            if column is None:
                raise KeyRejected("wrong_secret", key_id)
            if column == "previous_secret_hash":
                if key.previous_valid_until is None or key.previous_valid_until <= now:
                    raise KeyRejected("rotated", key_id)
                grace_end = _deadline(grace_end, key.previous_valid_until)
            if key.revoked_at is not None:
                raise KeyRejected("revoked", key_id)
            if key.expires_at is not None and key.expires_at <= now:
                raise KeyRejected("expired", key_id)
            owner = await IdentityRepository(session).user_by_id(key.user_id)
            if owner is None or not owner.is_active:
                raise KeyRejected("owner_inactive", key_id)
            principal = self._principal(key, owner_role=owner.role)
        if stale is not None and await self._rehash(key_id, column, stale, digest):
            # Now stored under the current salt: the salt's grace no longer bounds this key.
            grace_end = key.previous_valid_until if column == "previous_secret_hash" else None
        return principal, _deadline(key.expires_at, grace_end)

    async def _rehash(self, key_id: str, column: str, stale: str, digest: str) -> bool:
        """Store a key's hash under the current API_KEY_SALT after it was verified under the previous."""
        try:
            async with unit_of_work(self.sessionmaker) as session:
                done = await ApiKeyRepository(session).rehash(key_id, column=column, old=stale, new=digest)
        except Exception as exc:  # the key was verified; the next use retries the re-hash
            self.log.warning("api_key_rehash_failed", key_id=key_id, error=type(exc).__name__)
            return False
        if done:
            self.log.info("api_key_rehashed", key_id=key_id, column=column)
        return done

    def _principal(self, key: ApiKey, *, owner_role: str) -> Principal:
        scopes = frozenset(key.scopes.split())
        role = Role.SERVICE if key.role == "service" else Role.USER
        if "admin" in scopes and role is Role.USER and owner_role == Role.ADMIN.value:
            role = Role.ADMIN
        else:
            # An admin scope is void once its owner is no longer an admin.
            scopes = scopes - ADMIN_ONLY_SCOPES
        overrides: tuple[tuple[str, int], ...] = ()
        if key.messages_per_hour:
            overrides = (("messages_hourly", key.messages_per_hour),)
            if key.messages_per_hour > self.default_messages_per_hour:
                # Only an administrator sets an allowance above the default (``create``): the
                # key then answers to that allowance alone, outside its owner's shared budget.
                overrides += (("messages_user_hourly", key.messages_per_hour),)
        return Principal(
            subject=f"key:{key.id}",
            role=role,
            method=AuthMethod.API_KEY,
            scopes=scope_permissions(scopes),
            user_id=key.user_id,
            api_key_id=key.id,
            rate_overrides=overrides,
        )

    async def _touch(self, key_id: str, now: datetime, ip: str | None) -> None:
        """Record last use at most once per API_KEY_LAST_USED_SECONDS per key and instance."""
        moment = self.monotonic()
        last = self._touched.get(key_id)
        if last is not None and moment - last < self.last_used_seconds:
            return
        if len(self._touched) >= MAX_CACHED_KEYS:
            self._touched.clear()
        self._touched[key_id] = moment
        try:
            async with unit_of_work(self.sessionmaker) as session:
                sealed_ip = API_KEY_LAST_IP.seal(self.cipher, ip, key_id) if ip else None
                await ApiKeyRepository(session).touch(key_id, now=now, sealed_ip=sealed_ip)
        except Exception as exc:  # usage metadata must never fail a request
            self.log.warning("api_key_touch_failed", error=type(exc).__name__)

    async def _invalidate(self) -> None:
        self._cache.clear()
        await self.version.bump()

    async def owner_changed(self) -> None:
        """An owner's role or standing changed: every instance re-verifies keys from the database."""
        await self._invalidate()

    # -- management --------------------------------------------------------------------------

    async def create(
        self,
        actor: Principal,
        *,
        name: str,
        scopes: Sequence[str],
        role: str = "user",
        expires_at: datetime | None = None,
        messages_per_hour: int | None = None,
        user_id: str | None = None,
        context: Context | None = None,
    ) -> Created:
        """Make a key for ``actor`` (or, for admins, for ``user_id``); the secret is returned once."""
        now = self.clock()
        chosen = tuple(dict.fromkeys(scopes))
        unknown = [scope for scope in chosen if scope not in KEY_SCOPES]
        if unknown or not chosen:
            raise InvalidField("body.scopes", "scopes", f"Scopes are one or more of: {', '.join(KEY_SCOPES)}")
        if role not in KEY_ROLES:
            raise InvalidField("body.role", "role", "The role is user or service")
        if expires_at is not None and expires_at <= now:
            raise InvalidField("body.expires_at", "future", "The expiry must be in the future")
        admin = actor.role is Role.ADMIN
        if not admin and not self.self_service:
            raise Forbidden("Only administrators issue API keys on this deployment (API_KEY_SELF_SERVICE)")
        privileged = role == "service" or bool(ADMIN_ONLY_SCOPES & set(chosen))
        if privileged and not admin:
            raise Forbidden("Only administrators may create service keys or keys with the admin scope")
        if role == "service" and ADMIN_ONLY_SCOPES & set(chosen):
            raise InvalidField("body.scopes", "scopes", "The admin scope is for user keys of administrators")
        if role != "service" and SERVICE_ONLY_SCOPES & set(chosen):
            raise InvalidField("body.scopes", "scopes", "The monitoring scope is for service keys")
        # A key's own allowance may be lower than the operator's; only administrators raise it.
        if messages_per_hour is not None and messages_per_hour > self.default_messages_per_hour and not admin:
            raise Forbidden(
                "Only administrators may set messages_per_hour above the operator's "
                f"{self.default_messages_per_hour} per hour"
            )
        owner_id = user_id if user_id is not None else actor.user_id
        if owner_id is None:
            raise Forbidden()
        if owner_id != actor.user_id and actor.role is not Role.ADMIN:
            raise Forbidden()
        new = api_keys.generate()
        async with unit_of_work(self.sessionmaker) as session:
            owner = await IdentityRepository(session).user_by_id(owner_id)
            if owner is None or not owner.is_active:
                raise NotFound("No such user")
            if "admin" in chosen and owner.role != Role.ADMIN.value:
                raise InvalidField("body.scopes", "scopes", "The admin scope is for administrators' keys")
            repository = ApiKeyRepository(session)
            if await repository.count_live(owner_id) >= self.max_per_user:
                raise Conflict("This account has reached its number of API keys")
            key = await repository.add(
                ApiKey(
                    id=new.key_id,
                    user_id=owner_id,
                    name_ciphertext=API_KEY_NAME.seal(self.cipher, name, new.key_id),
                    role=role,
                    scopes=" ".join(chosen),
                    secret_hash=self.hasher.managed(new.secret),
                    messages_per_hour=messages_per_hour,
                    created_at=now,
                    expires_at=expires_at,
                )
            )
            view = KeyView.of(key, self.cipher)
        await self._record(
            AuditEvent.API_KEY_CREATED, actor, view, context, {"role": role, "scopes": list(chosen)}
        )
        return Created(view, new.secret)

    async def list(
        self,
        actor: Principal,
        *,
        everyone: bool = False,
        user_id: str | None = None,
        limit: int = MAX_LISTED_KEYS,
    ) -> list[KeyView]:
        """The actor's newest keys, at most ``limit`` (never above MAX_LISTED_KEYS); with
        ``everyone`` (admins), all keys or one user's."""
        if everyone:
            owner = user_id
        elif actor.user_id is None:
            return []
        else:
            owner = actor.user_id
        async with self.sessionmaker() as session:
            keys = await ApiKeyRepository(session).list(user_id=owner, limit=min(limit, MAX_LISTED_KEYS))
            return [KeyView.of(key, self.cipher) for key in keys]

    async def _owned(self, session: AsyncSession, actor: Principal, key_id: str) -> ApiKey:
        key = await ApiKeyRepository(session).get(key_id)
        # Another user's key is as unknown as a missing one: 404, never 403.
        if key is None or not _can_manage(actor, key):
            raise NotFound("No such API key")
        return key

    async def get(self, actor: Principal, key_id: str) -> KeyView:
        async with self.sessionmaker() as session:
            return KeyView.of(await self._owned(session, actor, key_id), self.cipher)

    async def revoke(self, actor: Principal, key_id: str, *, context: Context | None = None) -> KeyView:
        """Revoke a key (idempotent); every instance refuses it within a second."""
        now = self.clock()
        async with unit_of_work(self.sessionmaker) as session:
            key = await self._owned(session, actor, key_id)
            first = key.revoked_at is None
            if first:
                key.revoked_at = now
                key.previous_secret_hash = None
                key.previous_valid_until = None
            view = KeyView.of(key, self.cipher)
        await self._invalidate()
        if first:
            await self._record(AuditEvent.API_KEY_REVOKED, actor, view, context, {})
        return view

    async def rotate(self, actor: Principal, key_id: str, *, context: Context | None = None) -> Created:
        """A new secret for the same key; the current one keeps working for the grace period."""
        now = self.clock()
        async with unit_of_work(self.sessionmaker) as session:
            key = await self._owned(session, actor, key_id)
            if key.revoked_at is not None:
                raise Conflict("A revoked key cannot be rotated")
            if key.expires_at is not None and key.expires_at <= now:
                raise Conflict("An expired key cannot be rotated")
            new = api_keys.generate(key.id)
            key.previous_secret_hash = key.secret_hash if self.grace > timedelta(0) else None
            key.previous_valid_until = now + self.grace if self.grace > timedelta(0) else None
            key.secret_hash = self.hasher.managed(new.secret)
            key.rotated_at = now
            view = KeyView.of(key, self.cipher)
        await self._invalidate()
        await self._record(
            AuditEvent.API_KEY_ROTATED,
            actor,
            view,
            context,
            {
                "previous_valid_until": view.previous_valid_until.isoformat()
                if view.previous_valid_until
                else None
            },
        )
        return Created(view, new.secret)

    async def _record(
        self,
        event: AuditEvent,
        actor: Principal,
        key: KeyView,
        context: Context | None,
        details: dict[str, object],
    ) -> None:
        context = context or Context()
        await self.audit.record(
            event,
            actor_type="user" if actor.user_id else "system",
            actor_id=(actor.user_id or actor.subject)[:64],
            target_type="api_key",
            target_id=key.id,
            ip=context.ip,
            request_id=context.request_id,
            details={"owner_id": key.user_id, **details},
        )

    async def record_rejection(
        self, rejected: KeyRejected, *, ip: str | None, request_id: str | None, path: str
    ) -> None:
        """Audit a refused key: the reason and the key id when known, never the key."""
        try:
            await self.audit.record(
                AuditEvent.AUTH_FAILURE,
                result=Result.FAILURE,
                target_type="api_key" if rejected.key_id else None,
                target_id=rejected.key_id,
                ip=ip,
                request_id=request_id,
                details={"method": "api_key", "reason": rejected.reason, "path": path[:200]},
                status_code=401,
            )
        except Exception as exc:  # the refusal stands even if the audit store is down
            self.log.warning(
                "audit_failed", audit_event=str(AuditEvent.AUTH_FAILURE), error=type(exc).__name__
            )


def build_api_keys(
    settings: Settings,
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    redis: RedisClient | None,
    hasher: KeyHasher | Callable[[], KeyHasher] | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> ApiKeys:
    """The app's API keys from settings: the pepper, static keys, the shared revocation version.

    ``hasher`` is the managed keys' hasher under the current (possibly rotated) API_KEY_SALT, or
    a callable returning the latest one; the settings salt when not given. Static keys are never
    stored, so they are always compared under the settings salt: their ids stay stable.
    """
    salt = settings.secret("API_KEY_SALT")
    if salt is None:
        raise ValueError("API_KEY_SALT is required")
    settings_hasher = KeyHasher(salt.encode())
    return ApiKeys(
        sessionmaker=sessionmaker,
        hasher=hasher if hasher is not None else settings_hasher,
        static=StaticKeys(
            settings_hasher,
            app_keys=api_keys.split_static(settings.secret("API_KEYS")),
            ml_keys=api_keys.split_static(settings.secret("ML_API_KEYS")),
        ),
        version=Watched(
            version_counter(redis, "api_keys", fail_mode=fail_mode_of(settings)),
            interval=settings.invalidation_poll_seconds,
        ),
        audit=AuditService(sessionmaker=sessionmaker, clock=clock),
        grace=timedelta(days=settings.api_key_rotation_grace_days),
        cache_seconds=settings.api_key_cache_seconds,
        last_used_seconds=float(settings.api_key_last_used_seconds),
        max_per_user=settings.api_key_max_per_user,
        default_messages_per_hour=settings.rate_limit_messages_per_hour,
        self_service=settings.api_key_self_service,
        cipher=FieldCipher.for_settings(settings),
        clock=clock,
    )
