# SPDX-License-Identifier: Apache-2.0
"""What requests use of the versioned secrets: hashers and signers built once per (re)load.

Each is built from the current value, with the previous value's twin attached as a ``Graced``
verifier: the current one is tried first, exactly as cheaply as before rotation existed, and the
previous one only when it fails and only while its grace runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from bastion.auth.api_keys import KeyHasher
from bastion.auth.csrf import CsrfTokens
from bastion.auth.tokens import SecretTokens
from bastion.crypto.grace import Graced
from bastion.rotation.store import Versions, settings_versions
from bastion.settings import Settings

T = TypeVar("T")


def _build(
    versions: Versions, make: Callable[[bytes, Graced[T] | None], T], clock: Callable[[], datetime]
) -> T:
    previous: Graced[T] | None = None
    old = versions.previous
    if old is not None and old.value is not None and old.verify_until is not None:
        previous = Graced(make(old.value, None), old.verify_until, clock)
    if versions.current.value is None:  # pragma: no cover - load_versions always opens it
        raise ValueError(f"{versions.name} has no current value")
    return make(versions.current.value, previous)


@dataclass(frozen=True, slots=True)
class SecretSet:
    """SESSION_SECRET, CSRF_SECRET and API_KEY_SALT as the request path uses them."""

    session_tokens: SecretTokens
    csrf: CsrfTokens
    key_hasher: KeyHasher
    versions: dict[str, Versions]

    @classmethod
    def of(cls, versions: dict[str, Versions], clock: Callable[[], datetime]) -> SecretSet:
        return cls(
            session_tokens=_build(
                versions["SESSION_SECRET"], lambda key, old: SecretTokens(key=key, previous=old), clock
            ),
            csrf=_build(
                versions["CSRF_SECRET"], lambda key, old: CsrfTokens(secret=key, previous=old), clock
            ),
            key_hasher=_build(versions["API_KEY_SALT"], lambda key, old: KeyHasher(key, previous=old), clock),
            versions=versions,
        )

    @classmethod
    def from_settings(cls, settings: Settings, clock: Callable[[], datetime]) -> SecretSet:
        """The settings values alone (no database: before migrations, or in tests of one part)."""
        return cls.of(settings_versions(settings, clock()), clock)
