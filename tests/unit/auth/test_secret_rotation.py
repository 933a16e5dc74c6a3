# SPDX-License-Identifier: Apache-2.0
"""The pure parts of secret rotation: grace windows, version choice, verifiers with a previous value."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bastion.auth.csrf import CsrfTokens
from bastion.auth.keyring import KeyEntry, Keyring
from bastion.auth.tokens import SecretTokens
from bastion.crypto.grace import Graced, capped, in_grace
from bastion.rotation.service import rotatable_name
from bastion.rotation.store import RotationRefused, Version, choose
from bastion.settings import ConfigurationError, load_settings
from tests.support.clock import DateClock

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def Clock() -> DateClock:
    return DateClock(T0)


def test_graced_verifier_is_active_only_before_its_end() -> None:
    clock = Clock()
    graced = Graced("old", T0 + timedelta(hours=1), clock)
    assert in_grace(graced) == "old" and in_grace(None) is None
    clock.now = T0 + timedelta(hours=1)
    assert in_grace(graced) is None


def test_capped_never_extends_a_grace() -> None:
    limit = T0 + timedelta(days=7)
    assert capped(None, limit) == limit
    assert capped(T0, limit) == T0
    assert capped(T0 + timedelta(days=30), limit) == limit


def test_choose_current_and_previous() -> None:
    settings_value = Version("fp-1", "settings", T0, T0 + timedelta(days=7))
    rotated = Version("sv-2", "rotated", T0 + timedelta(days=1), None)
    expired = Version("sv-0", "rotated", T0 - timedelta(days=90), T0)
    chosen = choose("SESSION_SECRET", [settings_value, rotated, expired], T0 + timedelta(days=2))
    assert chosen is not None and chosen.current is rotated and chosen.previous is settings_value
    after = choose("SESSION_SECRET", [settings_value, rotated], T0 + timedelta(days=8))
    assert after is not None and after.previous is None
    assert choose("SESSION_SECRET", [], T0) is None
    # Superseded by a value this process does not have (a rolling deploy): it keeps its own.
    alone = choose("SESSION_SECRET", [settings_value], T0 + timedelta(days=30))
    assert alone is not None and alone.current is settings_value


def test_secret_tokens_try_the_previous_key_only_during_grace() -> None:
    clock = Clock()
    old = SecretTokens(key=b"o" * 32)
    tokens = SecretTokens(key=b"n" * 32, previous=Graced(old, T0 + timedelta(hours=1), clock))
    digests = list(tokens.digests("t", purpose="refresh"))
    assert digests == [tokens.digest("t", purpose="refresh"), old.digest("t", purpose="refresh")]
    clock.now = T0 + timedelta(hours=2)
    assert list(tokens.digests("t", purpose="refresh")) == [tokens.digest("t", purpose="refresh")]


def test_csrf_tokens_of_the_previous_secret_pass_during_grace() -> None:
    clock = Clock()
    old = CsrfTokens(secret=b"o" * 32)
    issued = old.issue("s1")
    csrf = CsrfTokens(secret=b"n" * 32, previous=Graced(old, T0 + timedelta(hours=1), clock))
    assert csrf.valid(session_id="s1", header=issued, cookie=issued)
    assert not csrf.valid(session_id="s2", header=issued, cookie=issued)
    clock.now = T0 + timedelta(hours=1)
    assert not csrf.valid(session_id="s1", header=issued, cookie=issued)


def test_keyring_honours_a_recorded_end_of_verification() -> None:
    old = KeyEntry("old", "HS256", b"o" * 32, b"o" * 32, T0, verify_until=T0 + timedelta(days=2))
    new = KeyEntry("new", "HS256", b"n" * 32, b"n" * 32, T0 + timedelta(days=1))
    ring = Keyring([old, new], algorithm="HS256", grace=timedelta(days=7))
    assert ring.end_of(new) is None
    assert ring.end_of(old) == T0 + timedelta(days=2)  # recorded by the rotation
    assert ring.verify_key("old", T0 + timedelta(days=2)) is None
    # Keys recorded before rotations recorded an end: the next newer key's age plus the grace.
    legacy = KeyEntry("legacy", "HS256", b"l" * 32, b"l" * 32, T0 - timedelta(days=1))
    legacy_ring = Keyring([legacy, new], algorithm="HS256", grace=timedelta(days=7))
    assert legacy_ring.end_of(legacy) == T0 + timedelta(days=8)


def test_rotatable_names(make_settings: Any) -> None:
    settings = make_settings()
    assert rotatable_name(" csrf_secret ", settings) == "CSRF_SECRET"
    with pytest.raises(RotationRefused, match="unknown secret"):
        rotatable_name("DATABASE_ENCRYPTION_KEY", settings)
    with pytest.raises(RotationRefused, match="JWT_ALGORITHM=HS256"):
        rotatable_name("SECRET_KEY", settings)
    assert rotatable_name("SECRET_KEY", make_settings(JWT_ALGORITHM="HS256")) == "SECRET_KEY"


@pytest.mark.parametrize(
    ("name", "value"), [("SECRET_ROTATION_DAYS", 0), ("SECRET_ROTATION_DAYS", 366), ("SECRET_GRACE_DAYS", 91)]
)
def test_rotation_settings_are_bounded(name: str, value: int, tmp_path: Any) -> None:
    with pytest.raises(ConfigurationError, match=name):
        load_settings(environment="test", var_dir=tmp_path, _env_file=None, **{name.lower(): value})


def test_a_superseded_key_never_signs_even_when_recorded_in_the_same_instant() -> None:
    superseded = KeyEntry("hs-zzz", "HS256", b"o" * 32, b"o" * 32, T0, verify_until=T0 + timedelta(days=7))
    rotated = KeyEntry("hs-aaa", "HS256", b"n" * 32, b"n" * 32, T0)
    assert Keyring([superseded, rotated], algorithm="HS256", grace=timedelta(days=7)).current is rotated
