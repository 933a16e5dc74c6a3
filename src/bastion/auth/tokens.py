# SPDX-License-Identifier: Apache-2.0
"""Access tokens (JWT) and opaque secret tokens (refresh, password reset).

Verification follows RFC 8725: the algorithm comes from the settings, never from the token; the
``kid`` only selects from the in-memory keyring; ``jku``/``x5u``/``jwk``/``x5c`` headers are refused
outright (never fetched, never trusted); any ``crit`` header is refused (Bastion implements no JWT
extensions); every claim Bastion relies on is required; the type is checked in the header
(``at+jwt``, RFC 9068) and in the ``typ`` claim. Time checks use the injected clock.

Refresh and reset tokens are not JWTs: they are 256-bit random strings stored only as
HMAC-SHA256 under SESSION_SECRET, with the purpose in the MAC input, so one kind can never be
presented as the other. After a rotation of SESSION_SECRET a token stored under the previous
value is still found during the grace period (``digests`` yields the current digest first).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt

from bastion.auth.keyring import Keyring
from bastion.crypto.grace import Graced, in_grace
from bastion.crypto.randomness import new_id
from bastion.crypto.signatures import is_content_kid
from bastion.db.types import utcnow

ACCESS_TYPE = "access"
ACCESS_HEADER_TYPE = "at+jwt"
MAX_TOKEN_LENGTH = 4096  # characters; anything longer is refused before any parsing
LEEWAY_SECONDS = 30
REQUIRED_CLAIMS = ("exp", "iat", "nbf", "iss", "aud", "sub", "jti", "typ", "role", "ver", "sid")
# Headers that would let the token choose its own verification key: refused, never followed.
FORBIDDEN_HEADERS = frozenset({"jku", "x5u", "jwk", "x5c", "x5t", "x5t#S256", "crit"})


class TokenInvalid(Exception):
    """Why a token was refused (the reason is for the audit log; clients see a generic 401)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True, slots=True)
class AccessClaims:
    subject: str
    role: str
    scopes: frozenset[str]
    jti: str
    session_id: str
    token_version: int
    issued_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    jti: str
    expires_at: datetime


