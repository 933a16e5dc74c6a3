# SPDX-License-Identifier: Apache-2.0
"""The cost of the access log, and of Bastion's ``/health`` against a bare FastAPI app.

Run: ``.venv/bin/python bench/access_log.py [--calls 20000] [--requests 3000] [--rounds 5]
[--wrk-seconds 5] [--baseline REV] [--py-spy PATH]``.

1. The access line alone: ``RequestContext``'s line through the configured processor chain, against
   the line and chain of the baseline revision (``--baseline``, the revision before the access log
   was split into Bastion's own fields and scanned client text). The baseline's redactor is loaded
   from git at run time, so src keeps one implementation. Two requests: ``GET /health`` and a
   ``GET`` with a path parameter and a query string. Lines go to ``/dev/null``.
2. In-process ``GET /health`` (httpx ASGITransport): ``create_app`` with default logging (INFO,
   JSON lines to ``/dev/null``) against a bare FastAPI app with one ``/health`` route.
3. Served on loopback, one worker each, under ``wrk`` (when it is installed): ``bastion serve``
   (LOG_LEVEL=INFO; INFO with the baseline revision's code; LOG_LEVEL=WARNING: no access line)
   against uvicorn serving the bare app.
   With ``--py-spy``, the INFO server is profiled during one extra wrk run and the share of
   samples under each part of the request path is printed.

Rounds alternate between the candidates so drift in the machine's load falls on all of them;
medians are printed, with ratios against the baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import importlib.util
import logging
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import structlog
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from bastion.app import create_app
from bastion.db import migrate
from bastion.observability.logging import configure_logging, redactor_for
from bastion.observability.redaction import Own
from bastion.settings import Settings
from bastion.web.request_context import RequestContext

ROOT = Path(__file__).resolve().parents[1]
# The last revision whose access line scanned every field of every line.
BASELINE = "5f8fc26"
HEADERS = [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"wrk"), (b"accept", b"*/*")]
REQUESTS = {
    "/health": {"path": "/health", "route": "/health", "query_string": b""},
    "param+query": {
        "path": "/api/sessions/3f2a9c1e8b7d4a6f9e0c1b2a3d4e5f60/messages",
        "route": "/api/sessions/{session_id}/messages",
        "query_string": b"limit=50&after=3f2a9c1e8b7d4a6f",
    },
}


def bare_app() -> FastAPI:
    app = FastAPI()

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def devnull() -> Any:
    """Where the measured lines go: a real file write per line, as to a log file, kept open."""
    return open(os.devnull, "w")


def settings_for(root: Path, **values: object) -> Settings:
    root.mkdir(parents=True, exist_ok=True)
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        environment="test",
        var_dir=root / "var",
        database_url=f"sqlite+aiosqlite:///{root / 'bench.db'}",
        rate_limit_per_minute=10_000_000,
        **values,
    )


def scope_for(kind: str) -> Scope:
    request = REQUESTS[kind]
    return {
        "type": "http",
        "method": "GET",
        "path": request["path"],
        "query_string": request["query_string"],
        "headers": HEADERS,
        "client": ("127.0.0.1", 50000),
        "route": SimpleNamespace(path=request["route"]),
        "state": {"client_ip": "127.0.0.1"},
    }


def baseline_redactor(rev: str) -> type:
    """The ``Redactor`` class of revision ``rev``, imported from a temporary copy of its module."""
    source = subprocess.run(
        ["git", "show", f"{rev}:src/bastion/observability/redaction.py"],
        cwd=ROOT,
        capture_output=True,
        check=True,
        text=True,
    ).stdout
    path = Path(tempfile.mkdtemp(prefix="bastion-bench-baseline-")) / "baseline_redaction.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("baseline_redaction", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    redactor: type = module.Redactor
    return redactor


def baseline_line(rev: str, settings: Settings, stream: Any) -> Callable[[Scope, int, float], None]:
    """The baseline revision's access line and processor chain, on a logger of its own."""
    redactor = baseline_redactor(rev)(
        extra_names=(settings.api_key_header,), secret_values=settings.secret_values()
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.ExtraAdder(),
        structlog.processors.format_exc_info,
        redactor,
    ]

    def drop_color(_logger: Any, _method: str, event: Any) -> Any:
        event.pop("color_message", None)
        return event

    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                drop_color,
                structlog.processors.JSONRenderer(sort_keys=False),
            ],
        )
    )
    std = logging.getLogger("bench.baseline.access")
    std.handlers = [handler]
    std.propagate = False
    std.setLevel(logging.INFO)
    log = structlog.wrap_logger(
        std,
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        wrapper_class=structlog.stdlib.BoundLogger,
    )

    def line(scope: Scope, status: int, elapsed: float) -> None:  # RequestContext._log at ``rev``
        client = scope.get("client")
        fields: dict[str, Any] = {
            "method": scope.get("method"),
            "path": scope.get("path"),
            "status": status,
            "duration_ms": round(elapsed * 1000, 2),
            "client": client[0] if client else None,
        }
        query = scope.get("query_string", b"")
        if query:
            fields["query"] = query.decode("latin-1")
        if log.isEnabledFor(10):
            fields["headers"] = {
                n.decode("latin-1"): v.decode("latin-1") for n, v in scope.get("headers", ())
            }
        getattr(log, "error" if status >= 500 else "info")("request", **fields)

    return line


