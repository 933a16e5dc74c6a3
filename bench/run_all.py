# SPDX-License-Identifier: Apache-2.0
"""Every benchmark, one table: each Bastion figure beside a baseline measured in the same run.

Run: ``make bench`` (``.venv/bin/python bench/run_all.py [--quick] [--wrk-seconds 3] [--rounds 5]
[--messages 600] [--py-spy PATH]``); ``--quick`` is a short run for a look (1 s wrk runs, 2 rounds,
150 messages), whose ratios are noisier; ``--py-spy`` adds profiles of the served Bastion.

1. Served on loopback, one worker each, under ``wrk -t1 -c16`` in interleaved rounds (medians):
   ``bastion serve`` (uvicorn, SQLite, in-process limiter, default INFO logging with the access
   log on) and the same app under granian, beside a bare FastAPI app (``bench/access_log.py``),
   the hand-written FastAPI + PyJWT + per-request database read app and the same with slowapi
   (``bench/baseline_app.py``), and under uvicorn's own command on uvloop and on asyncio. When
   PostgreSQL and Redis are installed (``scripts/provision.sh``), Bastion again on PostgreSQL +
   Redis (every shared limit a Redis round trip) beside the hand-written app reading the same
   PostgreSQL, and a chat message through it.
   ``GET /health``; ``GET /api/auth/me`` with a user's bearer token (``/me`` on the baselines);
   ``GET /api/sessions`` with an API key. Requests per second, and each server's CPU time per
   request (steadier than throughput on a loaded machine).
2. A chat message (``POST /api/sessions/{id}/messages``) through the served Bastion to the fake
   upstream (``tests/support/fake_upstream.py``), alternating with the same completion asked of the
   upstream directly, one keep-alive client: the latency Bastion adds at p50 and p99. The upstream
   keeps its connections open as real providers do, so both paths reuse theirs.
3. In process: the limiter against the ``limits`` library and raw Redis (``bench/ratelimit.py``),
   the guard's input scan (``bench/guard.py``), one call to the model endpoint by the provider
   against httpx (``bench/model_client.py``), password verification (``bench/auth.py``).

The machine may be shared: absolute figures move from run to run, the ratios within one run are
what the table is for. Targets are printed beside the figures, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

# bench/ is on the path as this script's folder; the repository root is for tests.support.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import access_log
import auth
import baseline_app
import guard
import model_client
import proxy
import ratelimit
from access_log import bastion_env, contextmanager_all, free_port, wrk, wrk_figures
from tests.support.fake_upstream import FakeUpstream
from tests.support.servers import PostgresServer, RedisServer

from bastion.guard import Guard, GuardConfig, ScanContext
from bastion.guard.train import load_examples
from bastion.web.header_deadline import PROTOCOL as HEADER_DEADLINE_PROTOCOL

HERE = Path(__file__).resolve().parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
APP = "bastion.app:create_app"
PASSWORD = "Correct-Horse-9x!"  # noqa: S105  # pragma: allowlist secret - a benchmark account
MESSAGES_PER_SESSION = 20  # a fresh session now and then: the history sent upstream stays short


@dataclass(frozen=True)
class Row:
    measure: str
    figure: str
    baseline: str
    ratio: str
    target: str = ""


@dataclass(frozen=True)
class Served:
    """Medians over the rounds: requests per second, and the server's CPU time per request."""

    rate: float
    cpu_ms: float | None

    def __str__(self) -> str:
        cpu = "" if self.cpu_ms is None else f", {self.cpu_ms:.2f} ms CPU"
        return f"{self.rate:,.0f} req/s{cpu}"


