# SPDX-License-Identifier: Apache-2.0
"""The X-Content-Signature format, byte for byte, as docs/signatures.md tells third parties."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from bastion.crypto import material, signatures
from bastion.crypto.signatures import SignatureInvalid

# A fixed key and reply: Ed25519 is deterministic, so the whole header is known in advance.
SEED = bytes(range(32))
KID = "content-0123456789abcdef"
BODY = '{"content":"Breathe — slowly 🌿"}'.encode()
RID = "3b2a1c0d4e5f60718293a4b5c6d7e8f9"


def test_signing_input_and_header_are_exactly_as_documented() -> None:
    key = ed25519.Ed25519PrivateKey.from_private_bytes(SEED)
    digest = hashlib.sha256(BODY).hexdigest()
    signed = signatures.sign(key, kid=KID, digest=digest, request_id=RID, time=1767225600)
    assert (
        signed.signing_input()
        == (f"bastion-content-signature/v1\nsha256={digest}\nrid={RID}\nkid={KID}\nt=1767225600").encode()
    )
    sig = base64.urlsafe_b64encode(signed.signature).rstrip(b"=").decode()
    assert len(sig) == 86 and len(signed.signature) == 64
    assert signed.header_value() == f"v1;kid={KID};t=1767225600;rid={RID};sha256={digest};sig={sig}"
    # A verifier with nothing but `cryptography` and the public key (docs/signatures.md).
    key.public_key().verify(signed.signature, signed.signing_input())
    assert signatures.parse(signed.header_value()) == signed
    # Spaces after the separators, as a proxy might fold them, change nothing.
    assert signatures.parse(signed.header_value().replace(";", "; ")) == signed


def test_the_jwk_of_a_content_key_is_read_and_token_keys_are_left_out() -> None:
    key = ed25519.Ed25519PrivateKey.from_private_bytes(SEED)
    x = base64.urlsafe_b64encode(key.public_key().public_bytes_raw()).rstrip(b"=").decode()
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": x, "alg": "EdDSA", "use": "sig"}
    jwks = {
        "keys": [
            {**jwk, "kid": KID},
            {**jwk, "kid": "a1b2c3d4"},  # a token key, same material: not a content key
            {**jwk, "kid": "content-ffffffffffffffff", "use": "enc"},
            {**jwk, "kid": "content-eeeeeeeeeeeeeeee", "x": "!!"},
            "not a key",
        ]
    }
    assert signatures.content_keys_of(json.loads(json.dumps(jwks))).keys() == {KID}
    with pytest.raises(ValueError):
        signatures.content_keys_of({"keys": "nope"})


@pytest.mark.parametrize(
    "value",
    [
        "",
        "v2;kid=content-0123456789abcdef;t=1;rid=r;sha256=" + "0" * 64 + ";sig=" + "A" * 86,
        "v1;kid=content-0123456789abcdef;t=1;rid=r;sha256=" + "0" * 64,
        "v1;kid=content-0123456789abcdef;t=1;t=2;rid=r;sha256=" + "0" * 64 + ";sig=" + "A" * 86,
        "v1;kid=a1b2c3d4;t=1;rid=r;sha256=" + "0" * 64 + ";sig=" + "A" * 86,
        "v1;kid=content-0123456789abcdef;t=-1;rid=r;sha256=" + "0" * 64 + ";sig=" + "A" * 86,
        "v1;kid=content-0123456789abcdef;t=1;rid=r\nx;sha256=" + "0" * 64 + ";sig=" + "A" * 86,
        "v1;kid=content-0123456789abcdef;t=1;rid=r;sha256=" + "0" * 63 + ";sig=" + "A" * 86,
        "v1;kid=content-0123456789abcdef;t=1;rid=r;sha256=" + "0" * 64 + ";sig=" + "A" * 85,
        "v1;kid=content-0123456789abcdef;t=1;rid=r;sha256=" + "0" * 64 + ";sig=" + "A" * 86 + ";x=1",
    ],
)
def test_anything_but_the_v1_form_is_malformed(value: str) -> None:
    with pytest.raises(SignatureInvalid) as caught:
        signatures.parse(value)
    assert caught.value.reason == SignatureInvalid.MALFORMED


def test_token_key_ids_may_not_take_the_content_form() -> None:
    keyset = json.loads(material.signing_keyset("EdDSA"))
    pem = next(iter(keyset.values()))
    with pytest.raises(ValueError, match="reserved"):
        material.parse_signing_keyset(json.dumps({"content-0123456789abcdef": pem}), "EdDSA")