def access_lines(rev: str, calls: int, rounds: int) -> None:
    stream = devnull()
    settings = settings_for(Path(tempfile.mkdtemp(prefix="bastion-bench-access-")))
    configure_logging(settings, stream=stream)

    async def nothing(scope: Scope, receive: Receive, send: Send) -> None:
        return None

    log = RequestContext(nothing, redactor=redactor_for(settings))._log
    lines = {
        "baseline": baseline_line(rev, settings, stream),
        # The request id now comes with the call (the baseline's came from the bound context).
        "now": lambda scope, status, elapsed: log(scope, status, elapsed, "9b1e6f0c2d3a4b5c8e7f6a5b4c3d2e1f"),
    }
    print(f"1. the access line alone ({calls} lines a round, {rounds} rounds, medians)")
    for kind in REQUESTS:
        scope = scope_for(kind)
        timings: dict[str, list[float]] = {name: [] for name in lines}
        for _ in range(rounds):
            for name, line in lines.items():
                request_id = "9b1e6f0c2d3a4b5c8e7f6a5b4c3d2e1f"
                with structlog.contextvars.bound_contextvars(
                    request_id=Own(request_id) if name == "now" else request_id
                ):
                    start = time.perf_counter()
                    for _ in range(calls):
                        line(scope, 200, 0.00123)
                    timings[name].append((time.perf_counter() - start) / calls * 1e6)
        base, now = (statistics.median(timings[name]) for name in ("baseline", "now"))
        print(
            f"   {kind:12} baseline ({rev}) {base:6.1f} us/line, now {now:6.1f} us/line: "
            f"ratio {now / base:.2f} ({base / now:.1f}x faster)"
        )


