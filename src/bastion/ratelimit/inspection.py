# SPDX-License-Identifier: Apache-2.0
"""What one identity has left under each policy, computed from its stored bucket (no I/O).

The storage's ``inspect`` reads an identity's buckets in one atomic call; this turns each into
what the response headers would say for that policy: requests admitted now (``remaining``),
seconds until the bucket is full again (``reset``), and seconds until the next request is
admitted (``retry_after``, 0 when one would be now; an escalated penalty counts). The policy's own
rate is used: an API key with its own allowance spends from the same bucket at its own rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bastion.ratelimit.algorithm import EPSILON
from bastion.ratelimit.policies import PolicyRule
from bastion.ratelimit.storage.base import BucketState


@dataclass(frozen=True, slots=True)
class PolicyState:
    policy: str
    limit: int
    period_seconds: float
    burst: int
    remaining: int
    reset_seconds: float
    retry_after_seconds: float
    tracked: bool  # False: the storage holds nothing, the bucket is full


def policy_state(rule: PolicyRule, bucket: BucketState | None, now: float) -> PolicyState:
    rate = rule.rate
    if bucket is None:
        return PolicyState(rule.name, rate.limit, rate.period, rate.burst, rate.burst, 0.0, 0.0, False)
    tat = max(bucket.tat, now)
    remaining = max(0, math.floor((now + rule.tolerance - tat) / rule.interval + EPSILON))
    # The next request is admitted once its arrival time fits within the burst tolerance.
    retry_after = 0.0 if remaining > 0 else max(0.0, tat + rule.interval - rule.tolerance - now)
    if bucket.penalty_until > now:
        remaining = 0
        retry_after = max(retry_after, bucket.penalty_until - now)
    reset = max(tat, bucket.penalty_until) - now
    return PolicyState(
        rule.name, rate.limit, rate.period, rate.burst, min(remaining, rate.burst), reset, retry_after, True
    )
