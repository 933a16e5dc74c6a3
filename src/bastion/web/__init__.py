# SPDX-License-Identifier: Apache-2.0
"""Pure-ASGI middleware, one control per module, usable in any ASGI app."""

from __future__ import annotations

from bastion.web.body_limit import BodyLimit
from bastion.web.cors import CORS
from bastion.web.errors import UnhandledErrors
from bastion.web.forwarded import ProxyHeaders
from bastion.web.header_limits import HeaderLimits
from bastion.web.hosts import TrustedHosts
from bastion.web.https import HTTPSRedirect
from bastion.web.ratelimit import RateLimit
from bastion.web.request_context import RequestContext
from bastion.web.security_headers import SecurityHeaders
from bastion.web.startup_refusals import StartupRefusals

__all__ = [
    "CORS",
    "BodyLimit",
    "HTTPSRedirect",
    "HeaderLimits",
    "ProxyHeaders",
    "RateLimit",
    "RequestContext",
    "SecurityHeaders",
    "StartupRefusals",
    "TrustedHosts",
    "UnhandledErrors",
]
