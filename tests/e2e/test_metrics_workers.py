# SPDX-License-Identifier: Apache-2.0
"""`bastion serve --workers 2`: every scrape shows every worker's counts, exactly once.

Real processes: the supervisor, its two uvicorn workers, the PROMETHEUS_PORT listener in the
supervisor and GET /metrics in whichever worker takes the connection.
"""

from __future__ import annotations

import os
import secrets
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.support.bastion_server import bastion_serve, run_bastion
from tests.support.servers import free_port

pytestmark = pytest.mark.e2e

PASSWORD = "Correct-Horse-Battery-9"
POLL_SECONDS = 0.1
POLLS = 600  # bounded waits for processes to start or be noticed, never asserted on


class Deployment:
    """What the test sent, and where to scrape."""

    def __init__(self, port: int, metrics_port: int, directory: Path, key: str) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        self.directory = directory
        self.key = key
        self.sent = 0  # requests answered by the main port (each is counted once)

    def get(self, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
        # A new connection for each request, so the kernel hands them to either worker.
        response = httpx.get(self.base + path, headers=headers, timeout=30)
        self.sent += 1
        return response

    def many(self, paths: list[str]) -> list[int]:
        with ThreadPoolExecutor(max_workers=8) as pool:
            responses = list(pool.map(lambda p: httpx.get(self.base + p, timeout=30), paths))
        self.sent += len(responses)
        return [r.status_code for r in responses]

    def settle(self) -> None:
        """Wait until every answered request has been counted by its worker."""
        wait_until(lambda: sum(self.per_worker_requests().values()) == self.sent, "every request counted")

    def scrape_port(self) -> str:
        """The supervisor's PROMETHEUS_PORT listener: not a request to the app, so not counted."""
        response = httpx.get(self.metrics_url, timeout=30)
        assert response.status_code == 200
        return response.text

    def workers(self) -> set[int]:
        """Worker processes that have built their app (each writes its live gauge file then)."""
        return {int(f.stem.rpartition("_")[2]) for f in self.directory.glob("gauge_livemostrecent_*.db")}

    def per_worker_requests(self) -> dict[int, float]:
        """bastion_requests_total read from each worker's own file."""
        counts = {}
        for file in self.directory.glob("counter_*.db"):
            merged = MultiProcessCollector.merge([str(file)])
            counts[int(file.stem.rpartition("_")[2])] = sum(
                s.value for m in merged if m.name == "bastion_requests" for s in m.samples
            )
        return counts


def families(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return found


def total(text: str, name: str, **labels: str) -> float:
    return sum(
        value
        for sample_labels, value in families(text).get(name, [])
        if set(labels.items()) <= set(sample_labels.items())
    )


def series(text: str) -> int:
    return sum(len(samples) for samples in families(text).values())


def wait_until(condition: object, what: str) -> None:
    for _ in range(POLLS):
        if callable(condition) and condition():
            return
        time.sleep(POLL_SECONDS)
    raise AssertionError(f"gave up waiting for {what}")


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    metrics_port = free_port()
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {
        "PROMETHEUS_PORT": str(metrics_port),
        "RATE_LIMIT_PER_MINUTE": "1000000",
        # The key made by `bastion keys create` must verify in the server: one salt for both.
        "API_KEY_SALT": secrets.token_urlsafe(32),
        # The supervisor makes its private metrics directory here, where the test can see it.
        "TMPDIR": str(temp),
    }
    for args, stdin in (
        (("db", "upgrade"), ""),
        (("users", "create-admin", "--email", "ops@example.com"), f"{PASSWORD}\n{PASSWORD}\n"),
        (
            (
                *("keys", "create", "--email", "ops@example.com", "--name", "scraper"),
                *("--scope", "monitoring", "--role", "service"),
            ),
            "",
        ),
    ):
        done = run_bastion(tmp_path, *args, env=env, stdin=stdin)
        assert done.returncode == 0, done.stdout + done.stderr
    key = done.stdout.strip().splitlines()[-1]
    with bastion_serve(tmp_path, env=env, args=["--workers", "2"]) as port:
        directories = list(temp.glob("bastion-metrics-*"))
        assert len(directories) == 1
        assert directories[0].stat().st_mode & 0o077 == 0  # private to the user running Bastion
        serving = Deployment(port, metrics_port, directories[0], key)
        wait_until(lambda: len(serving.workers()) == 2, "both workers to start")
        yield serving
    assert not list(temp.glob("bastion-metrics-*"))  # removed when the server stopped


def test_every_worker_is_counted_once_on_both_listeners(deployment: Deployment) -> None:
    statuses = deployment.many(["/health"] * 200 + [f"/nowhere/{i}" for i in range(100)])
    assert statuses.count(200) == 200 and statuses.count(404) == 100

    # Both workers answered some of them, and the scrape is their sum. A request is counted once
    # its answer has gone out, so the last few may be counted a moment after the client has them.
    deployment.settle()
    per_worker = deployment.per_worker_requests()
    assert len([count for count in per_worker.values() if count > 0]) == 2, per_worker
    text = deployment.scrape_port()
    assert total(text, "bastion_requests_total") == deployment.sent == sum(per_worker.values())
    assert total(text, "bastion_requests_total", route="/health", status="200") == 200
    assert total(text, "bastion_requests_total", route="unmatched", status="404") == 100
    assert total(text, "bastion_request_duration_seconds_count") == deployment.sent
    # Sampled gauges are merged, not listed per worker.
    assert not any("pid" in labels for samples in families(text).values() for labels, _ in samples)
    assert len(families(text)["bastion_chat_sessions_active"]) == 1

    # GET /metrics on the main port, in whichever worker: the same totals (its own request is
    # counted once it has been answered).
    auth = {"X-API-Key": deployment.key}
    for _ in range(4):
        deployment.settle()
        before = deployment.sent
        response = deployment.get("/metrics", headers=auth)
        assert response.status_code == 200
        assert total(response.text, "bastion_requests_total") == before
    deployment.settle()
    assert total(deployment.scrape_port(), "bastion_requests_total", route="/metrics") == 4

    # More distinct paths add counts, never series.
    baseline = series(deployment.scrape_port())
    deployment.many([f"/elsewhere/{i}/user{i}@example.com" for i in range(200)])
    deployment.settle()
    text = deployment.scrape_port()
    assert series(text) == baseline
    assert total(text, "bastion_requests_total") == deployment.sent


def test_a_killed_worker_keeps_its_counts_and_loses_its_gauges(deployment: Deployment) -> None:
    deployment.many(["/health"] * 100)
    deployment.settle()
    workers = deployment.workers()
    victim = max(workers, key=lambda pid: deployment.per_worker_requests().get(pid, 0))
    os.kill(victim, signal.SIGKILL)
    # uvicorn's supervisor notices, reaps it and starts a replacement.
    wait_until(lambda: len(deployment.workers() - {victim}) == 2, "the replacement worker")

    live_gauges = deployment.directory / f"gauge_livemostrecent_{victim}.db"
    wait_until(lambda: (deployment.scrape_port(), not live_gauges.exists())[1], "the dead worker forgotten")
    assert (deployment.directory / f"counter_{victim}.db").exists()

    deployment.many(["/health"] * 50)
    deployment.settle()
    text = deployment.scrape_port()
    assert total(text, "bastion_requests_total") == deployment.sent == 150
    assert len(families(text)["bastion_chat_sessions_active"]) == 1
