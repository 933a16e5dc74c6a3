# SPDX-License-Identifier: Apache-2.0
"""The ASGI TLS extension for uvicorn: the verified client certificate in ``scope["extensions"]["tls"]``.

uvicorn (0.54 here) does not populate the ASGI TLS extension: the proposals to do so (Kludex/uvicorn
#1119, #2586, #3132, #3133) were not merged, so an application cannot see the client certificate
of a mutual-TLS connection. uvicorn accepts an HTTP protocol class (``--http module:Class`` /
``uvicorn.run(http=...)``); these subclasses of its own protocols read the peer certificate once
per connection, when the handshake is done (``connection_made``), and add the extension
(spec version 0.2: ``client_cert_chain`` as PEM, ``client_cert_name`` as an RFC 4514 DN,
``tls_version``, ``cipher_suite``) to every request's scope on that connection.

Only a certificate that passed verification reaches here: with ``--ssl-cert-reqs required`` or
``optional`` a certificate that fails verification aborts the handshake. Applications read the
standard extension, so they keep working unchanged on a server that fills it in natively.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from bastion.auth.mtls import certificate_subject
from bastion.web.header_deadline import DeadlineHttpToolsProtocol

# TLS version numbers as the ASGI TLS extension spells them.
_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


def tls_extension(ssl_object: ssl.SSLObject) -> dict[str, Any]:
    """The ``tls`` extension for a finished handshake."""
    der = ssl_object.getpeercert(binary_form=True)
    chain: list[str] = []
    name: str | None = None
    if der:
        chain = [ssl.DER_cert_to_PEM_cert(der)]
        try:
            name = certificate_subject(der)
        except ValueError:  # unparsable subject: the certificate identifies no one
            name = None
    cipher = ssl_object.cipher()
    return {
        "server_cert": None,
        "client_cert_chain": chain,
        "client_cert_name": name,
        "client_cert_error": None,
        "tls_version": _VERSIONS.get(ssl_object.version() or ""),
        "cipher_suite": None,
        "cipher_name": cipher[0] if cipher else None,
    }


def with_tls(app: ASGIApp, extension: dict[str, Any]) -> ASGIApp:
    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            extensions = scope.get("extensions") or {}
            scope["extensions"] = {**extensions, "tls": extension}
        await app(scope, receive, send)

    return wrapped


def _install(protocol: Any, transport: asyncio.Transport) -> None:
    ssl_object = transport.get_extra_info("ssl_object")
    if isinstance(ssl_object, ssl.SSLObject):
        protocol.app = with_tls(protocol.app, tls_extension(ssl_object))


class TLSH11Protocol(H11Protocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        _install(self, transport)


class TLSHttpToolsProtocol(DeadlineHttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        _install(self, transport)


# What `bastion serve` passes to uvicorn when it serves TLS.
PROTOCOL = "bastion.web.tls_extension:TLSHttpToolsProtocol"
