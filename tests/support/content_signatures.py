# SPDX-License-Identifier: Apache-2.0
"""Signed replies in tests: the published keys of an app, and a stream's part before its signature."""

from __future__ import annotations

import httpx
from cryptography.hazmat.primitives.asymmetric import ed25519

from bastion.crypto.signatures import content_keys_of, parse, split_stream


def signed_part(text: str) -> str:
    """The stream before its closing signature, which must be there and well-formed."""
    signed, value = split_stream(text.encode())
    parse(value)
    return signed.decode()


async def published(http: httpx.AsyncClient) -> dict[str, ed25519.Ed25519PublicKey]:
    """The content keys the app publishes in its JWKS, as a client would fetch them."""
    response = await http.get("/.well-known/jwks.json")
    assert response.status_code == 200, response.text
    return content_keys_of(response.json())
