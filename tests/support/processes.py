# SPDX-License-Identifier: Apache-2.0
"""Real uvicorn processes serving an app factory, for multi-instance and disconnect tests."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

from tests.support.servers import free_port, wait_for_port

REPO = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def uvicorn_process(factory: str, env: Mapping[str, str], *, port: int | None = None) -> Iterator[str]:
    """Serve ``module:factory`` on a free loopback port; yields the base URL."""
    port = port or free_port()
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith(("RATE_LIMIT_", "REDIS_"))
    }
    environment.update(env)
    environment["PYTHONPATH"] = str(REPO)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            factory,
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        cwd=REPO,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process=process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
