# SPDX-License-Identifier: Apache-2.0
"""The TLS policy of `bastion serve` (and of the nginx config it writes).

TLS 1.2 and 1.3 only. For TLS 1.2, ECDHE key exchange (forward secrecy) with AEAD ciphers
(AES-GCM, ChaCha20-Poly1305) only; every TLS 1.3 suite is already AEAD with ephemeral keys.
Key exchange groups as Mozilla's intermediate profile lists them (X25519, P-256, P-384), and no
session tickets: a ticket key that lives as long as the process would undo forward secrecy.
"""

from __future__ import annotations

import ctypes
import ssl
from collections.abc import Callable
from functools import cache
from typing import Any

GROUPS = "X25519:prime256v1:secp384r1"
_SSL_CTRL_SET_GROUPS_LIST = 92  # OpenSSL's SSL_CTX_set1_groups_list is this SSL_CTX_ctrl

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
    # No session tickets: not in TLS 1.2 (stateless resumption under a long-lived key) and none
    # issued in TLS 1.3.
    context.options |= ssl.OP_NO_TICKET
    context.num_tickets = 0
    set_groups(context, GROUPS)
    return context


@cache
def _libssl() -> ctypes.CDLL:
    """The libssl this process's ``ssl`` module loaded (read from the process's own mappings)."""
    with open("/proc/self/maps", encoding="ascii", errors="replace") as maps:
        paths = {line.split()[-1] for line in maps if "/libssl." in line}
    if len(paths) != 1:
        raise OSError("cannot tell which libssl the ssl module uses")
    library = ctypes.CDLL(paths.pop())
    library.SSL_CTX_ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
    library.SSL_CTX_ctrl.restype = ctypes.c_long
    library.SSL_CTX_get_options.argtypes = [ctypes.c_void_p]
    library.SSL_CTX_get_options.restype = ctypes.c_uint64
    return library


def set_groups(context: ssl.SSLContext, groups: str) -> None:
    """Restrict key exchange to ``groups`` (colon-separated OpenSSL names).

    Python's ``ssl`` module (before 3.14) can set one ECDH curve, not a list, so this calls
    OpenSSL's SSL_CTX_set1_groups_list on the context's SSL_CTX. The pointer follows the object
    header in CPython's SSLContext; it is checked against the context's options before use, and
    anything unexpected raises instead of guessing.
    """
    library = _libssl()
    pointer = ctypes.c_void_p.from_address(id(context) + object.__basicsize__).value
    if not pointer or library.SSL_CTX_get_options(pointer) != int(context.options):
        raise OSError("this Python's SSLContext layout is not the expected one")
    if library.SSL_CTX_ctrl(pointer, _SSL_CTRL_SET_GROUPS_LIST, 0, ctypes.c_char_p(groups.encode())) != 1:
        raise ssl.SSLError(f"OpenSSL refused the key exchange groups {groups!r}")


def hardened_ssl_context(config: Any, default_factory: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
    """uvicorn ``ssl_context_factory``: uvicorn's own context (certificate, key, client CA and
    cert_reqs for mTLS) with the protocol floor and cipher list applied on top.

    Module-level so it pickles into worker processes.
    """
    return harden(default_factory())
