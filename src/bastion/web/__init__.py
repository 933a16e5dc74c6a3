# SPDX-License-Identifier: Apache-2.0
"""Pure-ASGI middleware, one control per module, usable in any ASGI app."""

from __future__ import annotations

from bastion.web.errors import UnhandledErrors
from bastion.web.ratelimit import RateLimit
from bastion.web.request_context import RequestContext

__all__ = ["RateLimit", "RequestContext", "UnhandledErrors"]
