# SPDX-License-Identifier: Apache-2.0
"""Identity rules: accounts, logins, sessions, token rotation, password change and reset, roles.

Built per request from the app's collaborators (keyword-only arguments) with an injected clock.
Knows nothing of HTTP: failures are domain errors from ``bastion.errors``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Coroutine, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bastion.audit.events import AuditEvent, Result
from bastion.audit.service import AuditService
from bastion.auth.cache import AuthCache
from bastion.auth.mailer import Mail, Mailer
from bastion.auth.models import AuthSession, Invitation, PasswordResetToken, RefreshToken, User
from bastion.auth.passwords import HashingPool
from bastion.auth.permissions import permissions_for
from bastion.auth.policy import PasswordPolicy
from bastion.auth.principal import AuthMethod, Principal, Role
from bastion.auth.repository import IdentityRepository, user_and_session, user_by_id
from bastion.auth.revocation import Revocations
from bastion.auth.throttle import PasswordThrottle, Refusal
from bastion.auth.tokens import AccessClaims, AccessTokens, SecretTokens, TokenInvalid
from bastion.crypto.fields import FieldCipher
from bastion.crypto.randomness import new_id
from bastion.crypto.registry import INVITATION_EMAIL, USER_EMAIL
from bastion.db.session import read_batch, read_only, unit_of_work
from bastion.db.types import utcnow
from bastion.errors import (
    Conflict,
    Forbidden,
    NotFound,
    PasswordRejected,
    RateLimited,
    ServiceUnavailable,
    Unauthorized,
)
from bastion.observability.logging import get_logger
from bastion.ratelimit.service import RateLimiter

T = TypeVar("T")
Registration = Literal["open", "invite", "closed"]
REFRESH_PURPOSE = "refresh"
RESET_PURPOSE = "reset"
INVITE_PURPOSE = "invite"
INVALID_INVITATION = "This invitation is not valid"
REGISTRATION_CLOSED = "Registration is closed: an administrator creates accounts"
LOGIN_FAILED = "Login failed"
WRONG_PASSWORD = "The current password is wrong"  # noqa: S105 - a message
TOO_MANY_ATTEMPTS = "Too many failed attempts; try again later or reset your password"
INVALID_TOKEN = "Invalid or expired token"  # noqa: S105 - a message


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    session_id: str


@dataclass(frozen=True, slots=True)
class Context:
    """Where a request came from, for the audit trail."""

    ip: str | None = None
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class Invited:
    code: str  # shown once
    email: str | None
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Registered:
    id: str
    email: str
    role: str


async def find_user_by_email(
    sessionmaker: async_sessionmaker[AsyncSession], cipher: FieldCipher, email: str
) -> User | None:
    """The account of a normalized address, found by its blind index (for operators' commands)."""
    async with read_only(sessionmaker) as session:
        return await IdentityRepository(session).user_by_email_index(USER_EMAIL.lookup(cipher, email))


class IdentityService:
    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        hashing: HashingPool,
        policy: PasswordPolicy,
        access_tokens: AccessTokens,
        secret_tokens: SecretTokens,
        revocations: Revocations,
        throttle: PasswordThrottle,
        audit: AuditService,
        mailer: Mailer,
        refresh_lifetime: timedelta,
        session_lifetime: timedelta,
        reset_lifetime: timedelta,
        reset_url: str = "/reset-password",
        registration: Registration = "open",
        background: set[asyncio.Task[None]] | None = None,
        cipher: FieldCipher,
        limiter: RateLimiter | None = None,
        cache: AuthCache | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessionmaker = sessionmaker
        # Without one: nothing is kept between calls (every authentication verifies in full).
        self.cache = cache if cache is not None else AuthCache(ttl_seconds=0)
        self.cipher = cipher
        self.hashing = hashing
        self.policy = policy
        self.access_tokens = access_tokens
        self.secret_tokens = secret_tokens
        self.revocations = revocations
        self.throttle = throttle
        self.limiter = limiter
        self.audit = audit
        self.mailer = mailer
        self.refresh_lifetime = refresh_lifetime
        self.session_lifetime = session_lifetime
        self.reset_lifetime = reset_lifetime
        self.reset_url = reset_url
        self.registration = registration
        self.background = background if background is not None else set()
        self.clock = clock
        self.log = get_logger("bastion.auth")

    # -- helpers ---------------------------------------------------------------------------------

    def email_of(self, user: User) -> str:
        """The user's e-mail address, opened from its sealed column (kept as the user's row is)."""
        emails = self.cache.emails
        key = (user.id, user.email_ciphertext)
        email = emails.get(key, self.clock())
        if email is None:
            email = USER_EMAIL.open(self.cipher, user.email_ciphertext, user.id)
            emails.put(key, email)
        return email

    def _new_user(self, email: str, **values: Any) -> User:
        """A user row with its address sealed to its id and indexed for lookups."""
        user = User(id=new_id(), **values)
        user.email_ciphertext = USER_EMAIL.seal(self.cipher, email, user.id)
        user.email_index = USER_EMAIL.index(self.cipher, email)
        return user

    async def _user_by_email(self, repo: IdentityRepository, email: str) -> User | None:
        return await repo.user_by_email_index(USER_EMAIL.lookup(self.cipher, email))

    def check_policy(self, password: str, email: str | None) -> None:
        result = self.policy.check(password, email=email)
        if not result.ok:
            raise PasswordRejected([str(r) for r in result.failures], list(result.messages), result.score)

    async def _record(
        self,
        event: AuditEvent,
        context: Context,
        *,
        result: Result = Result.SUCCESS,
        actor_id: str | None = None,
        target_id: str | None = None,
        details: dict[str, object] | None = None,
        status_code: int | None = None,
    ) -> None:
        await self.audit.record(
            event,
            result=result,
            status_code=status_code,
            actor_type="user" if actor_id else None,
            actor_id=actor_id,
            target_type="user" if target_id else None,
            target_id=target_id,
            ip=context.ip,
            request_id=context.request_id,
            details=dict(details or {}),
        )

    async def _by_token(
        self, token: str, purpose: str, lookup: Callable[[str], Awaitable[T | None]]
    ) -> T | None:
        """Find a stored token by its keyed hash: under the current SESSION_SECRET, then (only when
        that finds nothing, and only during a rotation's grace period) under the previous one."""
        for digest in self.secret_tokens.digests(token, purpose=purpose):
            found = await lookup(digest)
            if found is not None:
                return found
        return None

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def end_sessions(self, session_ids: Collection[str], *, user_wide: bool = False) -> None:
        """Refuse every access token of these sessions, on every instance, from the next request.

        Called after the database has revoked them. For a user-wide ending the bumped token
        version already refuses every older token (a second line), so when the denylist cannot be
        written the ending still stands and the failure is logged. For one session the denylist is
        the only line: in closed mode the caller gets 503 and retries (endings are idempotent).
        """
        try:
            await self.revocations.end_sessions(session_ids)
        except ServiceUnavailable:
            if not user_wide:
                raise
            self.log.warning(
                "session_denylist_unavailable", sessions=len(session_ids), enforced_by="token_version"
            )
        finally:
            await self.credentials_changed()

    async def credentials_changed(self) -> None:
        """Every instance forgets the credentials and users it verified (``bastion.auth.cache``).

        Called after the database (and the denylist) hold the change. When the shared version
        cannot be moved (Redis down) this instance has already dropped its own cache and the
        others re-verify within AUTH_CACHE_SECONDS; the failure is logged.
        """
        try:
            await self.cache.changed()
        except ServiceUnavailable:
            self.log.error("auth_cache_version_unavailable", within_seconds=self.cache.ttl_seconds)

    async def _issue(self, repo: IdentityRepository, user: User, session_id: str | None) -> TokenPair:
        """A new refresh token (in a new session unless ``session_id``) and an access token."""
        now = self.clock()
        if session_id is None:
            auth_session = AuthSession(
                id=new_id(), user_id=user.id, created_at=now, expires_at=now + self.session_lifetime
            )
            await repo.add_session(auth_session)
            session_id, session_end = auth_session.id, auth_session.expires_at
        else:
            existing = await repo.get_session(session_id)
            if existing is None:  # pragma: no cover - guarded by the caller
                raise Unauthorized(INVALID_TOKEN)
            session_end = existing.expires_at
        refresh = self.secret_tokens.generate()
        await repo.add_refresh_token(
            RefreshToken(
                session_id=session_id,
                user_id=user.id,
                token_hash=self.secret_tokens.digest(refresh, purpose=REFRESH_PURPOSE),
                created_at=now,
                expires_at=min(now + self.refresh_lifetime, session_end),
            )
        )
        role = Role(user.role)
        access = self.access_tokens.issue(
            subject=user.id,
            role=role.value,
            scopes=frozenset(p.value for p in permissions_for(role)),
            token_version=user.token_version,
            session_id=session_id,
        )
        return TokenPair(
            access_token=access.token,
            refresh_token=refresh,
            expires_in=int(self.access_tokens.lifetime.total_seconds()),
            session_id=session_id,
        )

    # -- accounts ----------------------------------------------------------------------------------

    async def register(
        self, email: str, password: str, context: Context, *, invitation: str | None = None
    ) -> Registered:
        """Create an account; an existing email answers the same way (no enumeration).

        For a taken email nothing is created: the answer carries a random id, the same work is done
        (one hash), and the owner is told by mail that someone tried to register their address.
        REGISTRATION decides who may: ``open`` anyone, ``invite`` only with an administrator's
        unused invitation (spent in the same transaction that creates the account), ``closed``
        nobody (administrators create accounts).
        """
        if self.registration == "closed":
            await self._record(
                AuditEvent.USER_REGISTERED, context, result=Result.FAILURE, details={"reason": "closed"}
            )
            raise Forbidden(REGISTRATION_CLOSED)
        if self.registration == "invite" and not self._plausible_code(invitation):
            await self._record(
                AuditEvent.USER_REGISTERED, context, result=Result.FAILURE, details={"reason": "invitation"}
            )
            raise Forbidden(INVALID_INVITATION)
        self.check_policy(password, email)
        password_hash = await self.hashing.hash(password)
        async with unit_of_work(self.sessionmaker) as session:
            repo = IdentityRepository(session)
            existing = await self._user_by_email(repo, email)
            now = self.clock()
            if existing is None:
                user = await repo.add_user(
                    self._new_user(
                        email,
                        password_hash=password_hash,
                        role=Role.USER.value,
                        is_active=True,
                        token_version=1,
                        created_at=now,
                        updated_at=now,
                    )
                )
                user_id: str | None = user.id
            else:
                user_id = None
            # Spent whether or not the address is taken, so an invitation's answer never tells;
            # raised inside the unit of work, a refusal rolls the new account back with it.
            if self.registration == "invite" and not await self._spend_invitation(
                repo, invitation or "", email=email, user_id=user_id, now=now
            ):
                raise Forbidden(INVALID_INVITATION)
        if user_id is None:
            await self._record(
                AuditEvent.USER_REGISTERED,
                context,
                result=Result.FAILURE,
                target_id=existing.id if existing else None,
                details={"reason": "exists"},
            )
            self._spawn(self._notify_existing(email))
            return Registered(id=new_id(), email=email, role=Role.USER.value)
        await self._record(AuditEvent.USER_REGISTERED, context, actor_id=user_id, target_id=user_id)
        return Registered(id=user_id, email=email, role=Role.USER.value)

    async def _spend_invitation(
        self, repo: IdentityRepository, code: str, *, email: str, user_id: str | None, now: datetime
    ) -> bool:
        """Spend a live invitation for ``email`` (bound to it, or to nobody); False otherwise."""
        invitation = await self._by_token(
            code, INVITE_PURPOSE, lambda digest: repo.live_invitation(digest, now=now)
        )
        if invitation is None:
            return False
        if invitation.email_ciphertext is not None:
            bound = INVITATION_EMAIL.open(self.cipher, invitation.email_ciphertext, invitation.id)
            if bound != email:
                return False
        return await repo.consume_invitation(invitation.id, user_id=user_id, now=now)

    @staticmethod
    def _plausible_code(code: str | None) -> bool:
        return code is not None and 0 < len(code) <= 200

    async def invite(
        self, email: str | None, context: Context, *, actor_id: str | None, lifetime: timedelta
    ) -> Invited:
        """An invitation code to register (for ``email`` only, when given); shown once."""
        code = self.secret_tokens.generate()
        now = self.clock()
        async with unit_of_work(self.sessionmaker) as session:
            invitation = Invitation(
                id=new_id(),
                token_hash=self.secret_tokens.digest(code, purpose=INVITE_PURPOSE),
                created_by=actor_id,
                created_at=now,
                expires_at=now + lifetime,
            )
            if email is not None:
                invitation.email_ciphertext = INVITATION_EMAIL.seal(self.cipher, email, invitation.id)
            await IdentityRepository(session).add_invitation(invitation)
            invitation_id = invitation.id
        await self._record(
            AuditEvent.INVITATION_CREATED,
            context,
            actor_id=actor_id,
            details={"invitation_id": invitation_id, "bound": email is not None},
        )
        return Invited(code=code, email=email, expires_at=now + lifetime)

    async def _notify_existing(self, email: str) -> None:
        try:
            await self.mailer.send(
                Mail(
                    to=email,
                    subject="Bastion: someone tried to register your address",
                    body="An account with this address already exists. If this was you, sign in or "
                    "reset your password. If not, you can ignore this message.",
                )
            )
        except Exception as exc:  # a mail failure must not surface to the caller
            self.log.warning("mail_failed", kind="register_notice", error=type(exc).__name__)

    async def verify_password_attempt(
        self,
        email: str,
        user: User | None,
        password: str,
        context: Context,
        *,
        event: AuditEvent,
        message: str,
    ) -> User:
        """The one way a password is checked (login, password change, any re-authentication).

        Asks the throttle first: a refused attempt is never verified (429 with Retry-After). A
        wrong password, an unknown ``email`` (``user`` None, a dummy verification for the same
        time) or a disabled account counts toward the per-account, per-client and account-wide
        limits and toward the limiter's automatic blocks, is audited under ``event`` and raises
        ``Unauthorized(message)``. A correct one restarts the consecutive-failure counts.
        """
        target = user.id if user is not None else None
        actor = target if event is not AuditEvent.AUTH_FAILURE else None
        verdict = await self.throttle.check(email, context.ip)
        if not verdict.allowed:
            await self._record(
                event,
                context,
                result=Result.FAILURE,
                actor_id=actor,
                target_id=target,
                details={
                    "method": "password",
                    "reason": str(verdict.refusal),
                    "retry_after": verdict.retry_after,
                },
                status_code=429,
            )
            why = TOO_MANY_ATTEMPTS if verdict.refusal is not Refusal.CLIENT_BLOCKED else None
            raise RateLimited(why, retry_after=verdict.retry_after)
        if user is None:
            await self.hashing.dummy_verify(password)  # same work as a real check
            ok = False
        else:
            ok = await self.hashing.verify(user.password_hash, password)
        if ok and user is not None and user.is_active:
            await self.throttle.success(email, context.ip)
            return user
        counted = await self.throttle.failure(email, context.ip)
        if self.limiter is not None:
            # Failed password checks feed the per-address abuse counter: enough block the address.
            await self.limiter.record_failed_authentication(ip=context.ip, request_id=context.request_id)
        await self._record(
            event,
            context,
            result=Result.FAILURE,
            actor_id=actor,
            target_id=target,
            details={
                "method": "password",
                "reason": "disabled" if ok else "bad_credentials",
                "wait": counted.wait,
            },
            status_code=401 if event is AuditEvent.AUTH_FAILURE else None,
        )
        if counted.locked_for:
            await self._record(
                AuditEvent.ACCOUNT_LOCKED,
                context,
                result=Result.FAILURE,
                target_id=target,
                details={"seconds": counted.locked_for},
            )
        raise Unauthorized(message)

    async def login(self, email: str, password: str, context: Context) -> TokenPair:
        """Tokens for a correct email and password; one generic failure for everything else."""
        async with read_only(self.sessionmaker) as session:
            found = await self._user_by_email(IdentityRepository(session), email)
        user = await self.verify_password_attempt(
            email, found, password, context, event=AuditEvent.AUTH_FAILURE, message=LOGIN_FAILED
        )
        # Hashing is slow on purpose: done before the write transaction, which it would hold open.
        rehash = self.hashing.needs_rehash(user.password_hash)
        new_hash = await self.hashing.hash(password) if rehash else None
        async with unit_of_work(self.sessionmaker) as session:
            repo = IdentityRepository(session)
            if new_hash is not None:
                await repo.update_user(user.id, now=self.clock(), bump_version=False, password_hash=new_hash)
                user.password_hash = new_hash
            pair = await self._issue(repo, user, None)
        await self._record(
            AuditEvent.AUTH_SUCCESS,
            context,
            actor_id=user.id,
            target_id=user.id,
            details={"session_id": pair.session_id},
        )
        return pair

    async def refresh(self, refresh_token: str, context: Context) -> TokenPair:
        """Rotate: the presented token is spent and a new pair issued in the same session.

        A token presented a second time means it was copied: the whole session is revoked (RFC 9700
        4.14.2), including the tokens the legitimate rotation produced, and the event is audited.
        """
        if not refresh_token or len(refresh_token) > 200:
            raise Unauthorized(INVALID_TOKEN)
        now = self.clock()
        async with unit_of_work(self.sessionmaker) as session:
            repo = IdentityRepository(session)
            stored = await self._by_token(refresh_token, REFRESH_PURPOSE, repo.refresh_token_by_hash)
            if stored is None:
                raise Unauthorized(INVALID_TOKEN)
            auth_session = await repo.get_session(stored.session_id)
            claimed = await repo.mark_refresh_token_used(stored.id, now)
        if not claimed:
            async with unit_of_work(self.sessionmaker) as session:
                await IdentityRepository(session).revoke_session(stored.session_id, now=now, reason="reuse")
            try:
                # Every access token of the family, the thief's and the rightful client's alike.
                await self.end_sessions([stored.session_id])
            finally:
                await self._record(
                    AuditEvent.REFRESH_REUSE_DETECTED,
                    context,
                    result=Result.FAILURE,
                    target_id=stored.user_id,
                    details={"session_id": stored.session_id},
                )
            raise Unauthorized(INVALID_TOKEN)
        if (
            auth_session is None
            or auth_session.revoked_at is not None
            or auth_session.expires_at <= now
            or stored.expires_at <= now
        ):
            raise Unauthorized(INVALID_TOKEN)
        async with unit_of_work(self.sessionmaker) as session:
            repo = IdentityRepository(session)
            user = await repo.user_by_id(stored.user_id)
            if user is None or not user.is_active:
                raise Unauthorized(INVALID_TOKEN)
            pair = await self._issue(repo, user, stored.session_id)
        await self._record(
            AuditEvent.TOKEN_REFRESHED, context, actor_id=user.id, details={"session_id": stored.session_id}
        )
        return pair

    async def session_of_refresh_token(self, refresh_token: str) -> str | None:
        """The session a refresh token belongs to (for CSRF binding), without spending it."""
        if not refresh_token or len(refresh_token) > 200:
            return None
        async with read_only(self.sessionmaker) as session:
            repo = IdentityRepository(session)
            stored = await self._by_token(refresh_token, REFRESH_PURPOSE, repo.refresh_token_by_hash)
        return stored.session_id if stored is not None else None

    # -- authentication of requests ----------------------------------------------------------------

    async def authenticate(self, token: str, method: AuthMethod) -> tuple[Principal, AccessClaims]:
        """The principal behind an access token; ``TokenInvalid`` (with a reason) otherwise.

        The role comes from the database, not the token, so a role change applies on the next
        request. A token whose session ended (any of the endings below) is refused by the session
        denylist, on every instance; the token version is a second line for user-wide endings.
        A verified token is kept in the cache (``bastion.auth.cache``) until any of these change
        or AUTH_CACHE_SECONDS pass: the next requests with it read neither Redis nor the database.
        """
        cache = self.cache
        # ServiceUnavailable when the shared version cannot be read in closed mode.
        if cache.due():
            await cache.refresh()
        key = cache.credential_key(method.value, token) if cache.enabled else b""
        generation = cache.generation
        now = self.clock()
        if not cache.enabled:
            return await self._verify(token, method, now, generation, b"")
        if (found := cache.tokens.get(key, now)) is not None:
            return found
        return await cache.shared(key, lambda: self._verify(token, method, now, generation, key))

    async def _verify(
        self, token: str, method: AuthMethod, now: datetime, generation: int, key: bytes
    ) -> tuple[Principal, AccessClaims]:
        """The full verification of an access token; kept under ``key`` unless the cache was dropped
        since ``generation``."""
        cache = self.cache
        claims = self.access_tokens.verify(token)
        # One round trip for the token and its session (ServiceUnavailable when it cannot be
        # known and the fail mode is closed: such a token is never accepted).
        if await self.revocations.refused(claims):
            raise TokenInvalid("revoked")
        user, live = await self._user_and_session(claims, now)
        if not live:
            # The database is where every ending is written first: a denylist that forgot it (a
            # Redis restarted without persistence) never brings an ended session back.
            raise TokenInvalid("revoked")
        if user is None or not user.is_active:
            raise TokenInvalid("no_user")
        if user.token_version != claims.token_version:
            raise TokenInvalid("stale_version")
        role = Role(user.role)
        principal = Principal(
            subject=user.id,
            role=role,
            method=method,
            scopes=frozenset(p.value for p in permissions_for(role)),
            user_id=user.id,
        )
        if (
            cache.enabled and cache.generation == generation
        ):  # nothing was revoked while this one was verified
            cache.tokens.put(key, (principal, claims), deadline=claims.expires_at)
        return principal, claims

    async def _user_and_session(self, claims: AccessClaims, now: datetime) -> tuple[User | None, bool]:
        """The token's user (from the cache when it holds it) and whether its session is live, in
        one read-only transaction."""
        cache = self.cache
        cached = cache.users.get(claims.subject, now)
        generation = cache.generation
        read, live = await read_batch(
            self.sessionmaker,
            user_and_session(None if cached is not None else claims.subject, claims.session_id, now),
        )
        if cached is not None:
            return cached, live
        if read is not None and cache.generation == generation:
            cache.users.put(claims.subject, read)
        return read, live

    async def _user(self, user_id: str, now: datetime) -> User | None:
        """The user's row, from the cache when it holds it (rows of users that do not exist are not
        kept); requests that miss it together share one read."""
        user = self.cache.users.get(user_id, now)
        if user is None:
            user = await self.cache.shared(("user", user_id), lambda: self._read_user(user_id))
        return user

    async def _read_user(self, user_id: str) -> User | None:
        cache = self.cache
        generation = cache.generation
        user = await read_batch(self.sessionmaker, user_by_id(user_id))
        if user is not None and cache.generation == generation:
            cache.users.put(user_id, user)
        return user

    # -- sessions ----------------------------------------------------------------------------------

    async def logout(self, claims: AccessClaims | None, refresh_token: str | None, context: Context) -> None:
        """End one session: its refresh tokens stop working and every access token of it is refused."""
        now = self.clock()
        session_ids: set[str] = set()
        if claims is not None:
            session_ids.add(claims.session_id)
        if refresh_token:
            found = await self.session_of_refresh_token(refresh_token)
            if found is not None:
                session_ids.add(found)
        async with unit_of_work(self.sessionmaker) as session:
            repo = IdentityRepository(session)
            for session_id in session_ids:
                await repo.revoke_session(session_id, now=now, reason="logout")
        await self.end_sessions(session_ids)
        if claims is not None:
            await self.revocations.revoke(claims)
        await self._record(
            AuditEvent.LOGOUT,
            context,
            actor_id=claims.subject if claims else None,
            details={"sessions": len(session_ids)},
        )

    async def logout_all(self, user_id: str, context: Context, *, actor_id: str | None = None) -> None:
        """End every session of ``user_id`` and invalidate all its access tokens."""
        now = self.clock()
        async with unit_of_work(self.sessionmaker) as session:
            repo = IdentityRepository(session)
            if not await repo.update_user(user_id, now=now, bump_version=True):
                raise NotFound()
            ended = await repo.revoke_user_sessions(user_id, now=now, reason="logout_all")
        await self.end_sessions(ended, user_wide=True)
        await self._record(
            AuditEvent.LOGOUT_ALL,
            context,
            actor_id=actor_id or user_id,
            target_id=user_id,
            details={"sessions": len(ended)},
        )

    async def me(self, user_id: str) -> User:
        if self.cache.due():
            await self.cache.refresh()
        user = await self._user(user_id, self.clock())
        if user is None:
            raise NotFound()
        return user

    async def list_users(
        self,
        *,
        role: Role | None = None,
        active: bool | None = None,
        email: str | None = None,
        before: tuple[datetime, str] | None = None,
        limit: int = 50,
    ) -> Sequence[User]:
        """Accounts newest first, keyset-paged; ``email`` (normalized) finds its one account by the
        blind index. Substring search over addresses is impossible: they are stored sealed."""
        indexes = USER_EMAIL.lookup(self.cipher, email) if email is not None else None
        async with read_only(self.sessionmaker) as session:
            return await IdentityRepository(session).page_users(
                role=role, active=active, email_indexes=indexes, before=before, limit=limit
            )

    # -- passwords ---------------------------------------------------------------------------------

    async def change_password(self, user_id: str, current: str, new: str, context: Context) -> TokenPair:
        """Change the password; every existing session ends and a new one is returned."""
        found = await self.me(user_id)
        email = self.email_of(found)
        await self.verify_password_attempt(
            email,
            found,
            current,
            context,
            event=AuditEvent.PASSWORD_CHANGED,
            message=WRONG_PASSWORD,
        )
        self.check_policy(new, email)
        new_hash = await self.hashing.hash(new)
        now = self.clock()
        async with unit_of_work(self.sessionmaker) as session:
            repo = IdentityRepository(session)
            await repo.update_user(user_id, now=now, bump_version=True, password_hash=new_hash)
            ended = await repo.revoke_user_sessions(user_id, now=now, reason="password_changed")
            await repo.invalidate_reset_tokens(user_id, now)
            fresh = await repo.user_by_id(user_id)
            if fresh is None:  # pragma: no cover - deleted concurrently
                raise NotFound()
            await session.refresh(fresh)
            pair = await self._issue(repo, fresh, None)
        await self.end_sessions(ended, user_wide=True)
        await self._record(AuditEvent.PASSWORD_CHANGED, context, actor_id=user_id, target_id=user_id)
        return pair

    async def request_password_reset(self, email: str, context: Context) -> None:
        """Mail a reset link when the account exists; the caller always answers 202 regardless.

        The request does the same work whether or not the address has an account (one lookup, one
        audit record): the link is created and mailed in the background, so the response time does
        not tell an existing address from an unknown one.
        """
        async with unit_of_work(self.sessionmaker) as session:
            user = await self._user_by_email(IdentityRepository(session), email)
        await self._record(
            AuditEvent.PASSWORD_RESET_REQUESTED,
            context,
            target_id=user.id if user else None,
            result=Result.SUCCESS if user and user.is_active else Result.FAILURE,
        )
        if user is not None and user.is_active:
            self._spawn(self._send_reset(user.id, email))

    async def _send_reset(self, user_id: str, address: str) -> None:
        token = self.secret_tokens.generate()
        now = self.clock()
        try:
            async with unit_of_work(self.sessionmaker) as session:
                repo = IdentityRepository(session)
                await repo.invalidate_reset_tokens(user_id, now)  # only the newest link works
                await repo.add_reset_token(
                    PasswordResetToken(
                        user_id=user_id,
                        token_hash=self.secret_tokens.digest(token, purpose=RESET_PURPOSE),
                        created_at=now,
                        expires_at=now + self.reset_lifetime,
                    )
                )
        except Exception as exc:  # no one waits for this task: log, never raise into the loop
            self.log.warning("reset_token_failed", user_id=user_id, error=type(exc).__name__)
            return
        minutes = int(self.reset_lifetime.total_seconds() // 60)
        mail = Mail(
            to=address,
            subject="Bastion: reset your password",
            body=(
                f"Use this code to choose a new password within {minutes} minutes:\n\n{token}\n\n"
                f"or open {self.reset_url}#token={token}\n\n"
                "If you did not ask for this, ignore this message; your password is unchanged."
            ),
        )
        try:
            await self.mailer.send(mail)
        except Exception as exc:
            self.log.warning("mail_failed", kind="password_reset", user_id=user_id, error=type(exc).__name__)

    async def confirm_password_reset(self, token: str, new_password: str, context: Context) -> None:
        """Set a new password with a single-use reset token; every session of the account ends."""
        if not token or len(token) > 200:
            raise Unauthorized(INVALID_TOKEN)
        now = self.clock()
        async with unit_of_work(self.sessionmaker) as session:
            repo = IdentityRepository(session)
            stored = await self._by_token(token, RESET_PURPOSE, repo.reset_token_by_hash)
        if stored is None or stored.used_at is not None or stored.expires_at <= now:
            raise Unauthorized(INVALID_TOKEN)
        user = await self.me(stored.user_id)
        email = self.email_of(user)
        self.check_policy(new_password, email)  # before spending the token: a typo can retry
        new_hash = await self.hashing.hash(new_password)
        async with unit_of_work(self.sessionmaker) as session:
            repo = IdentityRepository(session)
            if not await repo.consume_reset_token(stored.id, now):
                raise Unauthorized(INVALID_TOKEN)
            await repo.update_user(user.id, now=now, bump_version=True, password_hash=new_hash)
            ended = await repo.revoke_user_sessions(user.id, now=now, reason="password_reset")
        await self.end_sessions(ended, user_wide=True)
        # Proving ownership by mail lifts an account-wide lock, and this client's delay.
        unlocked = await self.throttle.unlock(email, context.ip)
        await self._record(
            AuditEvent.PASSWORD_RESET_COMPLETED,
            context,
            actor_id=user.id,
            target_id=user.id,
            details={"unlocked": unlocked},
        )

    # -- administration --------------------------------------------------------------------------

    async def set_role(self, user_id: str, role: Role, context: Context, *, actor_id: str | None) -> User:
        """Change a user's role; their tokens are invalidated (the new role applies at once)."""
        now = self.clock()
        async with unit_of_work(self.sessionmaker) as session:
            repo = IdentityRepository(session)
            user = await repo.user_by_id(user_id)
            if user is None:
                raise NotFound()
            previous = user.role
            await repo.update_user(user_id, now=now, bump_version=True, role=role.value)
            ended = await repo.revoke_user_sessions(user_id, now=now, reason="role_changed")
        await self.end_sessions(ended, user_wide=True)
        await self._record(
            AuditEvent.ROLE_CHANGED,
            context,
            actor_id=actor_id,
            target_id=user_id,
            details={"from": previous, "to": role.value},
        )
        return await self.me(user_id)

    async def set_active(self, user_id: str, active: bool, context: Context, *, actor_id: str | None) -> User:
        """Disable (every session ends at once) or re-enable an account."""
        now = self.clock()
        async with unit_of_work(self.sessionmaker) as session:
            repo = IdentityRepository(session)
            if not await repo.update_user(user_id, now=now, bump_version=True, is_active=active):
                raise NotFound()
            ended = [] if active else await repo.revoke_user_sessions(user_id, now=now, reason="disabled")
        await self.end_sessions(ended, user_wide=True)
        event = AuditEvent.USER_ENABLED if active else AuditEvent.USER_DISABLED
        await self._record(event, context, actor_id=actor_id, target_id=user_id)
        return await self.me(user_id)

    async def unlock(self, user_id: str, context: Context, *, actor_id: str | None) -> User:
        """Lift the account-wide lock of ``user_id`` (an administrator); audited either way."""
        user = await self.me(user_id)
        unlocked = await self.throttle.unlock(self.email_of(user))
        await self._record(
            AuditEvent.ACCOUNT_UNLOCKED,
            context,
            actor_id=actor_id,
            target_id=user_id,
            details={"was_locked": unlocked},
        )
        return user

    async def create_user(self, email: str, password: str, role: Role, context: Context) -> User:
        """Create an account directly (the CLI's create-admin); refuses a taken email."""
        self.check_policy(password, email)
        password_hash = await self.hashing.hash(password)
        now = self.clock()
        async with unit_of_work(self.sessionmaker) as session:
            repo = IdentityRepository(session)
            if await self._user_by_email(repo, email) is not None:
                raise Conflict("An account with this email already exists")
            user = await repo.add_user(
                self._new_user(
                    email,
                    password_hash=password_hash,
                    role=role.value,
                    is_active=True,
                    token_version=1,
                    created_at=now,
                    updated_at=now,
                )
            )
        await self._record(
            AuditEvent.USER_REGISTERED, context, target_id=user.id, details={"role": role.value}
        )
        return user

    async def end_all_sessions(self, context: Context, *, reason: str) -> int:
        """End every session of every user (incident response): refresh tokens stop at once and
        every access token is refused from the next request on, on every instance."""
        now = self.clock()
        async with unit_of_work(self.sessionmaker) as session:
            repo = IdentityRepository(session)
            ended = await repo.revoke_all_sessions(now=now, reason=reason)
            # The token version is read on every request: a second line that holds on every
            # instance even when the denylist cannot take this many entries or cannot be written.
            await repo.bump_all_token_versions(now=now)
        await self.end_sessions(ended, user_wide=True)
        await self._record(
            AuditEvent.SESSIONS_ENDED_ALL, context, details={"sessions": len(ended), "reason": reason}
        )
        return len(ended)

    async def purge(self, *, keep_revoked: timedelta = timedelta(days=1)) -> dict[str, int]:
        """Delete expired sessions and tokens (run on a schedule)."""
        now = self.clock()
        async with unit_of_work(self.sessionmaker) as session:
            return await IdentityRepository(session).purge(now=now, keep_revoked_until=now - keep_revoked)
