# SPDX-License-Identifier: Apache-2.0
"""`bastion serve --ssl-*`: TLS 1.2 and 1.3 only, ECDHE + AEAD suites only, mTLS options intact."""

from __future__ import annotations

import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.cli.tls import TLS12_CIPHERS
from tests.support.bastion_server import bastion_serve, read_response
from tests.support.pki import TestCA
from tests.support.tls_control import permissive_server

pytestmark = pytest.mark.e2e
AEAD_TLS13 = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}
ECDSA_AEAD = [c for c in TLS12_CIPHERS.split(":") if c.startswith("ECDHE-ECDSA")]
# Suites a weaker server would accept with an ECDSA certificate: CBC modes (with and without
# forward secrecy) and the legacy SHA-1 MAC ones.
WEAK_ECDSA = [
    "ECDHE-ECDSA-AES128-SHA",
    "ECDHE-ECDSA-AES256-SHA",
    "ECDHE-ECDSA-AES128-SHA256",
    "ECDHE-ECDSA-AES256-SHA384",
]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_port(pki: TestCA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    server = pki.issue("server", "localhost", dns=("localhost",))
    args = ["--ssl-certfile", str(server.cert), "--ssl-keyfile", str(server.key)]
    with bastion_serve(tmp_path_factory.mktemp("tls"), args=args) as port:
        yield port


def client_context(pki: TestCA, version: ssl.TLSVersion, ciphers: str | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(pki.files.cert)
    if version in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
        # Let this client really offer the old protocol, so the refusal is the server's.
        context.set_ciphers("ALL:@SECLEVEL=0")
    context.minimum_version = version
    context.maximum_version = version
    if ciphers is not None:
        context.set_ciphers(ciphers)
    return context


def negotiate(port: int, context: ssl.SSLContext) -> tuple[str | None, str]:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        cipher = tls.cipher()
        assert cipher is not None
        return tls.version(), cipher[0]


def handshake(port: int, context: ssl.SSLContext) -> tuple[str | None, str]:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        cipher = tls.cipher()
        assert cipher is not None
        tls.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        response = read_response(tls)  # type: ignore[arg-type]
        assert response.status == 200
        assert response.header("strict-transport-security") == "max-age=31536000; includeSubDomains; preload"
        return tls.version(), cipher[0]


def test_tls13_uses_aead_suites(pki: TestCA, tls_port: int) -> None:
    version, cipher = handshake(tls_port, client_context(pki, ssl.TLSVersion.TLSv1_3))
    assert version == "TLSv1.3"
    assert cipher in AEAD_TLS13


def test_tls12_negotiates_ecdhe_aead_by_default(pki: TestCA, tls_port: int) -> None:
    version, cipher = handshake(tls_port, client_context(pki, ssl.TLSVersion.TLSv1_2))
    assert version == "TLSv1.2"
    assert cipher in TLS12_CIPHERS.split(":")


@pytest.mark.parametrize("cipher", ECDSA_AEAD)
def test_each_allowed_tls12_suite_works(pki: TestCA, tls_port: int, cipher: str) -> None:
    assert handshake(tls_port, client_context(pki, ssl.TLSVersion.TLSv1_2, cipher)) == ("TLSv1.2", cipher)


@pytest.mark.parametrize("cipher", WEAK_ECDSA)
def test_non_aead_tls12_suites_are_refused(pki: TestCA, tls_port: int, cipher: str) -> None:
    context = client_context(pki, ssl.TLSVersion.TLSv1_2, cipher)
    with permissive_server(pki) as control:
        assert negotiate(control, context) == ("TLSv1.2", cipher)
    with pytest.raises(ssl.SSLError):
        negotiate(tls_port, context)


def test_with_an_rsa_certificate_only_ecdhe_aead_suites_are_accepted(pki: TestCA, tmp_path: Path) -> None:
    server = pki.issue("rsa-server", "localhost", dns=("localhost",), rsa_key=True)
    args = ["--ssl-certfile", str(server.cert), "--ssl-keyfile", str(server.key)]
    accepted = [c for c in TLS12_CIPHERS.split(":") if c.startswith("ECDHE-RSA")]
    # Static RSA key exchange (no forward secrecy) and CBC suites. (Finite-field DHE is absent from
    # the list as well; the control server has no DH parameters to show it could be negotiated.)
    refused = ["AES128-GCM-SHA256", "AES256-GCM-SHA384", "AES128-SHA"]
    refused += ["ECDHE-RSA-AES128-SHA", "ECDHE-RSA-AES256-SHA384"]
    with permissive_server(pki, rsa_key=True) as control:
        for cipher in refused:
            assert negotiate(control, client_context(pki, ssl.TLSVersion.TLSv1_2, cipher))[1] == cipher
    with bastion_serve(tmp_path, args=args) as port:
        for cipher in accepted:
            assert handshake(port, client_context(pki, ssl.TLSVersion.TLSv1_2, cipher)) == ("TLSv1.2", cipher)
        for cipher in refused:
            with pytest.raises(ssl.SSLError):
                negotiate(port, client_context(pki, ssl.TLSVersion.TLSv1_2, cipher))


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_tls10_and_tls11_are_refused(pki: TestCA, tls_port: int, version: ssl.TLSVersion) -> None:
    context = client_context(pki, version)
    with permissive_server(pki) as control:
        assert negotiate(control, context)[0] == ("TLSv1" if version is ssl.TLSVersion.TLSv1 else "TLSv1.1")
    with pytest.raises(ssl.SSLError):
        negotiate(tls_port, context)


def test_client_certificates_still_work(pki: TestCA, tmp_path: Path) -> None:
    server = pki.issue("mtls-server", "localhost", dns=("localhost",))
    client = pki.issue("client", "service-a", client=True)
    args = [
        "--ssl-certfile",
        str(server.cert),
        "--ssl-keyfile",
        str(server.key),
        "--ssl-ca-certs",
        str(pki.files.cert),
        "--ssl-cert-reqs",
        "required",
    ]
    with bastion_serve(tmp_path, args=args) as port:
        without = client_context(pki, ssl.TLSVersion.TLSv1_2)
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            negotiate(port, without)
        with_cert = client_context(pki, ssl.TLSVersion.TLSv1_2)
        with_cert.load_cert_chain(client.cert, client.key)
        version, cipher = handshake(port, with_cert)
    assert version == "TLSv1.2"
    assert cipher in ECDSA_AEAD


def s_client(port: int, *args: str, request: str = "") -> subprocess.CompletedProcess[str]:
    """The openssl command-line client: it can offer one key-exchange group, Python's client cannot."""
    return subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost", *args],
        input=request,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.fixture(scope="module")
def rsa_tls_port(pki: TestCA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    # An RSA certificate: with an ECDSA one, a TLS 1.2 client offering only X25519 could not
    # accept the certificate's curve, whatever the server's key exchange groups.
    server = pki.issue("rsa-groups", "localhost", dns=("localhost",), rsa_key=True)
    args = ["--ssl-certfile", str(server.cert), "--ssl-keyfile", str(server.key)]
    with bastion_serve(tmp_path_factory.mktemp("tls-rsa"), args=args) as port:
        yield port


def connected(result: subprocess.CompletedProcess[str]) -> bool:
    # The handshake's outcome (the control server hangs up at once, so the exit code says less).
    return "Cipher is " in result.stdout and "Cipher is (NONE)" not in result.stdout


@pytest.mark.parametrize("version", ["-tls1_2", "-tls1_3"])
@pytest.mark.parametrize(
    ("group", "accepted"),
    [("X25519", True), ("P-256", True), ("P-384", True), ("X448", False), ("P-521", False)],
)
def test_key_exchange_groups_are_the_intermediate_profile(
    pki: TestCA, rsa_tls_port: int, version: str, group: str, accepted: bool
) -> None:
    if not accepted:  # the client really offers the group: a stock server takes it
        with permissive_server(pki, rsa_key=True) as control:
            assert connected(s_client(control, version, "-groups", group))
    result = s_client(rsa_tls_port, version, "-groups", group)
    assert connected(result) == accepted, (group, version, result.stdout[-400:], result.stderr[-400:])


@pytest.mark.parametrize("version", ["-tls1_2", "-tls1_3"])
def test_no_session_tickets(pki: TestCA, tls_port: int, version: str) -> None:
    if version == "-tls1_2":  # the client shows a ticket it is given (TLS 1.2 sends it in the handshake)
        with permissive_server(pki) as control:
            assert "TLS session ticket" in s_client(control, version).stdout
    # A whole request and answer, so TLS 1.3's post-handshake tickets would have arrived too.
    request = "GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    result = s_client(tls_port, version, "-ign_eof", request=request)
    assert connected(result) and "HTTP/1.1 200" in result.stdout, result.stderr[-400:]
    assert "TLS session ticket" not in result.stdout and "New Session Ticket" not in result.stdout
