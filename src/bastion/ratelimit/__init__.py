# SPDX-License-Identifier: Apache-2.0
"""Rate limiting and abuse control: GCRA buckets, escalation and blocks, leases and quotas.

Pure logic (``algorithm``, ``escalation``, ``policies``) knows nothing of HTTP or Redis; storages
(``storage/``) provide atomic primitives; ``service.RateLimiter`` ties them together with the
fail mode. The web adapters live in ``bastion.web.ratelimit`` and ``bastion.api.ratelimit``.
"""
