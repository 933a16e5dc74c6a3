# SPDX-License-Identifier: Apache-2.0
"""`bastion serve` with mutual TLS: a listed client certificate is a service; no certificate, no TLS."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.bastion_server import bastion_serve
from tests.support.pki import Issued, TestCA

pytestmark = pytest.mark.e2e
# Seen from far away (through the loopback proxy), so the readiness probe needs a service identity.
FAR = {"X-Forwarded-For": "203.0.113.9"}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA(tmp_path_factory.mktemp("mtls-pki"))


@pytest.fixture(scope="module")
def server(pki: TestCA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    cert = pki.issue("server", "localhost", dns=("localhost",))
    args = [
        "--ssl-certfile",
        str(cert.cert),
        "--ssl-keyfile",
        str(cert.key),
        "--ssl-ca-certs",
        str(pki.files.cert),
        "--ssl-cert-reqs",
        "required",
    ]
    env = {
        "MTLS_SERVICE_IDENTITIES": "CN=billing=>billing",
        "MTLS_CLIENT_HEADER": "X-Client-Cert-Subject",
        "TRUSTED_PROXIES": "127.0.0.1",
        "ALLOWED_HOSTS": "localhost,127.0.0.1",
    }
    with bastion_serve(tmp_path_factory.mktemp("mtls"), env=env, args=[*args, "--migrate"]) as port:
        yield port


def context(pki: TestCA, client: Issued | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.files.cert))
    if client is not None:
        ctx.load_cert_chain(client.cert, client.key)
    return ctx


def get(port: int, ctx: ssl.SSLContext, path: str, headers: dict[str, str]) -> httpx.Response:
    with httpx.Client(verify=ctx, base_url=f"https://localhost:{port}", timeout=10) as http:
        return http.get(path, headers=headers)


def test_a_listed_certificate_is_a_service_identity(pki: TestCA, server: int) -> None:
    billing = pki.issue("billing", "billing", client=True)
    response = get(server, context(pki, billing), "/health/ready", FAR)
    assert response.status_code in (200, 503), response.text
    assert response.json()["checks"]["database"] == "ok"


def test_an_unlisted_certificate_is_nobody_and_cannot_borrow_a_header(pki: TestCA, server: int) -> None:
    stranger = pki.issue("stranger", "billing-evil", client=True)
    ctx = context(pki, stranger)
    assert get(server, ctx, "/health/ready", FAR).status_code == 403
    # The certificate is what counts on a direct TLS connection, even from a trusted proxy address.
    claimed = get(server, ctx, "/health/ready", {**FAR, "X-Client-Cert-Subject": "CN=billing"})
    assert claimed.status_code == 403
    assert get(server, ctx, "/health", FAR).status_code == 200


def test_no_client_certificate_no_connection(pki: TestCA, server: int) -> None:
    with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
        get(server, context(pki, None), "/health", {})


def test_a_certificate_from_another_ca_is_refused(pki: TestCA, server: int, tmp_path: Path) -> None:
    other = TestCA(tmp_path, name="Other CA")
    impostor = other.issue("billing", "billing", client=True)
    with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
        get(server, context(pki, impostor), "/health", {})
