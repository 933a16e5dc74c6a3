# SPDX-License-Identifier: Apache-2.0
"""CSRF protection for cookie-authenticated requests (signed double-submit).

The token is ``nonce.mac`` with ``mac = HMAC-SHA256(CSRF_SECRET, "csrf" | session id | nonce)``. It
is set in a cookie JavaScript can read and must come back in the ``X-CSRF-Token`` header of every
state-changing request made with the auth cookies. A cross-site page can neither read the cookie
nor forge the MAC, and binding it to the login session means a token planted through a sibling
subdomain's cookie is useless for another session. Bearer requests need no CSRF token: browsers
never attach an Authorization header on their own. After a rotation of CSRF_SECRET, tokens signed
with the previous value still pass during the grace period (tried only when the current one fails).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from bastion.crypto.grace import Graced, in_grace

HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class CsrfTokens:
    def __init__(self, *, secret: bytes, previous: Graced[CsrfTokens] | None = None) -> None:
        if len(secret) < 16:
            raise ValueError("CSRF_SECRET must be at least 16 bytes")
        self._secret = secret
        self.previous = previous

    def _mac(self, session_id: str, nonce: str) -> str:
        message = f"csrf\x00{session_id}\x00{nonce}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def issue(self, session_id: str) -> str:
        nonce = secrets.token_urlsafe(18)
        return f"{nonce}.{self._mac(session_id, nonce)}"

    def valid(self, *, session_id: str, header: str | None, cookie: str | None) -> bool:
        """Header and cookie present, equal, and signed for this session (constant-time compares)."""
        if not header or not cookie or len(header) > 200:
            return False
        if not hmac.compare_digest(header.encode(), cookie.encode()):
            return False
        nonce, _, mac = header.partition(".")
        if not nonce or not mac:
            return False
        if hmac.compare_digest(mac.encode(), self._mac(session_id, nonce).encode()):
            return True
        older = in_grace(self.previous)
        return older is not None and hmac.compare_digest(mac.encode(), older._mac(session_id, nonce).encode())
