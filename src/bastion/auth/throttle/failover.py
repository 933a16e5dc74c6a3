# SPDX-License-Identifier: Apache-2.0
"""The shared attempt store under the one fail mode (``bastion.failover``).

Closed (production): a password check whose throttle state cannot be read or counted is refused
with ``ServiceUnavailable`` (503), never run unthrottled. Open (development): the in-process
store counts instead (this instance's attempts only), the failure logged as an error and counted.
"""

from __future__ import annotations

from bastion.auth.throttle.base import AttemptStore, Failure, ThrottleRules, Waits
from bastion.failover import Failover


class FailoverAttemptStore:
    """An ``AttemptStore`` that runs every step on ``failover``'s current store."""

    def __init__(self, failover: Failover[AttemptStore]) -> None:
        self.failover = failover

    async def account_waits(self, account: str, client: str, now: float) -> Waits:
        return await self.failover.run(lambda s: s.account_waits(account, client, now))

    async def account_failure(self, account: str, client: str, now: float, rules: ThrottleRules) -> Failure:
        return await self.failover.run(lambda s: s.account_failure(account, client, now, rules))

    async def account_success(self, account: str, client: str) -> None:
        await self.failover.run(lambda s: s.account_success(account, client))

    async def unlock(self, account: str, now: float) -> bool:
        return await self.failover.run(lambda s: s.unlock(account, now))

    async def client_wait(self, client: str, now: float) -> float:
        return await self.failover.run(lambda s: s.client_wait(client, now))

    async def client_failure(self, client: str, now: float, rules: ThrottleRules) -> float:
        return await self.failover.run(lambda s: s.client_failure(client, now, rules))
