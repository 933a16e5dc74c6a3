# SPDX-License-Identifier: Apache-2.0
"""Service identity from a verified client certificate: an authentication policy of its own.

Runs outside the API-key and token layers, so a service that proved itself with a certificate is
the caller (first identity wins). The subject comes from the ASGI TLS extension
(``scope["extensions"]["tls"]["client_cert_name"]``, filled by the server: see
``bastion.web.tls_extension``) when Bastion terminates TLS itself, or, behind a TLS-terminating
proxy, from MTLS_CLIENT_HEADER, believed only when the TCP peer is one of TRUSTED_PROXIES (the
peer ProxyHeaders recorded in ``scope["state"]["peer"]``). From anyone else the header is ignored:
a client cannot claim a certificate it did not present. A subject not on MTLS_SERVICE_IDENTITIES
yields no identity (audited).
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from bastion.audit.events import AuditEvent, Result
from bastion.auth.mtls import ServiceIdentities, service_principal
from bastion.observability.logging import get_logger
from bastion.web.proxies import is_trusted, parse_networks


class ClientCertificates:
    def __init__(
        self,
        app: ASGIApp,
        *,
        identities: str | None = None,
        client_header: str | None = None,
        trusted_proxies: list[str] | None = None,
    ) -> None:
        self.app = app
        self.identities = ServiceIdentities.parse(identities)
        self.header = client_header.lower().encode("latin-1") if client_header else None
        self.trusted = parse_networks(trusted_proxies or [])
        self.log = get_logger("bastion.auth.mtls")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.identities:
            await self._identify(scope)
        await self.app(scope, receive, send)

    def _subject(self, scope: Scope) -> tuple[str | None, str]:
        tls = (scope.get("extensions") or {}).get("tls")
        if isinstance(tls, dict):
            name = tls.get("client_cert_name")
            return (name if isinstance(name, str) else None), "certificate"
        if self.header is None:
            return None, "none"
        values = [value for key, value in scope.get("headers", ()) if key == self.header]
        if not values:
            return None, "none"
        state = scope.get("state") or {}
        peer = state.get("peer") or scope.get("client")
        if not self.trusted or not is_trusted(peer[0] if peer else None, self.trusted):
            return None, "untrusted_header"
        if len(values) != 1:
            return None, "duplicate_header"
        return values[0].decode("latin-1"), "proxy"

    async def _identify(self, scope: Scope) -> None:
        state: dict[str, Any] = dict(scope.get("state") or {})
        scope["state"] = state
        if state.get("principal") is not None:
            return
        subject, source = self._subject(scope)
        if subject is None:
            if source in ("untrusted_header", "duplicate_header"):
                await self._refuse(scope, source)
            return
        name = self.identities.service_for(subject)
        if name is None:
            await self._refuse(scope, "unknown_subject")
            return
        state["principal"] = service_principal(name)

    async def _refuse(self, scope: Scope, reason: str) -> None:
        identity = getattr(getattr(scope.get("app"), "state", None), "identity", None)
        if identity is None:
            return
        state = scope["state"]
        try:
            await identity.audit.record(
                AuditEvent.AUTH_FAILURE,
                result=Result.FAILURE,
                ip=state.get("client_ip"),
                request_id=state.get("request_id"),
                details={
                    "method": "client_certificate",
                    "reason": reason,
                    "path": scope.get("path", "")[:200],
                },
            )
        except Exception as exc:  # the refusal stands even if the audit store is down
            self.log.warning("audit_failed", error=type(exc).__name__)
