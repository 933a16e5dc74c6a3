# SPDX-License-Identifier: Apache-2.0
"""Hostile HTTP sent as raw bytes to a real `bastion serve` (uvicorn) process."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.bastion_server import (
    RawResponse,
    bastion_serve,
    connect,
    exchange,
    read_response,
    uvicorn_serve,
)

pytestmark = pytest.mark.e2e
LIMIT = 4096


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    env = {
        "MAX_REQUEST_BODY_BYTES": str(LIMIT),
        "MAX_JSON_BODY_BYTES": str(LIMIT),
        "REQUEST_BODY_TIMEOUT_SECONDS": "1",
        "ALLOWED_HOSTS": "localhost,127.0.0.1",
    }
    with uvicorn_serve(tmp_path_factory.mktemp("raw"), env=env) as serving:
        yield serving


def assert_shape(response: RawResponse, status: int, code: str) -> None:
    assert response.status == status, response
    assert response.header("content-type") == "application/json; charset=utf-8"
    detail = json.loads(response.body)["detail"]
    assert detail["error"] == code
    assert detail["request_id"] == response.header("x-request-id")
    assert response.header("x-content-type-options") == "nosniff"
    assert (
        response.header(
            "content-security-policy",
        )
        is not None
    )
    assert response.header("server") is None


def test_chunked_body_over_the_cap_gets_413(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"x" * 1024
        with contextlib.suppress(OSError):  # the server may stop reading once it has answered
            for _ in range(64):
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sock.sendall(b"0\r\n\r\n")
        response = read_response(sock)
    assert_shape(response, 413, "payload_too_large")


def test_declared_length_over_the_cap_is_refused_before_the_body_is_sent(port: int) -> None:
    response = exchange(
        port,
        b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Content-Length: 10000000\r\n\r\n",
    )
    assert_shape(response, 413, "payload_too_large")


def test_content_length_larger_than_the_body_times_out_with_408(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b'Content-Length: 1000\r\n\r\n{"a":'
        )
        response = read_response(sock)
    assert_shape(response, 408, "request_timeout")


def test_trickled_body_gets_408(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n"
        )
        with contextlib.suppress(OSError):
            for _ in range(20):
                sock.sendall(b"x")
                time.sleep(0.1)  # pacing the client, not measuring the server
        response = read_response(sock)
    assert_shape(response, 408, "request_timeout")


def test_content_length_smaller_than_the_body_only_delivers_what_was_declared(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b"Content-Length: 2\r\n\r\n{}"
        )
        first = read_response(sock)
        # The rest of the "body" is not part of any request: the server refuses it as malformed.
        with contextlib.suppress(OSError):
            sock.sendall(b"x" * (LIMIT * 4) + b"\r\n\r\n")
        after = read_response(sock) if first.header("connection") != "close" else None
    assert first.status == 200
    assert json.loads(first.body) == {"bytes": 2}
    assert after is None or 400 <= after.status < 500


def test_body_under_the_cap_is_accepted(port: int) -> None:
    body = b'{"a":"' + b"x" * 1000 + b'"}'
    response = exchange(
        port,
        b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nConnection: close\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body),
    )
    assert response.status == 200
    assert json.loads(response.body) == {"bytes": len(body)}


def test_huge_and_numerous_headers(port: int) -> None:
    huge = exchange(port, b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"a" * 40_000 + b"\r\n\r\n")
    many = b"".join(b"X-H%d: 1\r\n" % i for i in range(150))
    numerous = exchange(port, b"GET /health HTTP/1.1\r\nHost: localhost\r\n" + many + b"\r\n")
    assert_shape(huge, 431, "headers_too_large")
    assert_shape(numerous, 431, "headers_too_large")


@pytest.mark.parametrize(
    "host", [b"evil.example", b"localhost.evil.example", b"localhost@evil.example", b"[::1", b"a b"]
)
def test_bad_host(port: int, host: bytes) -> None:
    response = exchange(port, b"GET /health HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n")
    assert_shape(response, 400, "invalid_host")


def test_spoofed_forwarding_from_an_untrusted_peer_is_ignored(port: int) -> None:
    response = exchange(
        port,
        b"GET /health/ready HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-For: 127.0.0.1\r\n"
        b"X-Forwarded-Proto: https\r\nConnection: close\r\n\r\n",
    )
    # The peer really is loopback here, so ready answers; what matters is that https was not believed.
    assert response.status == 200
    assert response.header("strict-transport-security") is None


def test_untrusted_proxy_forwarding_is_not_believed(tmp_path: Path) -> None:
    # Bastion trusts only 10.0.0.0/8: our loopback connection's X-Forwarded-Proto must not make the
    # plain-http request look like https, so it is redirected. (Not /health: a loopback peer's
    # plain-http probe of /health is answered, for container healthchecks.)
    env = {"TRUSTED_PROXIES": "10.0.0.0/8", "FORCE_HTTPS": "true"}
    with bastion_serve(tmp_path, env=env) as serving:
        response = exchange(
            serving,
            b"GET /api/auth/me HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-Proto: https\r\n"
            b"Connection: close\r\n\r\n",
        )
    assert response.status == 308
    assert response.header("location") == "https://localhost/api/auth/me"
    assert response.header("x-frame-options") == "DENY"
