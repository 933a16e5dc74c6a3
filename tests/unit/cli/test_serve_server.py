# SPDX-License-Identifier: Apache-2.0
"""`bastion serve` runs uvicorn on uvloop and httptools, named rather than left to "auto".

"auto" quietly falls back to the asyncio loop (or h11) when a package is missing, and the server
is then not the one measured (docs/performance.md); this checks what uvicorn resolves from the
options `bastion serve` passes, for plain HTTP and for TLS.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import uvicorn
import uvloop
from typer.testing import CliRunner
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from bastion.cli import app
from bastion.web.header_deadline import DeadlineHttpToolsProtocol
from bastion.web.tls_extension import TLSHttpToolsProtocol


async def _noop(scope: Any, receive: Any, send: Any) -> None:
    return None


@pytest.mark.parametrize(
    ("tls", "protocol"), [(False, DeadlineHttpToolsProtocol), (True, TLSHttpToolsProtocol)]
)
def test_serve_selects_uvloop_and_httptools(
    tls: bool, protocol: type, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ENVIRONMENT", "development")
    monkeypatch.setenv("VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'bastion.db'}")
    passed: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda target, **options: passed.update(options))
    certificate = ["--ssl-certfile", "cert.pem", "--ssl-keyfile", "key.pem"] if tls else []

    result = CliRunner().invoke(app, ["serve", *certificate])

    assert result.exit_code == 0, result.output
    assert passed["loop"] == "uvloop"  # a missing uvloop is an error at start, not a slower server
    config = uvicorn.Config(_noop, loop=passed["loop"], http=passed["http"])
    config.load()
    assert config.http_protocol_class is protocol
    assert issubclass(config.http_protocol_class, HttpToolsProtocol)
    loop_factory = config.get_loop_factory()
    assert loop_factory is not None
    loop = loop_factory()
    try:
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()