def ratio_row(measure: str, ours: Served, base: Served, base_name: str, target: float | None = None) -> Row:
    """Throughput ratio (judged against ``target``), and the same ratio from CPU time per request."""
    ratio = ours.rate / base.rate
    judged = "" if target is None else f">= {target:g}x: {'met' if ratio >= target else 'NOT MET'}"
    # Three decimals where two would round a ratio onto its target's line (0.499 shown as 0.50).
    near = target is not None and abs(ratio - target) < 0.005
    shown = f"{ratio:.3f}x" if near else f"{ratio:.2f}x"
    if ours.cpu_ms and base.cpu_ms:
        shown += f" (CPU {base.cpu_ms / ours.cpu_ms:.2f}x)"
    return Row(measure, str(ours), f"{base_name} {base}", shown, judged)


# 1. served under wrk -------------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    token: str
    key: str


def enrol(port: int) -> Credentials:
    """A user (bearer token) and an API key with the chat scope on the Bastion at ``port``."""
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        account = {"email": "bench@example.com", "password": PASSWORD}
        http.post("/api/auth/register", json=account).raise_for_status()
        token = http.post("/api/auth/login", json=account).raise_for_status().json()["access_token"]
        created = http.post(
            "/api/keys",
            json={"name": "bench", "scopes": ["chat"]},
            headers={"Authorization": f"Bearer {token}"},
        ).raise_for_status()
        return Credentials(token=token, key=created.json()["key"])


def granian_command(port: int) -> list[str]:
    """Bastion's app under granian, configured as ``bastion serve`` runs uvicorn: one worker, uvloop."""
    granian = str(Path(sys.executable).with_name("granian"))
    return [
        *(granian, "--interface", "asgi", "--factory", "--loop", "uvloop", "--workers", "1"),
        *("--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level", "warning"),
        APP,
    ]


def uvicorn_command(port: int, loop: str) -> list[str]:
    """The app factory under uvicorn's own command, with ``bastion serve``'s protocol and options."""
    options = ["--factory", "--loop", loop, "--http", HEADER_DEADLINE_PROTOCOL, "--no-access-log"]
    options += ["--no-proxy-headers", "--no-server-header", "--log-level", "warning"]
    return [sys.executable, "-m", "uvicorn", *options, "--host", "127.0.0.1", "--port", str(port), APP]


@dataclass(frozen=True)
class Fleet:
    ports: dict[str, int]
    pids: dict[str, int]
    credentials: dict[str, Credentials]  # on the Bastions
    secret: str  # the baselines' JWT secret


@contextmanager
def shared_stores() -> Iterator[tuple[str, str] | None]:
    """A PostgreSQL and a Redis for the production-shaped contenders (None when not installed)."""
    try:
        # Its own directory under /tmp: as root the server runs as `postgres`, which cannot enter
        # the run's private directory.
        postgres = PostgresServer(Path(tempfile.mkdtemp(prefix="bastion-bench-pg-"))).start()
    except RuntimeError:
        yield None
        return
    try:
        redis = RedisServer().start()
    except RuntimeError:
        postgres.stop()
        yield None
        return
    try:
        yield postgres.url(), redis.url
    finally:
        redis.stop()
        postgres.stop()
        shutil.rmtree(postgres.root, ignore_errors=True)


