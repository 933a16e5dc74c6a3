# SPDX-License-Identifier: Apache-2.0
"""The in-process attempt store: one ``BoundedTable`` (the limiter's bound) for every kind of state.

Each entry knows when it has fully recovered (its failures expired, no delay or lock running, its
lock level forgotten). When the table is full only such entries make room; a newcomer that finds
none is refused (a pair delay of the table's retry time) rather than any running lock forgotten.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bastion.auth.throttle.base import LEVEL_TTL_SECONDS, Failure, ThrottleRules, Waits
from bastion.ratelimit.storage.bounded import BoundedTable, KeyBudget

DEFAULT_MAX_KEYS = 100_000


@dataclass(slots=True)
class _Pair:
    failures: int = 0
    wait_until: float = 0.0
    recovers: float = 0.0


@dataclass(slots=True)
class _Account:
    failures: int = 0
    clients: set[str] = field(default_factory=set)
    expires: float = 0.0
    level: int = 0
    level_expires: float = 0.0
    lock_until: float = 0.0
    recovers: float = 0.0


@dataclass(slots=True)
class _Client:
    failures: int = 0
    expires: float = 0.0
    lock_until: float = 0.0
    recovers: float = 0.0


Entry = _Pair | _Account | _Client


def _recovered_at(entry: Entry) -> float:
    return entry.recovers


class MemoryAttemptStore:
    """This process only; at most ``max_keys`` entries (pairs, accounts and clients together)."""

    def __init__(self, *, max_keys: int = DEFAULT_MAX_KEYS, sweep_batch: int = 256) -> None:
        budget = KeyBudget(max_keys)
        self.table: BoundedTable[Entry] = BoundedTable(budget, _recovered_at, sweep_batch=sweep_batch)

    def __len__(self) -> int:
        return len(self.table)

    def _get(self, key: str) -> Entry | None:
        return self.table.data.get(key)

    async def account_waits(self, account: str, client: str, now: float) -> Waits:
        pair = self._get(f"p:{account}|{client}")
        acct = self._get(f"a:{account}")
        locked = max(0.0, acct.lock_until - now) if isinstance(acct, _Account) else 0.0
        delayed = max(0.0, pair.wait_until - now) if isinstance(pair, _Pair) else 0.0
        if pair is None and not self.table.room(now):
            # Full of running state: refuse the newcomer rather than forget anyone's failures.
            delayed = self.table.retry_after(now)
        return Waits(locked, delayed)

    async def account_failure(self, account: str, client: str, now: float, rules: ThrottleRules) -> Failure:
        pair_key, acct_key = f"p:{account}|{client}", f"a:{account}"
        pair = self._get(pair_key)
        if not isinstance(pair, _Pair) or pair.recovers <= now:
            pair = _Pair()
        pair.failures += 1
        wait = rules.pair_wait(pair.failures)
        pair.wait_until = now + wait
        pair.recovers = now + wait + rules.window_seconds
        self.table.insert(pair_key, pair, now)

        acct = self._get(acct_key)
        if not isinstance(acct, _Account):
            acct = _Account()
        if acct.expires <= now:
            acct.failures, acct.clients = 0, set()
        if acct.level_expires <= now:
            acct.level = 0
        acct.failures += 1
        if len(acct.clients) < rules.lock_clients:  # only ever counted up to the threshold
            acct.clients.add(client)
        acct.expires = now + rules.account_window_seconds
        locked = 0.0
        if acct.failures >= rules.lock_failures and len(acct.clients) >= rules.lock_clients:
            acct.level += 1
            acct.level_expires = now + LEVEL_TTL_SECONDS
            locked = rules.lock_for(acct.level)
            acct.lock_until = now + locked
            acct.failures, acct.clients = 0, set()
        acct.recovers = max(acct.expires, acct.lock_until, acct.level_expires)
        self.table.insert(acct_key, acct, now)
        return Failure(wait, locked)

    async def account_success(self, account: str, client: str) -> None:
        self.table.discard(f"p:{account}|{client}")
        acct = self._get(f"a:{account}")
        if isinstance(acct, _Account):
            acct.failures, acct.clients, acct.expires = 0, set(), 0.0
            acct.recovers = max(acct.lock_until, acct.level_expires)

    async def unlock(self, account: str, now: float) -> bool:
        acct = self.table.discard(f"a:{account}")
        return isinstance(acct, _Account) and acct.lock_until > now

    async def client_wait(self, client: str, now: float) -> float:
        entry = self._get(f"c:{client}")
        return max(0.0, entry.lock_until - now) if isinstance(entry, _Client) else 0.0

    async def client_failure(self, client: str, now: float, rules: ThrottleRules) -> float:
        key = f"c:{client}"
        entry = self._get(key)
        if not isinstance(entry, _Client) or entry.expires <= now:
            entry = _Client(lock_until=entry.lock_until if isinstance(entry, _Client) else 0.0)
            entry.expires = now + rules.window_seconds
        entry.failures += 1
        locked = 0.0
        if entry.failures >= rules.client_max_failures:
            locked = rules.window_seconds
            entry.lock_until, entry.failures = now + locked, 0
        entry.recovers = max(entry.expires, entry.lock_until)
        self.table.insert(key, entry, now)
        return locked
