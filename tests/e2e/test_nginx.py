# SPDX-License-Identifier: Apache-2.0
"""The config `bastion nginx-config` writes, run by the real nginx in front of a real Bastion."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.cli.tls import TLS12_CIPHERS
from tests.support.bastion_server import bastion_command, connect, exchange, read_response
from tests.support.pki import TestCA
from tests.support.servers import free_port, wait_for_port
from tests.support.tls_control import permissive_server

pytestmark = pytest.mark.e2e
DOMAIN = "bastion.test"
HSTS = "max-age=31536000; includeSubDomains; preload"


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if found is None:
        raise RuntimeError("nginx is not installed: run scripts/provision.sh (make test does)")
    return found


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@contextlib.contextmanager
def bastion_on_socket(tmp_path: Path, sock: Path) -> Iterator[None]:
    env = {
        **os.environ,
        "ENVIRONMENT": "test",
        "VAR_DIR": str(tmp_path / "var"),
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'bastion.db'}",
        "ALLOWED_HOSTS": DOMAIN,
        "TRUSTED_PROXIES": "127.0.0.1",
        "FORCE_HTTPS": "true",
        "MAX_REQUEST_BODY_BYTES": "4096",
        "LOG_LEVEL": "WARNING",
    }
    with (tmp_path / "bastion.log").open("wb") as log:
        process = subprocess.Popen(
            [*bastion_command(), "serve", "--uds", str(sock)], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                if process.poll() is not None:
                    raise RuntimeError("bastion exited before listening")
                with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as probe:
                    probe.connect(str(sock))
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError("bastion did not listen on its unix socket")
                time.sleep(0.05)
            yield
        finally:
            _stop(process)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    root = tmp_path_factory.mktemp("nginx")
    pki = TestCA(root)
    server = pki.issue("server", DOMAIN, dns=(DOMAIN,))
    sock = root / "bastion.sock"
    http_port, https_port = free_port(), free_port()
    (root / "temp").mkdir()
    conf = root / "nginx.conf"
    args = [
        "nginx-config",
        "--domain",
        DOMAIN,
        "--upstream",
        f"unix:{sock}",
        "--ssl-certificate",
        str(server.cert),
        "--ssl-certificate-key",
        str(server.key),
        "--ssl-trusted-certificate",
        str(pki.files.cert),
        "--listen",
        "127.0.0.1",
        "--http-port",
        str(http_port),
        "--https-port",
        str(https_port),
        "--pid-file",
        str(root / "nginx.pid"),
        "--error-log",
        str(root / "error.log"),
        "--access-log",
        str(root / "access.log"),
        "--temp-dir",
        str(root / "temp"),
        "--output",
        str(conf),
    ]
    if os.geteuid() == 0:
        args += ["--user", "root"]  # the workers must reach the root-owned test socket
    env = {
        **os.environ,
        "ENVIRONMENT": "test",
        "VAR_DIR": str(root / "var"),
        "MAX_REQUEST_BODY_BYTES": "4096",
    }
    subprocess.run([*bastion_command(), *args], env=env, check=True, capture_output=True)
    nginx = nginx_binary()
    checked = subprocess.run(
        [nginx, "-t", "-c", str(conf), "-e", str(root / "error.log")],
        capture_output=True,
        text=True,
        check=False,
    )
    with bastion_on_socket(root, sock):
        process = subprocess.Popen(
            [nginx, "-c", str(conf), "-e", str(root / "error.log"), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_port(https_port, process=process)
            wait_for_port(http_port, process=process)
            yield {
                "http": http_port,
                "https": https_port,
                "pki": pki,
                "conf": conf.read_text(),
                "check": checked,
            }
        finally:
            _stop(process)


def tls_client(pki: TestCA, version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(pki.files.cert)
    if version is not None:
        if version is ssl.TLSVersion.TLSv1_1:
            context.set_ciphers("ALL:@SECLEVEL=0")
        context.minimum_version = version
        context.maximum_version = version
    return context


def test_nginx_accepts_the_generated_config(stack: dict[str, object]) -> None:
    check = stack["check"]
    assert isinstance(check, subprocess.CompletedProcess)
    assert check.returncode == 0, check.stderr
    assert "test is successful" in check.stderr
    conf = str(stack["conf"])
    for directive in (
        "ssl_protocols TLSv1.2 TLSv1.3;",
        "ssl_session_tickets off;",
        "ssl_stapling on;",
        "server_tokens off;",
        "client_max_body_size 4096;",
        "proxy_set_header X-Forwarded-Proto $scheme;",
    ):
        assert directive in conf


def test_http_redirects_to_https_on_the_fixed_name(stack: dict[str, object]) -> None:
    port = int(str(stack["http"]))
    response = exchange(
        port, f"GET /health?x=1 HTTP/1.1\r\nHost: {DOMAIN}\r\nConnection: close\r\n\r\n".encode()
    )
    assert response.status == 308
    assert response.header("location") == f"https://{DOMAIN}:{stack['https']}/health?x=1"
    # Another name gets no answer at all (nginx's 444 closes the connection).
    with connect(port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n")
        assert sock.recv(1024) == b""


def test_https_reaches_bastion_with_hsts_and_its_headers(stack: dict[str, object]) -> None:
    pki = stack["pki"]
    assert isinstance(pki, TestCA)
    response = exchange(
        int(str(stack["https"])),
        f"GET /health HTTP/1.1\r\nHost: {DOMAIN}\r\nConnection: close\r\n\r\n".encode(),
        tls=tls_client(pki),
        server_hostname=DOMAIN,
    )
    # 200, not a redirect loop: Bastion believed X-Forwarded-Proto from nginx on its unix socket.
    assert response.status == 200, response
    assert json.loads(response.body) == {"status": "ok"}
    assert response.all("strict-transport-security") == [HSTS]
    assert response.header("x-frame-options") == "DENY"
    assert response.header("content-security-policy") is not None
    assert response.header("x-request-id")
    assert response.header("server") == "nginx"  # server_tokens off: no version


def test_nginx_refuses_bodies_over_the_limit_with_the_error_shape(stack: dict[str, object]) -> None:
    pki = stack["pki"]
    assert isinstance(pki, TestCA)
    response = exchange(
        int(str(stack["https"])),
        f"POST /health HTTP/1.1\r\nHost: {DOMAIN}\r\nContent-Type: application/json\r\n"
        f"Content-Length: 100000\r\nConnection: close\r\n\r\n".encode(),
        tls=tls_client(pki),
        server_hostname=DOMAIN,
    )
    assert response.status == 413
    assert response.header("content-type") == "application/json; charset=utf-8"
    assert json.loads(response.body)["detail"]["error"] == "payload_too_large"
    assert response.all("strict-transport-security") == [HSTS]


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1:DeprecationWarning")
def test_tls_policy_at_nginx(stack: dict[str, object]) -> None:
    pki = stack["pki"]
    assert isinstance(pki, TestCA)
    port = int(str(stack["https"]))
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        with connect(port, tls=tls_client(pki, version), server_hostname=DOMAIN) as tls:
            assert isinstance(tls, ssl.SSLSocket)
            cipher = tls.cipher()
            assert cipher is not None
            if version is ssl.TLSVersion.TLSv1_2:
                assert cipher[0] in TLS12_CIPHERS.split(":")
            tls.sendall(f"GET /health HTTP/1.1\r\nHost: {DOMAIN}\r\nConnection: close\r\n\r\n".encode())
            assert read_response(tls).status == 200
    old = tls_client(pki, ssl.TLSVersion.TLSv1_1)
    with (
        permissive_server(pki) as control,
        connect(control, tls=old, server_hostname="localhost") as accepted,
    ):
        assert isinstance(accepted, ssl.SSLSocket) and accepted.version() == "TLSv1.1"
    with pytest.raises(ssl.SSLError):
        connect(port, tls=old, server_hostname=DOMAIN)
    # A name nginx does not serve: the handshake itself is rejected.
    with pytest.raises(ssl.SSLError):
        connect(port, tls=tls_client(pki), server_hostname="evil.example")