@contextmanager
def servers(root: Path, upstream_url: str) -> Iterator[Fleet]:
    """Every served contender, started at once; those on PostgreSQL + Redis when both are installed."""
    python = sys.executable
    bastion = str(Path(python).with_name("bastion"))
    secret = secrets.token_hex(32)
    chat = {
        **proxy.upstream_env(upstream_url),
        "RATE_LIMIT_SESSIONS_CREATE": "100000/minute",
        "MAX_SESSIONS_PER_API_KEY": "100000",
        "MAX_TOTAL_SESSIONS": "100000",
    }
    with shared_stores() as stores:
        names = ["bare", "bastion", "granian", "uvloop", "asyncio", "hand-written", "slowapi"]
        if stores is not None:
            names += ["bastion-pg", "hand-written-pg"]
        ports = {name: free_port() for name in names}
        envs = {
            name: bastion_env(root / name, **chat) for name in ("bastion", "granian", "uvloop", "asyncio")
        }
        # These run the app factory alone: the schema is applied first, as `bastion serve --migrate` does.
        for name in ("granian", "uvloop", "asyncio"):
            subprocess.run([bastion, "db", "upgrade"], env=envs[name], check=True, capture_output=True)
        baseline = [python, str(HERE / "baseline_app.py"), "--secret", secret]
        commands: dict[str, tuple[list[str], dict[str, str]]] = {
            "bare": (
                [python, str(HERE / "access_log.py"), "--serve-bare", str(ports["bare"])],
                access_log.outside_env(),
            ),
            "bastion": ([bastion, "serve", "--port", str(ports["bastion"]), "--migrate"], envs["bastion"]),
            "granian": (granian_command(ports["granian"]), envs["granian"]),
            "uvloop": (uvicorn_command(ports["uvloop"], "uvloop"), envs["uvloop"]),
            "asyncio": (uvicorn_command(ports["asyncio"], "asyncio"), envs["asyncio"]),
            "hand-written": (
                [*baseline, "--port", str(ports["hand-written"]), "--database", str(root / "hand.db")],
                access_log.outside_env(),
            ),
            "slowapi": (
                [
                    *baseline,
                    "--slowapi",
                    "--port",
                    str(ports["slowapi"]),
                    "--database",
                    str(root / "slow.db"),
                ],
                access_log.outside_env(),
            ),
        }
        if stores is not None:
            database_url, redis_url = stores
            production = bastion_env(
                root / "bastion-pg", DATABASE_URL=database_url, REDIS_URL=redis_url, **chat
            )
            commands["bastion-pg"] = (
                [bastion, "serve", "--port", str(ports["bastion-pg"]), "--migrate"],
                production,
            )
            commands["hand-written-pg"] = (
                [*baseline, "--port", str(ports["hand-written-pg"]), "--database", database_url],
                access_log.outside_env(),
            )
        with contextmanager_all(commands, ports) as processes:
            on_bastion = [name for name in ("bastion", "granian", "bastion-pg") if name in ports]
            credentials = {name: enrol(ports[name]) for name in on_bastion}
            yield Fleet(
                ports, {name: process.pid for name, process in processes.items()}, credentials, secret
            )


