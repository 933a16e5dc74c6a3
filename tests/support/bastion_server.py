# SPDX-License-Identifier: Apache-2.0
"""`bastion serve` as a real process, and raw HTTP over sockets (bytes httpx would not send)."""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bastion.crypto import material
from tests.support.servers import free_port, wait_for_port


def bastion_command() -> list[str]:
    script = Path(sys.executable).with_name("bastion")
    return [str(script)] if script.exists() else [sys.executable, "-m", "bastion"]


@functools.cache
def _encryption_key(tmp_path: Path) -> str:
    """One key per deployment directory: every process serving it opens what the others sealed."""
    return material.encryption_key()


def deployment_environment(tmp_path: Path, env: Mapping[str, str] | None) -> dict[str, str]:
    """The environment of a deployment in ``tmp_path``: its database, key and var dir, plus ``env``."""
    return {
        **os.environ,
        "ENVIRONMENT": "test",
        "VAR_DIR": str(tmp_path / "var"),
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'bastion.db'}",
        "DATABASE_ENCRYPTION_KEY": _encryption_key(tmp_path),
        "LOG_LEVEL": "WARNING",
        **(env or {}),
    }


class ServerProcess:
    """One server process on a fixed port: started, crashed (SIGKILL), started again, stopped."""

    def __init__(self, command: list[str], port: int, env: dict[str, str], log_path: Path) -> None:
        self.command, self.port, self.env, self.log_path = command, port, env, log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerProcess:
        with self.log_path.open("ab") as log:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                self.command,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=Path(__file__).parents[2],
            )
        wait_for_port(self.port, timeout=60, process=self.process)
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flushing, as a crashed host or an OOM kill leaves it."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@contextlib.contextmanager
def _running(command: list[str], port: int, env: dict[str, str], log_path: Path) -> Iterator[int]:
    server = ServerProcess(command, port, env, log_path)
    try:
        server.start()
        yield port
    finally:
        server.stop()


def bastion_process(
    tmp_path: Path, *, env: Mapping[str, str] | None = None, args: Sequence[str] = ()
) -> ServerProcess:
    """``bastion serve`` on a free loopback port, not yet started (start, kill and restart it)."""
    port = free_port()
    command = [*bastion_command(), "serve", "--host", "127.0.0.1", "--port", str(port), *args]
    return ServerProcess(
        command, port, deployment_environment(tmp_path, env), tmp_path / f"bastion-{port}.log"
    )


@contextlib.contextmanager
def bastion_serve(
    tmp_path: Path, *, env: Mapping[str, str] | None = None, args: Sequence[str] = ()
) -> Iterator[int]:
    """Run ``bastion serve`` on a free loopback port until the block ends; yields the port."""
    server = bastion_process(tmp_path, env=env, args=args)
    try:
        yield server.start().port
    finally:
        server.stop()


def run_bastion(
    tmp_path: Path, *args: str, env: Mapping[str, str] | None = None, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """Run one ``bastion`` command against the deployment ``bastion_serve(tmp_path, env=env)`` serves."""
    return subprocess.run(
        [*bastion_command(), *args],
        env=deployment_environment(tmp_path, env),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=Path(__file__).parents[2],
    )


@contextlib.contextmanager
def uvicorn_serve(
    tmp_path: Path, app: str = "tests.support.echo_app:create", *, env: Mapping[str, str] | None = None
) -> Iterator[int]:
    """A test app factory under uvicorn with the options `bastion serve` uses."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-server-header",
        "--no-access-log",
        "--no-proxy-headers",
    ]
    with _running(command, port, deployment_environment(tmp_path, env), tmp_path / f"uvicorn-{port}.log"):
        yield port


@dataclass
class RawResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.all(name)
        return values[0] if values else None

    def all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]


def parse_response(data: bytes) -> RawResponse:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    length = next((int(v) for k, v in headers if k.lower() == "content-length"), None)
    return RawResponse(status, headers, body[:length] if length is not None else body)


def connect(
    port: int, *, tls: ssl.SSLContext | None = None, server_hostname: str | None = None, timeout: float = 10
) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if tls is not None:
        return tls.wrap_socket(sock, server_hostname=server_hostname)
    return sock


def read_response(sock: socket.socket) -> RawResponse:
    """Read one response: headers, then Content-Length bytes (or until the peer closes)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    response = parse_response(head + b"\r\n\r\n")
    length = response.header("content-length")
    if length is not None:
        while len(body) < int(length):
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
        response.body = body[: int(length)]
    else:
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                body += chunk
        response.body = body
    return response


def exchange(port: int, request: bytes, **kwargs: object) -> RawResponse:
    with connect(port, **kwargs) as sock:  # type: ignore[arg-type]
        sock.sendall(request)
        return read_response(sock)
