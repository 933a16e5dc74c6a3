# SPDX-License-Identifier: Apache-2.0
"""Two revisions of Bastion served side by side: this tree against ``--baseline REV``.

Run: ``.venv/bin/python bench/compare.py --baseline REV [--rounds 9] [--wrk-seconds 3]
[--messages 1000]``.

Solo figures of a served process move with the machine from one run to the next (on the 2-core
development VM the fake upstream's own p50 went from 0.48 to 0.60 ms within a day), so a change
is judged against the code before it, served at the same time:

1. ``GET /health`` and ``GET /api/auth/me`` (a user's bearer token) on the baseline, on this tree
   and on a bare FastAPI app, under ``wrk -t1 -c16`` in interleaved rounds: medians of requests per
   second and of each server's CPU time per request, and the ratios between them.
2. A chat message through each to the fake upstream, one to each in turn and one to the upstream
   directly: p50 and p99 added by each, and the median of the per-message differences.

The baseline's ``src`` is taken from git (``git archive``) and served with ``PYTHONPATH``; both run
in development on SQLite with the in-process limiter and default logging, as ``make bench`` runs
Bastion.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support

import access_log
import proxy
from access_log import baseline_source, bastion_env, contextmanager_all, free_port, wrk_figures
from run_all import MESSAGES_PER_SESSION, cpu_seconds, enrol
from tests.support.fake_upstream import FakeUpstream

SOURCE = str(Path(__file__).resolve().parents[1] / "src")
PATHS = ("/health", "/api/auth/me")


def served(
    rounds: int, seconds: float, ports: dict[str, int], pids: dict[str, int], tokens: dict[str, str]
) -> None:
    for path in PATHS:
        names = [name for name in ports if path == "/health" or name != "bare"]
        headers = {
            name: None if path == "/health" else {"Authorization": f"Bearer {tokens[name]}"} for name in names
        }
        figures: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
        for name in names:
            wrk_figures(ports[name], 1, path, headers[name])  # warm up
        for _ in range(rounds):
            for name in names:
                before = cpu_seconds(pids[name]) or 0.0
                rate, answered = wrk_figures(ports[name], seconds, path, headers[name])
                spent = (cpu_seconds(pids[name]) or 0.0) - before
                figures[name].append((rate, spent / answered * 1e6))
        medians = {
            name: (statistics.median(r for r, _ in rows), statistics.median(c for _, c in rows))
            for name, rows in figures.items()
        }
        print(f"GET {path}, wrk -t1 -c16 {seconds:g} s x {rounds} interleaved rounds, medians")
        for name, (rate, cpu) in medians.items():
            line = f"  {name:9} {rate:9,.0f} req/s  {cpu:7.1f} µs CPU a request"
            if "bare" in medians and name != "bare":
                bare_rate, bare_cpu = medians["bare"]
                line += f"  {rate / bare_rate:.2f}x bare (CPU {bare_cpu / cpu:.2f}x)"
            print(line)
        (base_rate, base_cpu), (rate, cpu) = medians["baseline"], medians["this"]
        change = f"{rate / base_rate:.3f}x req/s, CPU {cpu - base_cpu:+.1f} µs a request"
        print(f"  this tree against the baseline: {change}")


def chat(ports: dict[str, int], tokens: dict[str, str], upstream_url: str, messages: int) -> None:
    names = ("baseline", "this")
    clients = {name: httpx.Client(base_url=f"http://127.0.0.1:{ports[name]}", timeout=30) for name in names}
    auth = {name: {"Authorization": f"Bearer {tokens[name]}"} for name in names}
    message = {"content": "a short benchmark prompt"}

    def session(name: str) -> str:
        return str(
            clients[name].post("/api/sessions", json={}, headers=auth[name]).raise_for_status().json()["id"]
        )

    direct: list[float] = []
    via: dict[str, list[float]] = {name: [] for name in names}
    sessions = {name: session(name) for name in names}
    for n in range(messages + 20):
        if n and n % MESSAGES_PER_SESSION == 0:
            sessions = {name: session(name) for name in names}
        took = proxy.timed_post(clients["this"], f"{upstream_url}/chat/completions", {})
        order = names if n % 2 else tuple(reversed(names))
        times = {
            name: proxy.timed_post(
                clients[name], f"/api/sessions/{sessions[name]}/messages", auth[name], message
            )
            for name in order
        }
        if n >= 20:  # the first ones warm every path up
            direct.append(took)
            for name in names:
                via[name].append(times[name])
    print(f"chat message, {messages} to each in turn and to the fake upstream directly")
    for name in names:
        for label, q in (("p50", 49), ("p99", 98)):
            d = statistics.quantiles(direct, n=100)[q] * 1000
            v = statistics.quantiles(via[name], n=100)[q] * 1000
            print(f"  {name:9} {label} {v:6.2f} ms, the upstream directly {d:.2f} ms: {v - d:+.2f} ms added")
    differences = [b - a for a, b in zip(via["baseline"], via["this"], strict=True)]
    median = statistics.median(differences) * 1000
    print(f"  this tree against the baseline, median per message: {median:+.3f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="the git revision to compare with")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--wrk-seconds", type=float, default=3)
    parser.add_argument("--messages", type=int, default=1000)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bastion-bench-compare-"))
    python = sys.executable
    bastion = str(Path(python).with_name("bastion"))
    with FakeUpstream(keep_alive=True) as upstream:
        chat_env = {
            **proxy.upstream_env(upstream.base_url),
            "RATE_LIMIT_SESSIONS_CREATE": "100000/minute",
            "MAX_SESSIONS_PER_API_KEY": "100000",
            "MAX_TOTAL_SESSIONS": "100000",
        }
        ports = {name: free_port() for name in ("bare", "baseline", "this")}
        commands = {
            "bare": (
                [python, access_log.__file__, "--serve-bare", str(ports["bare"])],
                access_log.outside_env(),
            )
        }
        for name, source in (("baseline", str(baseline_source(args.baseline))), ("this", SOURCE)):
            env = bastion_env(root / name, PYTHONPATH=source, **chat_env)
            commands[name] = ([bastion, "serve", "--port", str(ports[name]), "--migrate"], env)
        with contextmanager_all(commands, ports) as processes:
            tokens = {name: enrol(ports[name]).token for name in ("baseline", "this")}
            pids = {name: process.pid for name, process in processes.items()}
            served(args.rounds, args.wrk_seconds, ports, pids, tokens)
            chat(ports, tokens, upstream.base_url, args.messages)


if __name__ == "__main__":
    main()
