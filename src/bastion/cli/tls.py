# SPDX-License-Identifier: Apache-2.0
"""The TLS policy of `bastion serve` (and of the nginx config it writes).

TLS 1.2 and 1.3 only. For TLS 1.2, ECDHE key exchange (forward secrecy) with AEAD ciphers
(AES-GCM, ChaCha20-Poly1305) only; every TLS 1.3 suite is already AEAD with ephemeral keys.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any

TLS12_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    )
)


def harden(context: ssl.SSLContext) -> ssl.SSLContext:
    """Restrict ``context`` to the policy above; returns it for chaining."""
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.maximum_version = ssl.TLSVersion.TLSv1_3
    context.set_ciphers(TLS12_CIPHERS)
    # No TLS compression (CRIME), no client-initiated renegotiation (a CPU DoS lever), fresh
    # ECDH keys per handshake.
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION | ssl.OP_SINGLE_ECDH_USE
    return context


def hardened_ssl_context(config: Any, default_factory: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
    """uvicorn ``ssl_context_factory``: uvicorn's own context (certificate, key, client CA and
    cert_reqs for mTLS) with the protocol floor and cipher list applied on top.

    Module-level so it pickles into worker processes.
    """
    return harden(default_factory())
