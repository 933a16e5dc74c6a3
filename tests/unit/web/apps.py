# SPDX-License-Identifier: Apache-2.0
"""Tiny ASGI apps to put a single middleware in front of, and a client for them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import httpx
from starlette.types import ASGIApp, Receive, Scope, Send


def responder(
    *,
    status: int = 200,
    headers: Sequence[tuple[bytes, bytes]] = (),
    content_type: bytes = b"application/json",
    body: bytes | None = None,
) -> ASGIApp:
    """An app that reads the whole body, then answers with what it saw (or ``body``)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        received = b""
        disconnected = False
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                disconnected = True
                break
            received += message.get("body", b"")
            if not message.get("more_body", False):
                break
        state = scope.get("state") or {}
        seen: dict[str, Any] = {
            "scheme": scope.get("scheme"),
            "client": list(scope["client"]) if scope.get("client") else None,
            "client_ip": state.get("client_ip"),
            "peer": list(state["peer"]) if state.get("peer") else None,
            "body_bytes": len(received),
            "disconnected": disconnected,
            "csp_nonce": state.get("csp_nonce"),
        }
        payload = body if body is not None else json.dumps(seen).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", content_type), *headers],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    return app


def client_for(
    app: ASGIApp, *, base_url: str = "https://testserver", client: tuple[str, int] = ("198.51.100.7", 4321)
) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=client)
    return httpx.AsyncClient(transport=transport, base_url=base_url)
