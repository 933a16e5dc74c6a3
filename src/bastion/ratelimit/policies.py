# SPDX-License-Identifier: Apache-2.0
"""The policy table: which rate applies to what, and whose identity it counts against.

| policy | default | counted per |
|---|---|---|
| global | RATE_LIMIT_PER_MINUTE/minute (RATE_LIMIT_GLOBAL_BURST) | API key, else user, else IP |
| register | 3/minute, burst 3 | IP |
| login | 5/minute, burst 3 | IP |
| refresh | 10/minute, burst 5 | IP |
| password_reset | 3/minute | IP |
| password_reset_email | 3/minute | email address (hashed) |
| password_change | 5/minute, burst 3 | user (else API key, else IP) |
| sessions_create | 20/hour | API key (else user, else IP) |
| messages | 30/minute, burst 10 | user (else API key, else IP) |
| messages_hourly | RATE_LIMIT_MESSAGES_PER_HOUR/hour | API key (else user, else IP) |
| messages_user_hourly | RATE_LIMIT_MESSAGES_PER_USER_HOUR/hour | user (all of a user's keys together) |
| voice | 100/hour (+ RATE_LIMIT_VOICE_CONCURRENT at once, see leases) | API key (else user, else IP) |
| journal_create | 20/minute, burst 5 | user (else API key, else IP) |
| journal_read | 60/minute, burst 10 | user (else API key, else IP) |
| export | 3/hour | user (a person's session only: the route is PERSON_ONLY) |

Every value comes from settings (``RATE_LIMIT_<POLICY>``), so operators can tune any of them.
"IP" is the canonical client address, and for an IPv6 client its RATE_LIMIT_IPV6_PREFIX network.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from bastion.addresses import DEFAULT_IPV6_PREFIX, counted_as
from bastion.auth.principal import Principal
from bastion.ratelimit.algorithm import Rate
from bastion.settings import Settings


class Policy(StrEnum):
    GLOBAL = "global"
    REGISTER = "register"
    LOGIN = "login"
    REFRESH = "refresh"
    PASSWORD_RESET = "password_reset"  # noqa: S105 - a policy name
    PASSWORD_RESET_EMAIL = "password_reset_email"  # noqa: S105 - a policy name
    PASSWORD_CHANGE = "password_change"  # noqa: S105 - a policy name
    SESSIONS_CREATE = "sessions_create"
    MESSAGES = "messages"
    MESSAGES_HOURLY = "messages_hourly"
    MESSAGES_USER_HOURLY = "messages_user_hourly"
    VOICE = "voice"
    JOURNAL_CREATE = "journal_create"
    JOURNAL_READ = "journal_read"
    EXPORT = "export"


class Scope(StrEnum):
    """Whose allowance a policy spends."""

    CLIENT = "client"  # API key, else user, else IP
    IP = "ip"
    USER = "user"  # user, else API key, else IP
    KEY = "key"  # API key, else user, else IP
    EMAIL = "email"  # an address the caller names (see ``email_identity``)
    GLOBAL = "global"  # one allowance shared by everyone


@dataclass(frozen=True, slots=True)
class PolicyRule:
    policy: Policy
    rate: Rate
    scope: Scope
    # Precomputed for the hot path (an enum's .value and a property cost more than the math).
    name: str = field(init=False)
    interval: float = field(init=False)
    tolerance: float = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", self.policy.value)
        object.__setattr__(self, "interval", self.rate.interval)
        object.__setattr__(self, "tolerance", self.rate.tolerance)


def ip_identity(ip: str | None, ipv6_prefix: int = DEFAULT_IPV6_PREFIX) -> str:
    """A client address as an identity: ``ip:203.0.113.7``, or ``ip:2001:db8:1:2::/64`` for IPv6.

    An IPv6 client is counted by its prefix network (RATE_LIMIT_IPV6_PREFIX): one holder of a /64
    gets one allowance, not one per address it can pick.
    """
    return f"ip:{counted_as(ip, ipv6_prefix) if ip else 'unknown'}"


def email_identity(email: str) -> str:
    """An email address as an identity: normalized and hashed, so no address is kept in Redis."""
    normalized = email.strip().lower().encode()
    return "email:" + hashlib.sha256(normalized).hexdigest()[:32]


def identity_for(
    scope: Scope, principal: Principal | None, ip: str | None, ipv6_prefix: int = DEFAULT_IPV6_PREFIX
) -> str:
    """The identity a policy of ``scope`` counts against for this caller."""
    if scope is Scope.GLOBAL:
        return "global"
    if principal is not None and scope is not Scope.IP:
        if scope is Scope.USER:
            if principal.user_id:
                return f"user:{principal.user_id}"
            if principal.api_key_id:
                return f"key:{principal.api_key_id}"
        else:
            if principal.api_key_id:
                return f"key:{principal.api_key_id}"
            if principal.user_id:
                return f"user:{principal.user_id}"
    return ip_identity(ip, ipv6_prefix)


def policy_table(settings: Settings) -> dict[Policy, PolicyRule]:
    """Every policy with the rates the settings give it."""
    per_minute = settings.rate_limit_per_minute
    per_hour = settings.rate_limit_messages_per_hour
    per_user_hour = settings.rate_limit_messages_per_user_hour or per_hour
    rates: Mapping[Policy, tuple[Rate, Scope]] = {
        Policy.GLOBAL: (
            Rate(per_minute, 60.0, settings.rate_limit_global_burst or per_minute),
            Scope.CLIENT,
        ),
        Policy.REGISTER: (Rate.parse(settings.rate_limit_register), Scope.IP),
        Policy.LOGIN: (Rate.parse(settings.rate_limit_login), Scope.IP),
        Policy.REFRESH: (Rate.parse(settings.rate_limit_refresh), Scope.IP),
        Policy.PASSWORD_RESET: (Rate.parse(settings.rate_limit_password_reset), Scope.IP),
        Policy.PASSWORD_RESET_EMAIL: (Rate.parse(settings.rate_limit_password_reset), Scope.EMAIL),
        Policy.PASSWORD_CHANGE: (Rate.parse(settings.rate_limit_password_change), Scope.USER),
        Policy.SESSIONS_CREATE: (Rate.parse(settings.rate_limit_sessions_create), Scope.KEY),
        Policy.MESSAGES: (Rate.parse(settings.rate_limit_messages), Scope.USER),
        Policy.MESSAGES_HOURLY: (Rate(per_hour, 3600.0, per_hour), Scope.KEY),
        Policy.MESSAGES_USER_HOURLY: (Rate(per_user_hour, 3600.0, per_user_hour), Scope.USER),
        Policy.VOICE: (Rate.parse(settings.rate_limit_voice), Scope.KEY),
        Policy.JOURNAL_CREATE: (Rate.parse(settings.rate_limit_journal_create), Scope.USER),
        Policy.JOURNAL_READ: (Rate.parse(settings.rate_limit_journal_read), Scope.USER),
        Policy.EXPORT: (Rate.parse(settings.rate_limit_export), Scope.USER),
    }
    return {policy: PolicyRule(policy, rate, scope) for policy, (rate, scope) in rates.items()}
