# SPDX-License-Identifier: Apache-2.0
"""Slowloris against a served instance (OWASP API4): clients that send part of their headers or
part of their body and then nothing hold no worker for good. The server closes each of them
within its own timeouts (a body: 408 with the error shape) and keeps answering other clients
all the while. Every wait is bounded in count and time; no assertion is on a duration.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.bastion_server import bastion_serve, connect, read_response

pytestmark = pytest.mark.e2e
SLOW_CLIENTS = 24
GIVE_UP_SECONDS = 60  # a bound on the test, far above the server's timeouts


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    env = {
        "REQUEST_BODY_TIMEOUT_SECONDS": "1",
        "REQUEST_HEADER_TIMEOUT_SECONDS": "2",
        "RATE_LIMIT_PER_MINUTE": "100000",
    }
    with bastion_serve(tmp_path_factory.mktemp("slowloris"), env=env) as serving:
        yield serving


def closed_by_server(sock: socket.socket, deadline: float) -> bytes | None:
    """What the server sent before closing the connection, or None if it was still open at deadline."""
    received = b""
    while time.monotonic() < deadline:
        sock.settimeout(max(0.1, min(1.0, deadline - time.monotonic())))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:  # reset by the server: closed too
            return received
        if not chunk:
            return received
        received += chunk
    return None


def healthy(port: int) -> bool:
    response = httpx.get(f"http://127.0.0.1:{port}/health", timeout=10)
    return response.status_code == 200


def open_slow_clients(port: int, opening: bytes) -> list[socket.socket]:
    sockets = []
    for _ in range(SLOW_CLIENTS):
        sock = connect(port)
        sock.sendall(opening)
        sockets.append(sock)
    return sockets


@pytest.mark.parametrize(
    ("case", "opening"),
    [
        ("request line only", b"GET /health HTTP/1.1\r\n"),
        ("half a header", b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Slow: aaaa"),
        ("nothing at all", b""),
    ],
)
def test_partial_headers_are_closed_and_others_served(port: int, case: str, opening: bytes) -> None:
    sockets = open_slow_clients(port, opening)
    try:
        assert healthy(port), case  # served while every slow client still holds its connection
        deadline = time.monotonic() + GIVE_UP_SECONDS
        for sock in sockets:
            assert closed_by_server(sock, deadline) is not None, (case, "still open")
        assert healthy(port), case
    finally:
        for sock in sockets:
            sock.close()


def test_partial_bodies_get_408_and_others_served(port: int) -> None:
    opening = (
        b"POST /api/auth/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b'Content-Length: 200\r\n\r\n{"email": '
    )
    sockets = open_slow_clients(port, opening)
    try:
        assert healthy(port)
        deadline = time.monotonic() + GIVE_UP_SECONDS
        for sock in sockets:
            sent = closed_by_server(sock, deadline)
            assert sent is not None, "still open"
            with contextlib.suppress(ValueError, IndexError):
                head, _, body = sent.partition(b"\r\n\r\n")
                assert head.split(b" ", 2)[1] == b"408", head
                assert json.loads(body)["detail"]["error"] == "request_timeout"
            assert sent.startswith(b"HTTP/1.1 408"), sent[:200]
        assert healthy(port)
    finally:
        for sock in sockets:
            sock.close()


def test_a_trickled_body_is_cut_off(port: int, tmp_path: Path) -> None:
    """One byte now and then keeps no connection alive past the body deadline."""
    with connect(port) as sock:
        sock.sendall(
            b"POST /api/auth/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n"
        )
        with contextlib.suppress(OSError):  # the server may close while we still trickle
            for _ in range(40):
                sock.sendall(b" ")
                time.sleep(0.1)  # pacing the client, not measuring the server
        response = read_response(sock)
    assert response.status == 408
    assert json.loads(response.body)["detail"]["error"] == "request_timeout"
    assert healthy(port)
