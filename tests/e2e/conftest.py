# SPDX-License-Identifier: Apache-2.0
"""Helpers for tests that run the real `bastion` command and server processes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from bastion.settings import Settings
from tests.support.servers import free_port, wait_for_port

BASTION = [sys.executable, "-m", "bastion"]


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The parent's environment without any Bastion setting, plus ``extra``."""
    names = {name.upper() for name in Settings.model_fields}
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in names and not (key.endswith("_FILE") and key[:-5] in names)
    }
    env.update(extra or {})
    return env


def run_bastion(
    *args: str, cwd: Path, env: Mapping[str, str] | None = None, stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*BASTION, *args],
        cwd=cwd,
        env=clean_env(env),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_factory(
    cwd: Path, env: Mapping[str, str] | None = None, *args: str
) -> subprocess.CompletedProcess[str]:
    """`uvicorn bastion.app:create_app --factory` as an operator may run it, without `bastion serve`."""
    return subprocess.run(
        [sys.executable, "-m", "uvicorn", "bastion.app:create_app", "--factory", *args],
        cwd=cwd,
        env=clean_env(env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@contextmanager
def bastion_server(cwd: Path, env: Mapping[str, str] | None = None, *args: str) -> Iterator[tuple[str, Path]]:
    """`bastion serve` on a free port; yields its base URL and the file collecting its output."""
    port = free_port()
    log_path = cwd / f"serve-{port}.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [*BASTION, "serve", "--port", str(port), *args],
            cwd=cwd,
            env=clean_env(env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_port(port, timeout=60, process=process)
            yield f"http://127.0.0.1:{port}", log_path
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


def get(url: str, **kwargs: object) -> httpx.Response:
    return httpx.get(url, timeout=10, **kwargs)  # type: ignore[arg-type]


# Screenshots the browser tests took, listed at the end of the run (passing tests' output is
# captured, and the paths belong in the report whatever the outcome). Each test's own travel in its
# report (``user_properties``): under pytest-xdist the summary is written by the controlling
# process, which runs no test (tests/conftest.py lists them).
SCREENSHOTS: list[Path] = []


@pytest.fixture(autouse=True)
def _screenshots_reported(request: pytest.FixtureRequest) -> Iterator[None]:
    taken = len(SCREENSHOTS)
    yield
    request.node.user_properties.extend(("screenshot", str(path)) for path in SCREENSHOTS[taken:])