async def in_process(requests: int, rounds: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="bastion-bench-health-"))
    settings = settings_for(root)
    await asyncio.to_thread(migrate.upgrade, settings.database_url.get_secret_value())
    apps = {"bare": bare_app(), "bastion": create_app(settings)}
    configure_logging(settings, stream=devnull())
    timings: dict[str, list[float]] = {name: [] for name in apps}
    async with AsyncExitStack() as stack:
        clients = {}
        for name, app in apps.items():
            manager = await stack.enter_async_context(LifespanManager(app))
            transport = httpx.ASGITransport(app=manager.app, client=("127.0.0.1", 50000))
            clients[name] = await stack.enter_async_context(
                httpx.AsyncClient(transport=transport, base_url="http://localhost")
            )
        for http in clients.values():
            for _ in range(300):
                assert (await http.get("/health")).status_code == 200
        for _ in range(rounds):
            for name, http in clients.items():
                start = time.perf_counter()
                for _ in range(requests):
                    await http.get("/health")
                timings[name].append((time.perf_counter() - start) / requests * 1e6)
    bare, bastion = (statistics.median(timings[name]) for name in ("bare", "bastion"))
    print(f"2. in-process GET /health ({requests} requests a round, {rounds} rounds, medians)")
    print(
        f"   bare FastAPI {bare:6.1f} us/request, Bastion (INFO, access line on) {bastion:6.1f} us/request: "
        f"Bastion runs at {bare / bastion:.2f}x bare ({bastion - bare:+.1f} us)"
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def served(command: list[str], env: dict[str, str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{command[0]} did not start")
            time.sleep(0.2)
        yield process
    finally:
        process.terminate()
        process.wait(timeout=30)


def wrk(port: int, seconds: float, path: str = "/health", headers: dict[str, str] | None = None) -> float:
    """Requests per second of ``GET path`` under ``wrk -t1 -c16``; any non-2xx answer is an error."""
    return wrk_figures(port, seconds, path, headers)[0]


def wrk_figures(
    port: int, seconds: float, path: str = "/health", headers: dict[str, str] | None = None
) -> tuple[float, int]:
    """``wrk``'s requests per second and number of requests answered."""
    header_args = [arg for name, value in (headers or {}).items() for arg in ("-H", f"{name}: {value}")]
    out = subprocess.run(
        ["wrk", "-t1", "-c16", f"-d{seconds:g}s", *header_args, f"http://127.0.0.1:{port}{path}"],
        capture_output=True,
        check=True,
        text=True,
    ).stdout
    if "Non-2xx or 3xx responses" in out:
        raise RuntimeError(f"GET {path} on port {port} answered errors under load:\n{out}")
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    answered = re.search(r"(\d+) requests in", out)
    assert found and answered, out
    return float(found.group(1)), int(answered.group(1))


def profile(
    py_spy: str,
    pid: int,
    port: int,
    seconds: float,
    path: str = "/health",
    headers: dict[str, str] | None = None,
) -> None:
    """Samples the served Bastion during one wrk run; prints the share of samples under each part."""
    out = Path(tempfile.mkdtemp(prefix="bastion-bench-profile-")) / "stacks.txt"
    command = [py_spy, "record", "--pid", str(pid), "--format", "raw", "--output", str(out)]
    spy = subprocess.Popen(
        [*command, "--rate", "250", "--duration", str(round(seconds))],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wrk(port, seconds + 2, path, headers)  # py-spy writes its file when its --duration is over
    spy.wait(timeout=60)
    # Each sample of the event loop's thread goes to the deepest Bastion function on its stack (the
    # library code it called counts as its cost), or, with none, to the package running.
    frame = re.compile(r"^(?P<function>.+) \((?P<file>[^:()]+)(?::\d+)?\)$")
    counts: collections.Counter[str] = collections.Counter()
    for raw in out.read_text().splitlines():
        stack, _, number = raw.rpartition(" ")
        if "(asyncio/runners.py" not in stack:
            continue  # idle worker threads
        frames = [found for part in stack.split(";") if (found := frame.match(part.strip()))]
        ours = [n for n, found in enumerate(frames) if found["file"].startswith("bastion/")]
        if not ours:
            where = f"{frames[-1]['file'].split('/')[0]} (no Bastion frame)" if frames else "unknown"
        else:
            deepest = frames[ours[-1]]
            where = f"{deepest['function']} ({deepest['file']})"
            if ours[-1] + 1 < len(frames):  # the library it was calling: the endpoint, the socket, ...
                where += f" -> {frames[ours[-1] + 1]['file'].split('/')[0]}"
        counts[where] += int(number)
    total = sum(counts.values())
    print(f"   profile of served Bastion {path} under wrk: {total} samples of the event loop's thread,")
    print("   each to the deepest Bastion function on its stack -> the package it was calling:")
    for where, count in counts.most_common(14):
        print(f"     {100 * count / total:5.1f}%  {where}")
    print(f"   raw stacks: {out}")


def baseline_source(rev: str) -> Path:
    """A copy of revision ``rev``'s ``src``, to serve the baseline with ``PYTHONPATH``."""
    root = Path(tempfile.mkdtemp(prefix="bastion-bench-baseline-src-"))
    archive = subprocess.run(["git", "archive", rev, "src"], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True)
    return root / "src"


def outside_env() -> dict[str, str]:
    """This process's environment without Bastion's settings that a served benchmark sets itself."""
    own = ("LOG_", "DATABASE_", "REDIS_", "RATE_LIMIT", "LLM_", "ENVIRONMENT", "VAR_DIR")
    return {k: v for k, v in os.environ.items() if not k.startswith(own)}


def bastion_env(directory: Path, **values: str) -> dict[str, str]:
    """A served Bastion's environment: development, SQLite in ``directory``, the global limit lifted."""
    directory.mkdir(parents=True, exist_ok=True)
    return {
        **outside_env(),
        "ENVIRONMENT": "development",
        "LOG_LEVEL": "INFO",
        "DATABASE_URL": f"sqlite+aiosqlite:///{directory / 'bench.db'}",
        "VAR_DIR": str(directory),
        "RATE_LIMIT_PER_MINUTE": "10000000",
        **values,
    }


def served_load(rev: str, seconds: float, rounds: int, py_spy: str | None) -> None:
    if shutil.which("wrk") is None:
        print("3. served under wrk: skipped, wrk is not installed (apt-get install wrk)")
        return
    root = Path(tempfile.mkdtemp(prefix="bastion-bench-served-"))
    base_env = outside_env()
    names = ("bare", "bastion INFO", f"bastion INFO {rev}", "bastion WARNING")
    ports = {name: free_port() for name in names}
    python = sys.executable
    bastion = str(Path(python).with_name("bastion"))
    commands: dict[str, tuple[list[str], dict[str, str]]] = {
        "bare": (
            [python, __file__, "--serve-bare", str(ports["bare"])],
            base_env,
        )
    }
    for name in names[1:]:
        env = bastion_env(root / name.replace(" ", "-"), LOG_LEVEL=name.split()[1])
        if name.endswith(rev):  # the same server, its code taken from the baseline revision
            env["PYTHONPATH"] = str(baseline_source(rev))
        commands[name] = ([bastion, "serve", "--port", str(ports[name]), "--migrate"], env)
    rates: dict[str, list[float]] = {name: [] for name in commands}
    print(
        f"3. served on loopback, one worker each, wrk -t1 -c16, {seconds:g} s a run, {rounds} rounds, medians"
    )
    with contextmanager_all(commands, ports) as processes:
        for name in commands:
            wrk(ports[name], 1)  # warm up
        for _ in range(rounds):
            for name in commands:
                rates[name].append(wrk(ports[name], seconds))
        bare = statistics.median(rates["bare"])
        for name in commands:
            rate = statistics.median(rates[name])
            print(f"   {name:24} {rate:8.0f} req/s  {rate / bare:.2f}x bare")
        if py_spy:
            profile(py_spy, processes["bastion INFO"].pid, ports["bastion INFO"], seconds)


@contextmanager
def contextmanager_all(
    commands: dict[str, tuple[list[str], dict[str, str]]], ports: dict[str, int]
) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    names = list(commands)
    if not names:
        yield {}
        return
    first, rest = names[0], {name: commands[name] for name in names[1:]}
    command, env = commands[first]
    with served(command, env, ports[first]) as process, contextmanager_all(rest, ports) as others:
        yield {first: process, **others}


def serve_bare(port: int) -> None:
    import uvicorn

    uvicorn.run(bare_app(), host="127.0.0.1", port=port, access_log=False, log_level="warning")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--wrk-seconds", type=float, default=5)
    parser.add_argument("--baseline", default=BASELINE)
    parser.add_argument("--py-spy", default=None, help="py-spy executable: profile the served Bastion")
    parser.add_argument("--serve-bare", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare is not None:
        serve_bare(args.serve_bare)
    else:
        access_lines(args.baseline, args.calls, args.rounds)
        asyncio.run(in_process(args.requests, args.rounds))
        served_load(args.baseline, args.wrk_seconds, args.rounds, args.py_spy)
