# SPDX-License-Identifier: Apache-2.0
"""The JWT attack catalogue: every forged, tampered or misused token gets 401 with the error shape."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from bastion.audit.events import AuditEvent
from bastion.settings import Settings
from tests.conftest import SettingsFactory
from tests.integration.auth.helpers import (
    assert_error,
    audit_events,
    bearer,
    identity_app,
    identity_settings,
    user_session,
)


def b64(data: bytes | str | dict[str, Any] | list[Any]) -> str:
    if isinstance(data, dict | list):
        data = json.dumps(data, separators=(",", ":"))
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def parts(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    header, payload, signature = token.split(".")
    pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
    return (
        json.loads(base64.urlsafe_b64decode(pad(header))),
        json.loads(base64.urlsafe_b64decode(pad(payload))),
        signature,
    )


def hs256(header: dict[str, Any], payload: dict[str, Any], secret: bytes) -> str:
    signing_input = f"{b64(header)}.{b64(payload)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


class CountingJwksServer:
    """A loopback server an attacker would point jku/x5u at; it must never be contacted."""

    def __init__(self, jwks: dict[str, Any]) -> None:
        hits = self.hits = [0]
        body = json.dumps(jwks).encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hits[0] += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> CountingJwksServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def attacker_jwks_server() -> Iterator[tuple[CountingJwksServer, ed25519.Ed25519PrivateKey]]:
    key = ed25519.Ed25519PrivateKey.generate()
    jwk = jwt.algorithms.OKPAlgorithm.to_jwk(key.public_key(), as_dict=True)
    with CountingJwksServer({"keys": [{**jwk, "kid": "attacker"}]}) as server:
        yield server, key


def real_key(settings: Settings) -> tuple[str, ed25519.Ed25519PrivateKey]:
    kid, pem = next(iter(json.loads(settings.secret("JWT_PRIVATE_KEYS") or "{}").items()))
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    return kid, key


def sign(key: Any, header: dict[str, Any], payload: dict[str, Any], alg: str = "EdDSA") -> str:
    extra = {k: v for k, v in header.items() if k != "alg"}
    return jwt.encode(payload, key, algorithm=alg, headers=extra)


async def test_forged_and_misused_tokens_are_refused(
    make_settings: SettingsFactory, attacker_jwks_server: tuple[CountingJwksServer, Any]
) -> None:
    jku_server, attacker_key = attacker_jwks_server
    settings = identity_settings(make_settings)
    kid, key = real_key(settings)
    async with identity_app(settings) as (app, http):
        _, tokens = await user_session(http, "victim@example.com")
        access = tokens["access_token"]
        header, payload, signature = parts(access)
        admin_payload = {**payload, "role": "admin"}
        h_b64, p_b64 = access.split(".")[:2]
        jwks = (await http.get("/.well-known/jwks.json")).json()
        public = key.public_key()
        public_pem = public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        public_raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        public_ssh = public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        public_der = public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        now = int(time.time())
        rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

        attacks: dict[str, str] = {}
        for alg in ("none", "None", "NONE", "nOnE"):
            none_header = {**header, "alg": alg}
            attacks[f"alg {alg}"] = f"{b64(none_header)}.{b64(admin_payload)}."
            attacks[f"alg {alg} keeping signature"] = f"{b64(none_header)}.{b64(payload)}.{signature}"
        attacks["signature stripped"] = f"{h_b64}.{p_b64}."
        attacks["two segments"] = f"{h_b64}.{p_b64}"
        attacks["tampered role"] = f"{h_b64}.{b64(admin_payload)}.{signature}"
        flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
        attacks["flipped signature byte"] = f"{h_b64}.{p_b64}.{flipped}"
        attacks["padded base64"] = f"{h_b64}==.{p_b64}.{signature}"
        standard = base64.b64encode(
            base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
        ).decode()
        attacks["standard base64 alphabet"] = f"{h_b64}.{p_b64}.{standard}"
        hs_header = {"alg": "HS256", "kid": kid, "typ": "at+jwt"}
        for name, secret in {
            "PEM": public_pem,
            "raw": public_raw,
            "OpenSSH": public_ssh,
            "DER": public_der,
            "JWK JSON": json.dumps(jwks["keys"][0]).encode(),
            "JWK x": jwks["keys"][0]["x"].encode(),
        }.items():
            attacks[f"HS256 with public key as {name}"] = hs256(hs_header, admin_payload, secret)
        attacks["RS256 with attacker key"] = sign(
            rsa_key, {"kid": kid, "typ": "at+jwt"}, admin_payload, "RS256"
        )
        for weak in (b"secret", b"changeme", b"bastion", b""):
            attacks[f"HS256 weak secret {weak!r}"] = hs256(hs_header, admin_payload, weak)
        for bad_kid in (
            "unknown",
            "../../../../dev/null",
            "/proc/self/environ",
            "x' UNION SELECT 'k'--",
            "k" * 10_000,
        ):
            attacks[f"kid {bad_kid[:20]}"] = sign(
                attacker_key, {"kid": bad_kid, "typ": "at+jwt"}, admin_payload
            )
        attacks["kid of 10kB signed HS"] = hs256({"alg": "HS256", "kid": "k" * 10_000}, admin_payload, b"")
        attacks["jku to attacker JWKS"] = sign(
            attacker_key, {"kid": "attacker", "jku": jku_server.url, "typ": "at+jwt"}, admin_payload
        )
        attacks["x5u to attacker"] = sign(
            attacker_key, {"kid": "attacker", "x5u": jku_server.url, "typ": "at+jwt"}, admin_payload
        )
        attacks["jku with real signature"] = sign(
            key, {"kid": kid, "jku": jku_server.url, "typ": "at+jwt"}, payload
        )
        attacker_jwk = jwt.algorithms.OKPAlgorithm.to_jwk(attacker_key.public_key(), as_dict=True)
        attacks["embedded jwk"] = sign(
            attacker_key, {"kid": kid, "jwk": attacker_jwk, "typ": "at+jwt"}, admin_payload
        )
        attacks["x5c header"] = sign(key, {"kid": kid, "x5c": ["MIIB"], "typ": "at+jwt"}, payload)
        attacks["crit header"] = sign(
            key, {"kid": kid, "crit": ["exp-ext"], "exp-ext": 1, "typ": "at+jwt"}, payload
        )
        good = {"kid": kid, "typ": "at+jwt"}
        attacks["expired"] = sign(
            key, good, {**payload, "exp": now - 31, "iat": now - 3600, "nbf": now - 3600}
        )
        attacks["nbf in future"] = sign(key, good, {**payload, "nbf": now + 120})
        attacks["iat in future"] = sign(key, good, {**payload, "iat": now + 120})
        attacks["other audience"] = sign(key, good, {**payload, "aud": "another-service"})
        attacks["audience list"] = sign(key, good, {**payload, "aud": ["another-service", payload["aud"]]})
        attacks["empty audience"] = sign(key, good, {**payload, "aud": ""})
        attacks["other issuer"] = sign(key, good, {**payload, "iss": "https://evil.example"})
        attacks["issuer prefix"] = sign(key, good, {**payload, "iss": payload["iss"][:-1]})
        attacks["issuer trailing slash"] = sign(key, good, {**payload, "iss": payload["iss"] + "/"})
        for claim in ("exp", "iat", "nbf", "iss", "aud", "sub", "jti", "typ", "ver", "sid", "role"):
            attacks[f"missing {claim}"] = sign(key, good, {k: v for k, v in payload.items() if k != claim})
        attacks["typ claim refresh"] = sign(key, good, {**payload, "typ": "refresh"})
        attacks["typ header JWT"] = sign(key, {"kid": kid, "typ": "JWT"}, payload)
        attacks["string exp"] = sign(key, good, {**payload, "exp": str(now + 600)})
        attacks["stale token version"] = sign(key, good, {**payload, "ver": payload["ver"] - 1})
        attacks["unknown subject"] = sign(key, good, {**payload, "sub": "0" * 32})
        attacks["refresh token as access token"] = tokens["refresh_token"]
        # Under the request-header cap, so the token verifier itself must refuse it.
        attacks["16 kB header"] = f"{b64({'alg': 'EdDSA', 'pad': 'x' * 16384})}.{p_b64}.{signature}"
        attacks["non-JSON header"] = f"{b64('not json')}.{p_b64}.{signature}"
        attacks["JSON array payload"] = f"{h_b64}.{b64([1, 2])}.{signature}"
        attacks["five segments (JWE)"] = f"{h_b64}.{p_b64}.{signature}.abc.def"
        attacks["invalid base64"] = f"{h_b64}.@@@.{signature}"

        before = len(await audit_events(app, AuditEvent.AUTH_FAILURE))
        for name, forged in attacks.items():
            response = await http.get("/api/auth/me", headers=bearer(forged))
            assert response.status_code == 401, (name, response.status_code, response.text)
            assert_error(response, 401)
        rejected = await audit_events(app, AuditEvent.AUTH_FAILURE)
        assert len(rejected) - before == len(attacks)
        assert all(access not in str(r.details) for r in rejected)
        assert jku_server.hits == [0]  # never fetched
        # A 64 kB token never reaches the verifier: the header limit answers 431 first.
        huge = f"{b64({'alg': 'EdDSA', 'pad': 'x' * 65536})}.{p_b64}.{signature}"
        assert_error(await http.get("/api/auth/me", headers=bearer(huge)), 431)
        # The genuine token still works: the suite refused the forgeries, not everything.
        assert (await http.get("/api/auth/me", headers=bearer(access))).status_code == 200


async def test_transport_rules(make_settings: SettingsFactory) -> None:
    async with identity_app(identity_settings(make_settings)) as (_app, http):
        _, tokens = await user_session(http, "transport@example.com")
        access = tokens["access_token"]
        for query in ("access_token", "token", "jwt"):
            assert_error(await http.get(f"/api/auth/me?{query}={access}"), 401)
        assert_error(await http.get("/api/auth/me", headers={"Authorization": f"Basic {access}"}), 401)
        duplicated = await http.get(
            "/api/auth/me",
            headers=[("Authorization", f"Bearer {access}"), ("Authorization", f"Bearer {access}")],
        )
        assert_error(duplicated, 401)
        # An access token is not a refresh token.
        assert_error(await http.post("/api/auth/refresh", json={"refresh_token": access[:200]}), 401)
        assert_error(await http.post("/api/auth/refresh", json={"refresh_token": "bst_" + "a" * 40}), 401)
        assert (
            await http.get("/api/auth/me", headers={"Authorization": f"bearer {access}"})
        ).status_code == 200


async def test_hs256_deployment_refuses_asymmetric_tokens_and_publishes_no_secret(
    make_settings: SettingsFactory,
) -> None:
    settings = identity_settings(make_settings, JWT_ALGORITHM="HS256")
    secret = settings.secret("SECRET_KEY") or ""
    async with identity_app(settings) as (_app, http):
        _, tokens = await user_session(http, "hs@example.com")
        header, payload, _ = parts(tokens["access_token"])
        assert header["alg"] == "HS256"
        assert (await http.get("/.well-known/jwks.json")).json() == {"keys": []}
        assert secret not in (await http.get("/.well-known/jwks.json")).text
        forged_rs = sign(
            rsa.generate_private_key(public_exponent=65537, key_size=2048),
            {"kid": header["kid"], "typ": "at+jwt"},
            payload,
            "RS256",
        )
        forged_ed = sign(
            ed25519.Ed25519PrivateKey.generate(), {"kid": header["kid"], "typ": "at+jwt"}, payload
        )
        for forged in (forged_rs, forged_ed, hs256({**header}, {**payload, "role": "admin"}, b"secret")):
            assert_error(await http.get("/api/auth/me", headers=bearer(forged)), 401)
        assert (await http.get("/api/auth/me", headers=bearer(tokens["access_token"]))).status_code == 200


async def test_rs256_deployment_signs_and_publishes_rsa_keys(make_settings: SettingsFactory) -> None:
    settings = identity_settings(make_settings, JWT_ALGORITHM="RS256")
    async with identity_app(settings) as (_app, http):
        _, tokens = await user_session(http, "rs@example.com")
        header, _, _ = parts(tokens["access_token"])
        [jwk] = (await http.get("/.well-known/jwks.json")).json()["keys"]
        assert header["alg"] == jwk["alg"] == "RS256" and jwk["kid"] == header["kid"]
        assert jwk["kty"] == "RSA" and not {"d", "p", "q", "dp", "dq", "qi"} & jwk.keys()
        public = jwt.algorithms.RSAAlgorithm.from_jwk(jwk)
        claims = jwt.decode(tokens["access_token"], public, algorithms=["RS256"], audience="bastion-api")  # type: ignore[arg-type]
        assert claims["typ"] == "access"
        pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)  # type: ignore[union-attr]
        confused = hs256({"alg": "HS256", "kid": header["kid"], "typ": "at+jwt"}, claims, pem)
        assert_error(await http.get("/api/auth/me", headers=bearer(confused)), 401)
