# SPDX-License-Identifier: Apache-2.0
"""How long tests let an app's startup take (asgi-lifespan's own default is 5 s).

A startup that connects to databases, Redis and a thread pool can take longer than 5 s on a
loaded two-core machine; a generous bound keeps that from failing tests that are not about it.
"""

from __future__ import annotations

STARTUP_SECONDS = 60.0
