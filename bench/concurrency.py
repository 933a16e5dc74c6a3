# SPDX-License-Identifier: Apache-2.0
"""Chat messages per second at 50 concurrent clients, on SQLite and on PostgreSQL.

Run: ``.venv/bin/python bench/concurrency.py [--clients 50] [--seconds 15]``. For each database a
real ``bastion serve`` process (one worker, offline model, rate limits lifted) is started; each
client signs up as its own user, opens a session and sends messages back to back, alternating a
JSON answer and a Server-Sent Events stream read to its end. Prints acknowledged messages/s,
answers of 5xx (the target is none) and, for SQLite, the ratio to PostgreSQL measured in the same
run. The PostgreSQL server is a throwaway cluster started like the test suite's.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.test_schema_fuzz import LIFTED, PASSWORD
from tests.support.bastion_server import bastion_serve
from tests.support.servers import PostgresServer


async def sign_up(http: httpx.AsyncClient, number: int) -> tuple[str, str]:
    account = {"email": f"bench{number}@example.com", "password": PASSWORD}
    await http.post("/api/auth/register", json=account)
    token = (await http.post("/api/auth/login", json=account)).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    session = await http.post("/api/sessions", json={}, headers=auth)
    return str(session.json()["id"]), str(token)


async def send(
    http: httpx.AsyncClient, path: str, auth: dict[str, str], stream: bool, state: Counter[str]
) -> bool:
    body = {"content": "I have been feeling anxious about work", "stream": stream}
    async with http.stream("POST", path, json=body, headers=auth) as response:
        state[str(response.status_code)] += 1
        text = (await response.aread()).decode()
    return response.status_code == 200 and (not stream or "event: done" in text)


async def client(url: str, number: int, seconds: float, start: asyncio.Event, state: Counter[str]) -> int:
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        try:
            session_id, token = await sign_up(http, number)
        finally:
            state["ready"] += 1
        auth = {"Authorization": f"Bearer {token}"}
        path = f"/api/sessions/{session_id}/messages"
        await start.wait()
        deadline = time.perf_counter() + seconds
        acknowledged = 0
        for turn in range(1_000_000):  # bounded; the deadline ends it first
            if time.perf_counter() >= deadline:
                break
            acknowledged += await send(http, path, auth, turn % 2 == 1, state)
        return acknowledged


async def load(url: str, clients: int, seconds: float) -> tuple[float, Counter[str]]:
    state: Counter[str] = Counter()
    start = asyncio.Event()
    tasks = [asyncio.create_task(client(url, n, seconds, start, state)) for n in range(clients)]
    # Sign-up (password hashing) is not what is measured: start the clock once all are ready.
    for _ in range(1200):
        if state["ready"] >= clients:
            break
        await asyncio.sleep(0.1)
    began = time.perf_counter()
    start.set()
    counts = await asyncio.gather(*tasks)
    return sum(counts) / (time.perf_counter() - began), state


def measure(name: str, database_url: str | None, clients: int, seconds: float) -> float:
    workdir = Path(tempfile.mkdtemp(prefix=f"bastion-bench-{name}-"))
    env = {**LIFTED, "ENVIRONMENT": "development"}
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    with bastion_serve(workdir, env=env) as port:
        rate, state = asyncio.run(load(f"http://127.0.0.1:{port}", clients, seconds))
    answers = {status: count for status, count in sorted(state.items()) if status != "ready"}
    errors = sum(count for status, count in answers.items() if status.startswith("5"))
    print(f"{name:<10} {rate:8.1f} messages/s  answers {answers}  5xx: {errors}")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=15)
    args = parser.parse_args()
    print(f"{args.clients} concurrent clients, {args.seconds:g} s each, one worker, offline model")
    sqlite = measure("sqlite", None, args.clients, args.seconds)
    postgres_root = Path(tempfile.mkdtemp(prefix="bastion-bench-pg-"))
    server = PostgresServer(postgres_root).start()
    try:
        postgres = measure("postgresql", server.url(), args.clients, args.seconds)
    finally:
        server.stop()
    print(f"sqlite / postgresql: {sqlite / postgres:.2f}x")


if __name__ == "__main__":
    main()
