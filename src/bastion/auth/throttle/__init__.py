# SPDX-License-Identifier: Apache-2.0
"""Brute-force protection for every password check: per (account, client) delays, per-client
refusals, and an account lock only when failures come from many clients. See ``docs/identity.md``."""

from __future__ import annotations

from bastion.auth.throttle.base import (
    AttemptStore,
    Failure,
    Refusal,
    ThrottleRules,
    Waits,
    account_key,
    client_key,
)
from bastion.auth.throttle.failover import FailoverAttemptStore
from bastion.auth.throttle.memory import MemoryAttemptStore
from bastion.auth.throttle.redis import RedisAttemptStore
from bastion.auth.throttle.service import FailureOutcome, PasswordThrottle, Verdict, attempt_store_for

__all__ = [
    "AttemptStore",
    "FailoverAttemptStore",
    "Failure",
    "FailureOutcome",
    "MemoryAttemptStore",
    "PasswordThrottle",
    "RedisAttemptStore",
    "Refusal",
    "ThrottleRules",
    "Verdict",
    "Waits",
    "account_key",
    "attempt_store_for",
    "client_key",
]