def _timestamp(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TokenInvalid(f"{name}_not_integer")
    return value


class AccessTokens:
    """Issues and verifies access tokens against a keyring (``keyring()`` returns the current one)."""

    def __init__(
        self,
        *,
        keyring: Callable[[], Keyring],
        issuer: str,
        audience: str,
        lifetime: timedelta,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.keyring = keyring
        self.issuer = issuer
        self.audience = audience
        self.lifetime = lifetime
        self.clock = clock

    def issue(
        self, *, subject: str, role: str, scopes: frozenset[str], token_version: int, session_id: str
    ) -> IssuedToken:
        """A signed access token for ``subject`` with the newest key."""
        ring = self.keyring()
        key = ring.current
        now = self.clock()
        expires = now + self.lifetime
        jti = new_id()
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "iat": int(now.timestamp()),
            "nbf": int(now.timestamp()),
            "exp": int(expires.timestamp()),
            "jti": jti,
            "typ": ACCESS_TYPE,
            "role": role,
            "scopes": sorted(scopes),
            "ver": token_version,
            "sid": session_id,
        }
        token = jwt.encode(
            claims,
            key.signing_key,
            algorithm=ring.algorithm,
            headers={"kid": key.kid, "typ": ACCESS_HEADER_TYPE},
        )
        return IssuedToken(token=token, jti=jti, expires_at=expires)

    def verify(self, token: str) -> AccessClaims:
        """The claims of a valid access token, or ``TokenInvalid`` with the reason."""
        if not token or len(token) > MAX_TOKEN_LENGTH or not token.isascii():
            raise TokenInvalid("malformed")
        if token.count(".") != 2:
            raise TokenInvalid("malformed")
        ring = self.keyring()
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenInvalid("malformed") from exc
        if FORBIDDEN_HEADERS & header.keys():
            raise TokenInvalid("forbidden_header")
        if header.get("alg") != ring.algorithm:
            raise TokenInvalid("algorithm")
        if header.get("typ") != ACCESS_HEADER_TYPE:
            raise TokenInvalid("token_type")
        kid = header.get("kid")
        if not isinstance(kid, str) or len(kid) > 64:
            raise TokenInvalid("unknown_key")
        if is_content_kid(kid):
            # A key that signs model replies is published in the same JWKS but never vouches for
            # an identity, even if one were ever loaded into this keyring.
            raise TokenInvalid("key_purpose")
        now = self.clock()
        key = ring.verify_key(kid, now)
        if key is None:
            raise TokenInvalid("unknown_key")
        try:
            payload = jwt.decode(
                token,
                key,
                algorithms=[ring.algorithm],
                audience=self.audience,
                issuer=self.issuer,
                options={
                    "require": list(REQUIRED_CLAIMS),
                    "strict_aud": True,
                    # Times are checked below against the injected clock.
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.MissingRequiredClaimError as exc:
            raise TokenInvalid("missing_claim") from exc
        except jwt.InvalidAudienceError as exc:
            raise TokenInvalid("audience") from exc
        except jwt.InvalidIssuerError as exc:
            raise TokenInvalid("issuer") from exc
        except jwt.InvalidSignatureError as exc:
            raise TokenInvalid("signature") from exc
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise TokenInvalid("malformed") from exc
        return self._claims(payload, now)

    def _claims(self, payload: dict[str, Any], now: datetime) -> AccessClaims:
        # Exact comparisons on top of PyJWT's (defence against partial-match bugs, CVE-2024-53861).
        if payload.get("iss") != self.issuer:
            raise TokenInvalid("issuer")
        if payload.get("aud") != self.audience:
            raise TokenInvalid("audience")
        if payload.get("typ") != ACCESS_TYPE:
            raise TokenInvalid("token_type")
        exp = _timestamp(payload["exp"], "exp")
        iat = _timestamp(payload["iat"], "iat")
        nbf = _timestamp(payload["nbf"], "nbf")
        current = now.timestamp()
        if current >= exp + LEEWAY_SECONDS:
            raise TokenInvalid("expired")
        if nbf > current + LEEWAY_SECONDS or iat > current + LEEWAY_SECONDS:
            raise TokenInvalid("not_yet_valid")
        sub, jti, sid, role = payload["sub"], payload["jti"], payload["sid"], payload["role"]
        scopes = payload.get("scopes", [])
        version = payload["ver"]
        if not all(isinstance(v, str) and 0 < len(v) <= 64 for v in (sub, jti, sid, role)):
            raise TokenInvalid("malformed")
        if isinstance(version, bool) or not isinstance(version, int):
            raise TokenInvalid("malformed")
        if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            raise TokenInvalid("malformed")
        return AccessClaims(
            subject=sub,
            role=role,
            scopes=frozenset(scopes),
            jti=jti,
            session_id=sid,
            token_version=version,
            issued_at=datetime.fromtimestamp(iat, now.tzinfo),
            expires_at=datetime.fromtimestamp(exp, now.tzinfo),
        )


class SecretTokens:
    """Opaque one-purpose tokens: generated here, stored only as their keyed hash."""

    def __init__(self, *, key: bytes, previous: Graced[SecretTokens] | None = None) -> None:
        if len(key) < 16:
            raise ValueError("the token hashing key must be at least 16 bytes")
        self._key = key
        self.previous = previous

    @staticmethod
    def generate() -> str:
        return secrets.token_urlsafe(32)

    def digest(self, token: str, *, purpose: str) -> str:
        """HMAC-SHA256(key, purpose + token), hex: what the database stores and looks up."""
        return hmac.new(self._key, f"{purpose}\x00{token}".encode(), hashlib.sha256).hexdigest()

    def digests(self, token: str, *, purpose: str) -> Iterator[str]:
        """The digest under the current key, then, during a rotation's grace, under the previous one."""
        yield self.digest(token, purpose=purpose)
        older = in_grace(self.previous)
        if older is not None:
            yield older.digest(token, purpose=purpose)
