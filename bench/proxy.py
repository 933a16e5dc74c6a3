# SPDX-License-Identifier: Apache-2.0
"""Latency Bastion adds in front of a model provider, against calling the provider directly.

    .venv/bin/python bench/proxy.py [--requests 300]

Starts the local fake OpenAI-compatible upstream and a real `bastion serve` process pointed at it,
then alternates direct and through-Bastion requests (non-streaming total time; streaming time to
first byte and total) on keep-alive connections, and prints medians, p90 and the difference.
Target: under 5 ms added at the median.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.fake_upstream import FakeUpstream
from tests.support.servers import free_port, wait_for_port

PASSWORD = "Correct-Horse-9x!"  # noqa: S105 - a throwaway account of the benchmark
BODY = {"model": "fake-model", "messages": [{"role": "user", "content": "a short benchmark prompt"}]}


def upstream_env(base_url: str) -> dict[str, str]:
    """Bastion's settings for a served instance in front of the upstream at ``base_url``."""
    return {
        "LLM_PROVIDER": "openai",
        "LLM_BASE_URL": base_url,
        "LLM_MODEL": "fake-model",
        # The benchmark measures latency, not the limits: lift them out of the way.
        "RATE_LIMIT_PER_MINUTE": "100000000",
        "RATE_LIMIT_MESSAGES": "100000000/minute",
        "RATE_LIMIT_MESSAGES_PER_HOUR": "100000000",
        "RATE_LIMIT_REGISTER": "1000/minute",
        "RATE_LIMIT_LOGIN": "1000/minute",
    }


def timed_post(
    client: httpx.Client, url: str, headers: dict[str, str], body: dict[str, object] = BODY
) -> float:
    started = time.perf_counter()
    response = client.post(url, json=body, headers=headers)
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return elapsed


def timed_stream(client: httpx.Client, url: str, headers: dict[str, str]) -> tuple[float, float]:
    started = time.perf_counter()
    first: float | None = None
    with client.stream("POST", url, json={**BODY, "stream": True}, headers=headers) as response:
        response.raise_for_status()
        for _chunk in response.iter_raw():
            if first is None:
                first = time.perf_counter() - started
    total = time.perf_counter() - started
    return (first if first is not None else total), total


def summary(name: str, direct: list[float], proxied: list[float]) -> float:
    d, p = statistics.median(direct) * 1000, statistics.median(proxied) * 1000
    d90 = statistics.quantiles(direct, n=10)[-1] * 1000
    p90 = statistics.quantiles(proxied, n=10)[-1] * 1000
    print(
        f"{name:<22} direct median {d:7.2f} ms (p90 {d90:6.2f})  via Bastion {p:7.2f} ms (p90 {p90:6.2f})"
        f"  added {p - d:+6.2f} ms  ratio {p / d:5.2f}x"
    )
    return p - d


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bastion-bench-"))
    with FakeUpstream(keep_alive=True) as upstream:
        port = free_port()
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("RATE_LIMIT", "LLM_", "DATABASE_URL", "REDIS_URL"))
        }
        env.update(ENVIRONMENT="development", LOG_LEVEL="WARNING", **upstream_env(upstream.base_url))
        server = subprocess.Popen(
            [sys.executable, "-m", "bastion", "serve", "--port", str(port)],
            cwd=workdir,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_port(port, timeout=60, process=server)
            base = f"http://127.0.0.1:{port}"
            with httpx.Client(base_url=base, timeout=30) as http:
                http.post("/api/auth/register", json={"email": "bench@example.com", "password": PASSWORD})
                token = http.post(
                    "/api/auth/login", json={"email": "bench@example.com", "password": PASSWORD}
                ).json()["access_token"]
            auth = {"Authorization": f"Bearer {token}"}
            direct_url = f"{upstream.base_url}/chat/completions"
            proxied_url = f"{base}/v1/chat/completions"
            results: dict[str, list[float]] = {key: [] for key in ("d_total", "p_total", "d_ttfb", "p_ttfb")}
            with httpx.Client(timeout=30) as client:
                for _ in range(20):  # warm up both paths
                    timed_post(client, direct_url, {})
                    timed_post(client, proxied_url, auth)
                for _ in range(args.requests):
                    results["d_total"].append(timed_post(client, direct_url, {}))
                    results["p_total"].append(timed_post(client, proxied_url, auth))
                    results["d_ttfb"].append(timed_stream(client, direct_url, {})[0])
                    results["p_ttfb"].append(timed_stream(client, proxied_url, auth)[0])
        finally:
            server.terminate()
            server.wait(timeout=15)
    print(f"{args.requests} requests per path, alternating, one keep-alive client, 2-core VM")
    added_total = summary("non-streaming total", results["d_total"], results["p_total"])
    added_ttfb = summary("streaming first byte", results["d_ttfb"], results["p_ttfb"])
    for name, added in (("total", added_total), ("first byte", added_ttfb)):
        verdict = "MET" if added < 5 else "NOT MET"
        print(f"target: under 5 ms added at the median ({name}): {verdict} ({added:.2f} ms)")


if __name__ == "__main__":
    main()
