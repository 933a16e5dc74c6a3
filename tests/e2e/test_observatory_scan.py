# SPDX-License-Identifier: Apache-2.0
"""The deployed shape graded by the real MDN HTTP Observatory scanner, as post-deployment checklists ask.

The scanner (``@mdn/mdn-http-observatory``, pinned in tests/e2e/observatory/package-lock.json and
installed from there with ``npm ci``) only scans ``http://HOST/`` and ``https://HOST/`` on the
standard ports, so the deployment lives in a network namespace of its own: a host named
``bastion.test`` with Bastion over TLS on 443 (a certificate from a test CA the scanner is told
to trust) and on 80 redirecting to https (FORCE_HTTPS), ENVIRONMENT and docs as in production.
The scanner runs in the same namespace, unmodified (``src/scan.js``, which its ``bin`` wrapper
runs after pointing NODE_EXTRA_CA_CERTS at Mozilla's bundle; here it points at the test CA).

Its install-time downloads (Mozilla's intermediate certificates, Chromium's HSTS preload list)
cannot be fetched on this network, so it is installed with ``--ignore-scripts``; the preload list
is then written empty. That list only says whether a host is preloaded into browsers, which
``bastion.test`` is not on the real list either (no ``.test`` name is), so the verdict is the same.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.bastion_server import bastion_command, deployment_environment, run_bastion
from tests.support.pki import TestCA

pytestmark = pytest.mark.e2e
HOST = "bastion.test"
PACKAGE = Path(__file__).parent / "observatory"
SCANNER = PACKAGE / "node_modules" / "@mdn" / "mdn-http-observatory"
STARTUP_SECONDS = 60.0


@pytest.fixture(scope="module")
def scanner() -> Path:
    """The scanner's entry point, installed from the committed lock file when it is not yet."""
    if not (SCANNER / "src" / "scan.js").exists():
        subprocess.run(
            ["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"],
            cwd=PACKAGE,
            check=True,
            timeout=600,
            capture_output=True,
        )
    preload = SCANNER / "conf" / "hsts-preload.json"
    if not preload.exists():
        preload.write_text("{}\n")
    return SCANNER / "src" / "scan.js"


@contextlib.contextmanager
def namespace() -> Iterator[str]:
    """A network namespace of its own (loopback only) in which ``HOST`` is 127.0.0.1."""
    name = f"bastion-obs-{secrets.token_hex(4)}"
    hosts = Path("/etc/netns") / name
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        hosts.mkdir(parents=True, exist_ok=True)
        # `ip netns exec` mounts this over /etc/hosts for the commands it runs.
        (hosts / "hosts").write_text(f"127.0.0.1 localhost {HOST}\n")
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
        shutil.rmtree(hosts, ignore_errors=True)


def wait_for(name: str, port: int, process: subprocess.Popen[bytes]) -> None:
    probe = f"import socket; socket.create_connection(('127.0.0.1', {port}), 1).close()"
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server on port {port} exited with {process.returncode}")
        probed = subprocess.run(
            ["ip", "netns", "exec", name, sys.executable, "-c", probe], stderr=subprocess.DEVNULL, check=False
        )
        if probed.returncode == 0:
            return
        time.sleep(0.25)
    raise TimeoutError(f"nothing listens on port {port}")


@contextlib.contextmanager
def deployed(name: str, workdir: Path, ca: TestCA) -> Iterator[None]:
    """Bastion on https://HOST (443) and http://HOST (80, redirecting), inside the namespace."""
    server = ca.issue("server", HOST, dns=(HOST,))
    env = {"FORCE_HTTPS": "true", "ALLOWED_HOSTS": HOST, "ENABLE_DOCS": "false"}
    migrated = run_bastion(workdir, "db", "upgrade", env=env)
    assert migrated.returncode == 0, migrated.stderr
    full_env = deployment_environment(workdir, env)
    listeners = (("443", ["--ssl-certfile", str(server.cert), "--ssl-keyfile", str(server.key)]), ("80", []))
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for port, tls in listeners:
            command = [*bastion_command(), "serve", "--host", "127.0.0.1", "--port", port, *tls]
            with (workdir / f"bastion-{port}.log").open("wb") as log:
                processes.append(
                    subprocess.Popen(
                        ["ip", "netns", "exec", name, *command],
                        env=full_env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        cwd=Path(__file__).parents[2],
                    )
                )
            wait_for(name, int(port), processes[-1])
        yield
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def test_the_real_observatory_grades_the_deployed_shape_a_plus(scanner: Path, tmp_path: Path) -> None:
    (tmp_path / "pki").mkdir()
    ca = TestCA(tmp_path / "pki")
    with namespace() as name, deployed(name, tmp_path, ca):
        scan = subprocess.run(
            ["ip", "netns", "exec", name, "node", str(scanner), HOST],
            env={**os.environ, "NODE_EXTRA_CA_CERTS": str(ca.files.cert)},
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
    assert scan.returncode == 0, scan.stdout[-2000:] + scan.stderr[-2000:]
    report = json.loads(scan.stdout)
    summary, tests = report["scan"], report["tests"]
    failed = {test: result["result"] for test, result in tests.items() if not result["pass"]}
    assert failed == {}, failed
    assert (summary["grade"], summary["testsPassed"], summary["testsQuantity"]) == ("A+", 10, 10)
    # 100, +10 for a CSP of default-src 'none', +5 a private Referrer-Policy, +5 framing refused
    # through the CSP, +10 Cross-Origin-Resource-Policy; no cookies and no scripts to earn more.
    assert summary["score"] == 130, tests
    assert tests["redirection"]["route"] == [f"http://{HOST}/", f"https://{HOST}/"]
    assert tests["strict-transport-security"]["result"] == "hsts-implemented-max-age-at-least-six-months"
    assert summary["statusCode"] == 200
    assert "server" not in summary["responseHeaders"]