def _processes() -> tuple[dict[int, int], dict[int, float]]:
    """Every process's parent and user + system CPU seconds, from /proc (empty off Linux)."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            raw = (entry / "stat").read_text()
        except OSError:  # gone meanwhile, or no /proc
            continue
        fields = raw[raw.rindex(")") + 2 :].split()  # after "pid (comm) ": state, ppid, ...
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return parents, times


def _tree(pid: int, parents: dict[int, int]) -> list[int]:
    """``pid`` and its descendants (a server's workers)."""
    tree, found = [pid], []
    while tree:
        current = tree.pop()
        found.append(current)
        tree.extend(child for child, parent in parents.items() if parent == current)
    return found


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process and its descendants (a server's workers), from /proc.

    On a shared machine a server's requests per second also depend on how much of a core it got;
    its CPU time per request does not, so each served row shows both. None off Linux.
    """
    parents, times = _processes()
    if pid not in times:
        return None
    return sum(times[member] for member in _tree(pid, parents) if member in times)


@contextmanager
def alone(pids: dict[str, int], serving: str) -> Iterator[None]:
    """Every other server of the run stopped (SIGSTOP) while ``serving`` is measured alone.

    A chat row's p99 is its 10th-slowest message of 1,000: on two cores, the periodic work of the
    eight idle servers the run also started (their checkpoints, flushes and timers) lands on some
    of those messages, and the row would measure the neighbours. PostgreSQL and Redis go on.
    """
    parents, _ = _processes()
    others = [member for name, pid in pids.items() if name != serving for member in _tree(pid, parents)]
    stopped: list[int] = []
    try:
        for pid in others:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
                stopped.append(pid)
        yield
    finally:
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def served_rows(
    ports: dict[str, int],
    pids: dict[str, int],
    credentials: dict[str, Credentials],
    secret: str,
    seconds: float,
    rounds: int,
) -> list[Row]:
    bearer = baseline_app.token(secret)
    probes: dict[str, tuple[str, str, dict[str, str]]] = {
        "bare /health": ("bare", "/health", {}),
        "hand-written /me": ("hand-written", "/me", {"Authorization": f"Bearer {bearer}"}),
        "slowapi /me": ("slowapi", "/me", {"Authorization": f"Bearer {bearer}"}),
        "uvloop /health": ("uvloop", "/health", {}),
        "asyncio /health": ("asyncio", "/health", {}),
    }
    production = "bastion-pg" in credentials
    if production:
        probes["hand-written-pg /me"] = ("hand-written-pg", "/me", {"Authorization": f"Bearer {bearer}"})
    for server in ("bastion", "granian", *(("bastion-pg",) if production else ())):
        found = credentials[server]
        probes[f"{server} /health"] = (server, "/health", {})
        probes[f"{server} /me"] = (server, "/api/auth/me", {"Authorization": f"Bearer {found.token}"})
        probes[f"{server} /sessions"] = (server, "/api/sessions", {"X-API-Key": found.key})
    for server, path, headers in probes.values():
        wrk(ports[server], 1, path, headers)  # warm up, and fail early on a wrong answer
    rates: dict[str, list[float]] = {name: [] for name in probes}
    cpu: dict[str, list[float]] = {name: [] for name in probes}
    for _ in range(rounds):
        for name, (server, path, headers) in probes.items():
            before = cpu_seconds(pids[server])
            answered_rate, answered = wrk_figures(ports[server], seconds, path, headers)
            after = cpu_seconds(pids[server])
            rates[name].append(answered_rate)
            if before is not None and after is not None:
                cpu[name].append((after - before) / answered * 1000)
    m = {
        name: Served(statistics.median(rates[name]), statistics.median(cpu[name]) if cpu[name] else None)
        for name in probes
    }
    return [
        ratio_row("Bastion `GET /health`", m["bastion /health"], m["bare /health"], "bare FastAPI", 0.80),
        ratio_row(
            "Bastion `GET /api/auth/me`, user token",
            m["bastion /me"],
            m["hand-written /me"],
            "FastAPI + PyJWT + DB read",
            2.0,
        ),
        ratio_row(
            "Bastion `GET /api/auth/me`, user token", m["bastion /me"], m["slowapi /me"], "same + slowapi"
        ),
        ratio_row(
            "Bastion `GET /api/auth/me`, user token",
            m["bastion /me"],
            m["bastion /health"],
            "its own /health",
            0.5,
        ),
        ratio_row(
            "Bastion `GET /api/sessions`, API key",
            m["bastion /sessions"],
            m["hand-written /me"],
            "FastAPI + PyJWT + DB read",
        ),
        ratio_row(
            "Bastion `GET /api/sessions`, API key", m["bastion /sessions"], m["slowapi /me"], "same + slowapi"
        ),
        ratio_row("granian: Bastion `GET /health`", m["granian /health"], m["bastion /health"], "uvicorn"),
        ratio_row("granian: Bastion `GET /api/auth/me`", m["granian /me"], m["bastion /me"], "uvicorn"),
        ratio_row(
            "granian: Bastion `GET /api/sessions`", m["granian /sessions"], m["bastion /sessions"], "uvicorn"
        ),
        ratio_row(
            "`uvicorn --factory`, asyncio loop: `GET /health`",
            m["asyncio /health"],
            m["uvloop /health"],
            "the same on uvloop",
        ),
        ratio_row(
            "`bastion serve`: `GET /health`", m["bastion /health"], m["uvloop /health"], "`uvicorn --factory`"
        ),
        *(production_rows(m) if production else []),
    ]


def production_rows(m: dict[str, Served]) -> list[Row]:
    """The same reads with Bastion on PostgreSQL + Redis (every limit a Redis round trip), and the
    hand-written baseline reading the same PostgreSQL."""
    return [
        ratio_row(
            "PostgreSQL + Redis: Bastion `GET /health`",
            m["bastion-pg /health"],
            m["bare /health"],
            "bare FastAPI",
        ),
        ratio_row(
            "PostgreSQL + Redis: Bastion `GET /api/auth/me`",
            m["bastion-pg /me"],
            m["hand-written-pg /me"],
            "FastAPI + PyJWT + PostgreSQL read",
            2.0,
        ),
        ratio_row(
            "PostgreSQL + Redis: Bastion `GET /api/auth/me`",
            m["bastion-pg /me"],
            m["bastion-pg /health"],
            "its own /health",
            0.5,
        ),
        ratio_row(
            "PostgreSQL + Redis: Bastion `GET /api/sessions`, API key",
            m["bastion-pg /sessions"],
            m["hand-written-pg /me"],
            "FastAPI + PyJWT + PostgreSQL read",
        ),
    ]


def profiles(py_spy: str, fleet: Fleet, seconds: float) -> None:
    """Where the served Bastion's time goes on ``/health`` and on an authenticated read."""
    token = {"Authorization": f"Bearer {fleet.credentials['bastion'].token}"}
    for path, headers in (("/health", {}), ("/api/auth/me", token)):
        access_log.profile(py_spy, fleet.pids["bastion"], fleet.ports["bastion"], seconds, path, headers)


# 2. a chat message -------------------------------------------------------------------------------


def chat_rows(port: int, token: str, upstream_url: str, messages: int, label: str = "") -> list[Row]:
    auth_header = {"Authorization": f"Bearer {token}"}
    direct_url = f"{upstream_url}/chat/completions"
    message = {"content": "a short benchmark prompt"}  # what proxy.BODY asks the upstream directly
    direct: list[float] = []
    via: list[float] = []
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:

        def new_session() -> str:
            created = client.post("/api/sessions", json={}, headers=auth_header).raise_for_status()
            return str(created.json()["id"])

        session = new_session()
        for n in range(messages + 20):
            if n and n % MESSAGES_PER_SESSION == 0:
                session = new_session()
            d = proxy.timed_post(client, direct_url, {})
            v = proxy.timed_post(client, f"/api/sessions/{session}/messages", auth_header, message)
            if n >= 20:  # the first ones warm both paths up
                direct.append(d)
                via.append(v)
    rows = []
    for name, q, target in (("p50", 49, 2.0), ("p99", 98, 5.0)):
        d = statistics.quantiles(direct, n=100)[q] * 1000
        v = statistics.quantiles(via, n=100)[q] * 1000
        added = v - d
        rows.append(
            Row(
                f"{label}chat message through Bastion, {name}",
                f"{v:.2f} ms",
                f"fake upstream directly {d:.2f} ms",
                f"{added:+.2f} ms added",
                f"< {target:g} ms: {'met' if added < target else 'NOT MET'}",
            )
        )
    return rows


# 3. in process ------------------------------------------------------------------------------------


def decisions(value: float) -> str:
    return f"{value:,.0f} decisions/s"


async def limiter_rows(quick: bool) -> list[Row]:
    if quick:
        ratelimit.ROUNDS, ratelimit.MEMORY_N, ratelimit.REDIS_N = 2, 10_000, 1_000
    families = await ratelimit.memory_figures()
    plain = families[ratelimit.PLAIN]
    ours = plain[ratelimit.BASTION_LOOKED_UP]
    rows = [
        Row(
            "limiter in process, per request",
            decisions(ours),
            f"`limits` moving window {decisions(plain[ratelimit.MOVING])}",
            f"{ours / plain[ratelimit.MOVING]:.1f}x",
            f">= 10x: {'met' if ours / plain[ratelimit.MOVING] >= 10 else 'NOT MET'}",
        ),
        Row(
            "limiter in process, per request",
            decisions(ours),
            f"minimal GCRA {decisions(plain[ratelimit.GCRA])}",
            f"{ours / plain[ratelimit.GCRA]:.2f}x",
            f">= 0.5x: {'met' if ours / plain[ratelimit.GCRA] >= 0.5 else 'NOT MET'}",
        ),
    ]
    if shutil.which("redis-server") is None:
        return [*rows, Row("limiter on Redis", "skipped: redis-server is not installed", "", "")]
    server = RedisServer().start()
    try:
        figures, trips = await ratelimit.redis_figures(server.url, 16)
    finally:
        server.stop()
    ours = figures["bastion redis"]
    raw = figures["raw EVALSHA no-op (same client)"]
    moving = figures["limits moving window redis"]
    return [
        *rows,
        Row(
            f"limiter on Redis, 16 callers ({trips:.2f} round trips/decision)",
            decisions(ours),
            f"raw EVALSHA of a no-op {decisions(raw)}",
            f"{ours / raw:.2f}x",
            f">= 0.8x: {'met' if ours / raw >= 0.8 else 'NOT MET'}",
        ),
        Row(
            "limiter on Redis, 16 callers",
            decisions(ours),
            f"`limits` moving window {decisions(moving)}",
            f"{ours / moving:.2f}x",
        ),
    ]


def guard_rows(quick: bool) -> list[Row]:
    examples = load_examples(*guard.DATA)
    scanner = Guard(GuardConfig(max_lengths={"message": 100_000, "journal": 100_000, "context": 200_000}))
    text = guard.benign_10k(examples)
    adversarial = guard.adversarial_100k()
    repeat = 50 if quick else 300
    journal, context = ScanContext(field="journal"), ScanContext(field="context")
    wall, cpu, _ = guard.timings_ms(lambda: scanner.scan_input(text, journal), repeat)
    hostile = guard.median_ms(lambda: scanner.scan_input(adversarial, context), max(5, repeat // 15))
    message = ScanContext(field="message")
    _, short, _ = guard.timings_ms(lambda: scanner.scan_input(guard.SHORT_MESSAGE, message), repeat * 10)
    return [
        Row("guard input scan, a 24-character chat message", f"CPU {short * 1000:.0f} µs", "", ""),
        Row(
            "guard input scan, 10 KB benign",
            f"{wall:.3f} ms (CPU {cpu:.3f} ms)",
            "",
            "",
            f"< 0.5 ms: {'met' if wall < 0.5 else 'NOT MET'}",
        ),
        Row(
            "guard input scan, 100 KB adversarial",
            f"{hostile:.2f} ms",
            "",
            f"{hostile / wall:.0f}x the 10 KB",
        ),
    ]


def model_client_rows(quick: bool) -> list[Row]:
    result = model_client.figures(calls=500 if quick else 2000)
    ours = result[model_client.PROVIDER]
    return [
        Row(
            "model endpoint call, the caller's CPU",
            f"{ours:.0f} µs",
            f"httpx AsyncClient, same call {result[model_client.HTTPX]:.0f} µs",
            f"{ours / result[model_client.HTTPX]:.2f}x",
        ),
        Row(
            "model endpoint call, the caller's CPU",
            f"{ours:.0f} µs",
            f"bare aiohttp {result[model_client.AIOHTTP]:.0f} µs",
            f"{ours / result[model_client.AIOHTTP]:.2f}x",
        ),
        Row(
            "model endpoint call, the caller's CPU",
            f"{ours:.0f} µs",
            f"bare asyncio protocol + httptools {result[model_client.FLOOR]:.0f} µs",
            f"{ours / result[model_client.FLOOR]:.2f}x",
        ),
    ]


def hashing_rows(quick: bool) -> list[Row]:
    seconds = 1.0 if quick else 3.0
    argon2 = auth.hashes_per_second("argon2", seconds)
    bcrypt = auth.hashes_per_second("bcrypt", seconds)
    return [
        Row(
            "password verify, argon2id (m=19 MiB, t=2)",
            f"{argon2:.1f} verifies/s",
            f"bcrypt (12 rounds) {bcrypt:.1f} verifies/s",
            f"{argon2 / bcrypt:.2f}x",
        )
    ]


# the table ---------------------------------------------------------------------------------------


def table(rows: list[Row]) -> str:
    header = Row("what (one run, same machine)", "Bastion", "baseline, same run", "ratio", "target")
    lines = [header, Row("---", "---:", "---", "---:", "---"), *rows]
    return "\n".join(f"| {r.measure} | {r.figure} | {r.baseline} | {r.ratio} | {r.target} |" for r in lines)


def step(name: str, run: Callable[[], list[Row]]) -> list[Row]:
    started = time.perf_counter()
    print(f"{name} ...", file=sys.stderr, flush=True)
    rows = run()
    print(f"{name}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short, noisier run")
    parser.add_argument("--wrk-seconds", type=float, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--messages", type=int, default=None)
    parser.add_argument(
        "--py-spy", default=None, help="py-spy executable: profile the served Bastion's reads under wrk"
    )
    args = parser.parse_args()
    seconds = args.wrk_seconds or (1.0 if args.quick else 3.0)
    rounds = args.rounds or (2 if args.quick else 5)
    messages = args.messages or (150 if args.quick else 1000)
    rows: list[Row] = []
    root = Path(tempfile.mkdtemp(prefix="bastion-bench-all-"))
    with FakeUpstream(keep_alive=True) as upstream, servers(root, upstream.base_url) as fleet:
        if shutil.which("wrk") is None:
            rows.append(Row("served rows", "skipped: wrk is not installed (scripts/provision.sh)", "", ""))
        else:
            rows += step(
                f"served, wrk {seconds:g} s x {rounds} rounds",
                lambda: served_rows(
                    fleet.ports, fleet.pids, fleet.credentials, fleet.secret, seconds, rounds
                ),
            )
        if args.py_spy and shutil.which("wrk"):
            profiles(args.py_spy, fleet, seconds)
        with alone(fleet.pids, "bastion"):
            rows += step(
                f"chat message x {messages}",
                lambda: chat_rows(
                    fleet.ports["bastion"], fleet.credentials["bastion"].token, upstream.base_url, messages
                ),
            )
        if "bastion-pg" in fleet.credentials:
            with alone(fleet.pids, "bastion-pg"):
                rows += step(
                    f"chat message x {messages}, PostgreSQL + Redis",
                    lambda: chat_rows(
                        fleet.ports["bastion-pg"],
                        fleet.credentials["bastion-pg"].token,
                        upstream.base_url,
                        messages,
                        label="PostgreSQL + Redis: ",
                    ),
                )
    rows += step("limiter", lambda: asyncio.run(limiter_rows(args.quick)))
    rows += step("guard", lambda: guard_rows(args.quick))
    rows += step("model endpoint client", lambda: model_client_rows(args.quick))
    rows += step("password hashing", lambda: hashing_rows(args.quick))
    mode = "quick" if args.quick else "full"
    print(
        f"\nBastion bench ({mode}: wrk -t1 -c16 {seconds:g} s x {rounds} interleaved rounds, medians; "
        f"{messages} chat messages; one worker per server; {_cpus()} cores, load {_load()})\n"
    )
    print(table(rows))
    shutil.rmtree(root, ignore_errors=True)


def _cpus() -> int:
    return os.cpu_count() or 0


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


if __name__ == "__main__":
    main()
