# SPDX-License-Identifier: Apache-2.0
"""Key material, static keys, service identity parsing and version counters, without HTTP."""

from __future__ import annotations

import pytest

from bastion.auth import api_keys
from bastion.auth.mtls import ServiceIdentities, parse_dn, service_principal
from bastion.auth.permissions import Permission, granted, scope_permissions
from bastion.auth.principal import AuthMethod, Principal, Role
from bastion.invalidation import MemoryVersionCounter, Watched


def test_generated_keys_parse_and_are_unique() -> None:
    keys = {api_keys.generate().secret for _ in range(100)}
    assert len(keys) == 100
    for key in keys:
        key_id = api_keys.parse_managed(key)
        assert key_id is not None and key.startswith(f"bst_{key_id}_")
    rotated = api_keys.generate("0123456789abcdef")
    assert rotated.key_id == "0123456789abcdef" and api_keys.parse_managed(rotated.secret) == rotated.key_id


@pytest.mark.parametrize(
    "value",
    [
        "",
        "bst_",
        "bst_0123456789abcdef",
        "bst_0123456789ABCDEF_" + "a" * 43,
        "bst_0123456789abcdef_" + "a" * 42,
        "bst_0123456789abcdef_" + "a" * 44,
        "xst_0123456789abcdef_" + "a" * 43,
        "bst_0123456789abcdef_" + "é" * 43,
    ],
)
def test_malformed_managed_keys_have_no_id(value: str) -> None:
    assert api_keys.parse_managed(value) is None


def test_the_hasher_separates_purposes_and_needs_a_real_pepper() -> None:
    hasher = api_keys.KeyHasher(b"p" * 32)
    key = api_keys.generate().secret
    assert hasher.managed(key) != hasher.static(key).hex() != hasher.cache_key(key).hex()
    assert hasher.managed(key) != api_keys.KeyHasher(b"q" * 32).managed(key)
    assert api_keys.matches(hasher.managed(key), hasher.managed(key))
    assert not api_keys.matches(None, hasher.managed(key))
    with pytest.raises(ValueError):
        api_keys.KeyHasher(b"short")


def test_static_keys_refuse_unprintable_configuration() -> None:
    hasher = api_keys.KeyHasher(b"p" * 32)
    with pytest.raises(ValueError):
        api_keys.StaticKeys(hasher, app_keys=["bad\x01key"], ml_keys=[])
    empty = api_keys.StaticKeys(hasher, app_keys=[], ml_keys=[])
    assert not empty and empty.match("anything") is None
    assert api_keys.split_static(" a, ,b ,") == ["a", "b"]


def test_key_permissions_need_both_scope_and_role() -> None:
    user_key = Principal("k", Role.USER, AuthMethod.API_KEY, scopes=scope_permissions({"chat"}))
    assert granted(user_key, Permission.CHAT_USE)
    assert not granted(user_key, Permission.JOURNAL_USE)
    service_key = Principal("k", Role.SERVICE, AuthMethod.API_KEY, scopes=scope_permissions({"chat"}))
    assert not granted(service_key, Permission.CHAT_USE)
    assert scope_permissions({"admin", "unknown"}) == {
        "users:read",
        "users:manage",
        "keys:manage",
        "keys:own",
        "blocklist:manage",
        "audit:read",
        "alerts:manage",
        "chat_sessions:manage",
        "rate_limits:manage",
        "secrets:read",
    }


def test_distinguished_names_compare_as_attribute_sets() -> None:
    assert parse_dn("CN=billing,O=Example") == parse_dn("o=Example, cn=billing")
    assert parse_dn(r"CN=a\,b,O=x") == frozenset({("CN", "a,b"), ("O", "x")})
    assert parse_dn(r"CN=\41bc") == frozenset({("CN", "Abc")})
    assert parse_dn("CN=a+UID=7") == frozenset({("CN", "a"), ("UID", "7")})
    assert parse_dn("2.5.4.3=x") == frozenset({("2.5.4.3", "x")})
    for bad in ("", "CN", "=x", "CN=a\\", "C N=x", "CN=\x00", "x" * 2000):
        with pytest.raises(ValueError):
            parse_dn(bad)


def test_service_identities_allow_list() -> None:
    identities = ServiceIdentities.parse(" CN=billing,O=Example=>billing ; CN=a=b=>odd ;")
    assert identities.service_for("O=Example,CN=billing") == "billing"
    assert identities.service_for("CN=a=b") == "odd"
    assert identities.service_for("CN=billing") is None
    assert identities.service_for("garbage") is None
    assert not ServiceIdentities.parse(None)
    for bad in ("CN=x", "CN=x=>", "CN=x=>Bad Name", "=>svc"):
        with pytest.raises(ValueError):
            ServiceIdentities.parse(bad)
    principal = service_principal("billing")
    assert principal.role is Role.SERVICE and principal.method is AuthMethod.MTLS
    assert granted(principal, Permission.HEALTH_READ) and not granted(principal, Permission.CHAT_USE)


async def test_watched_versions_are_read_at_most_once_per_interval() -> None:
    now = [0.0]
    counter = MemoryVersionCounter()
    watched = Watched(counter, interval=0.25, monotonic=lambda: now[0])
    assert await watched.changed()  # first look
    assert not await watched.changed()
    await counter.bump()  # another instance
    assert not await watched.changed()  # not looked at again yet
    now[0] += 0.3
    assert await watched.changed()
    assert not await watched.changed()
    await watched.bump()  # this instance
    now[0] += 0.3
    assert not await watched.changed()


def test_production_refuses_weak_static_keys_without_echoing_them(monkeypatch: pytest.MonkeyPatch) -> None:
    from bastion.crypto import material
    from bastion.settings import ConfigurationError, Settings
    from tests.unit.test_settings import strong_production_env

    strong_production_env(monkeypatch)
    monkeypatch.setenv("API_KEYS", f"{material.token()},app-key-1")
    monkeypatch.setenv("ML_API_KEYS", "changeme-ml-key-000000000000000000")
    with pytest.raises(ConfigurationError) as caught:
        Settings(_env_file=None)  # type: ignore[call-arg]
    problems = caught.value.problems
    assert any(problem.startswith("API_KEYS key #2 is too weak") for problem in problems)
    assert any(problem.startswith("ML_API_KEYS key #1 is too weak") for problem in problems)
    assert not any(problem.startswith("API_KEYS key #1") for problem in problems)
    assert "app-key-1" not in caught.value.render() and "changeme-ml" not in caught.value.render()
    monkeypatch.setenv("API_KEYS", material.token())
    monkeypatch.setenv("ML_API_KEYS", material.token())
    assert Settings(_env_file=None).api_keys is not None  # type: ignore[call-arg]


def test_service_identities_are_checked_when_settings_load() -> None:
    from bastion.settings import ConfigurationError, load_settings

    with pytest.raises(ConfigurationError, match="MTLS_SERVICE_IDENTITIES"):
        load_settings(_env_file=None, environment="test", mtls_service_identities="CN=x")
