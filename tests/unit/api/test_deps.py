# SPDX-License-Identifier: Apache-2.0
"""Who is asking: the audit context and the client address routes read from the request."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from starlette.requests import Request

from bastion.api.deps import context_of, request_client_ip


def _request(state: dict[str, Any] | None = None, forwarded: str | None = None) -> Request:
    settings = SimpleNamespace(trusted_proxies=["10.0.0.0/8"])
    scope: dict[str, Any] = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "headers": [(b"x-forwarded-for", forwarded.encode())] if forwarded else [],
        "client": ("10.1.2.3", 4711),
        "app": SimpleNamespace(state=SimpleNamespace(settings=settings)),
    }
    if state is not None:
        scope["state"] = state
    return Request(scope)


def test_the_address_the_proxy_layer_resolved_is_the_one_used() -> None:
    request = _request({"client_ip": "203.0.113.9", "request_id": "r-1"}, forwarded="198.51.100.7")
    assert request_client_ip(request) == "203.0.113.9"
    context = context_of(request)
    assert (context.ip, context.request_id) == ("203.0.113.9", "r-1")


def test_without_the_proxy_layer_the_address_is_resolved_the_same_way() -> None:
    # The peer is a trusted proxy: the last address it forwarded is the client's.
    assert request_client_ip(_request(forwarded="198.51.100.7, 10.9.9.9")) == "198.51.100.7"
    context = context_of(_request({"request_id": 5}))
    assert (context.ip, context.request_id) == ("10.1.2.3", None)
