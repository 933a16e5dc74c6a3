# SPDX-License-Identifier: Apache-2.0
"""Rate limiter throughput: Bastion's limiter against baselines measured in the same run.

    .venv/bin/python bench/ratelimit.py            # starts a throwaway Redis (or uses REDIS_URL)

Prints decisions per second for Bastion's limiter (memory and Redis), the `limits` library
(moving window and sliding window counter, memory and the same Redis), a minimal hand-written GCRA
in memory and a raw EVALSHA of a no-op script on the same client; then the ratios and targets:
memory >= 10x `limits` moving window and >= 0.5x the minimal GCRA; on Redis exactly one round trip
per decision and >= 80% of the raw EVALSHA rate at the same concurrency.

In memory every contender is measured like for like: called with just the identity, over the same
1000 identities, reading the wall clock (``time.time``) once per decision, and in two families
that are never compared across: plain calls (Bastion's ``RateLimiter.decider``, the minimal GCRA
as a function, `limits`' synchronous API) and awaited calls (``await RateLimiter.hit``, the same
GCRA behind an ``await``, `limits`' asyncio API). The memory targets are judged on the plain-call
family, because that is how Bastion decides in process: the middleware and the route dependencies
call the decider directly when the storage is local, and await ``hit`` only for Redis; and on
exactly the middleware's per-request work, ``limiter.decider(policy)(identity)`` (the lookup
included, the figure without it is printed beside it). The awaited family is printed too: it is
what code awaiting ``hit`` pays.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from limits import RateLimitItemPerSecond
from limits import storage as limits_storage
from limits import strategies as limits_strategies
from limits.aio import storage as limits_aio_storage
from limits.aio import strategies as limits_aio_strategies
from tests.support.redis_counting import counting_client, round_trips
from tests.support.servers import RedisServer

from bastion.ratelimit.algorithm import Rate
from bastion.ratelimit.escalation import Escalation
from bastion.ratelimit.policies import Policy, PolicyRule, Scope
from bastion.ratelimit.service import RateLimiter
from bastion.ratelimit.storage import MemoryStorage, RedisStorage

KEYS = [f"ip:10.0.{i // 256}.{i % 256}" for i in range(1000)]
LIMIT_PER_SECOND = 100_000  # generous: every decision in the run is an admission (the common path)
MEMORY_N = 50_000  # decisions per round
REDIS_N = 4_000
ROUNDS = 5  # contenders take turns; each keeps its best round (the machine may be shared)
CONCURRENCY = (1, 16)

Call = Callable[[str], Awaitable[object]]


def rate_per_second(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def bastion_limiter(storage: MemoryStorage | RedisStorage) -> RateLimiter:
    rate = Rate(LIMIT_PER_SECOND, 1.0, LIMIT_PER_SECOND)
    return RateLimiter(
        storage=storage,
        policies={Policy.GLOBAL: PolicyRule(Policy.GLOBAL, rate, Scope.IP)},
        escalation=Escalation(),
        clock=time.time,
        fail_mode="closed",
    )


# Every contender is called with just the key, bound with functools.partial (a C-level call), so
# none pays for an extra Python frame the others do not.
async def time_async(n: int, call: Call, concurrency: int = 1) -> float:
    keys = KEYS
    per_worker = n // concurrency

    async def worker(offset: int) -> None:
        for i in range(per_worker):
            await call(keys[(i + offset) % 1000])

    started = time.perf_counter()
    await asyncio.gather(*(worker(w * 37) for w in range(concurrency)))
    return rate_per_second(per_worker * concurrency, time.perf_counter() - started)


def time_sync(n: int, call: Callable[[str], object]) -> float:
    keys = KEYS
    started = time.perf_counter()
    for i in range(n):
        call(keys[i % 1000])
    return rate_per_second(n, time.perf_counter() - started)


def time_as_middleware(n: int, limiter: RateLimiter, policy: Policy) -> float:
    """``time_sync`` of Bastion's decision plus the lookup the middleware makes on each request."""
    keys = KEYS
    started = time.perf_counter()
    for i in range(n):
        decide = limiter.decider(policy)
        if decide is not None:
            decide(keys[i % 1000])
    return rate_per_second(n, time.perf_counter() - started)


def minimal_gcra() -> Callable[[str], bool]:
    """The least a GCRA decision can do in Python: one dict read, arithmetic, one dict write."""
    tats: dict[str, float] = {}
    interval = 1.0 / LIMIT_PER_SECOND
    tolerance = interval * LIMIT_PER_SECOND
    clock = time.time

    def hit(key: str) -> bool:
        now = clock()
        tat = tats.get(key, now)
        if tat < now:
            tat = now
        new_tat = tat + interval
        if new_tat - tolerance > now:
            return False
        tats[key] = new_tat
        return True

    return hit


def awaited(function: Callable[[str], bool]) -> Call:
    """The same function behind an ``await``, as every Bastion call site awaits its limiter."""

    async def call(key: str) -> bool:
        return function(key)

    return call


async def best_of(contenders: dict[str, Callable[[], Awaitable[float]]]) -> dict[str, float]:
    best = dict.fromkeys(contenders, 0.0)
    for _ in range(ROUNDS):
        for name, run in contenders.items():
            # Start each run on a quiet interpreter: no garbage left by the previous contender,
            # and `limits`' memory storage's expiry timer (a thread firing 10 ms after its last
            # hit) already run rather than running inside the next contender's measurement.
            gc.collect()
            await asyncio.sleep(0.03)
            best[name] = max(best[name], await run())
    return best


PLAIN = "plain call"
AWAITED = "awaited"
BASTION = "bastion"
BASTION_LOOKED_UP = "bastion, looked up per request"
GCRA = "minimal GCRA"
MOVING = "limits moving window"
SLIDING = "limits sliding window"


async def memory_figures() -> dict[str, dict[str, float]]:
    """Decisions per second by family (plain call, awaited), then by contender."""
    item = RateLimitItemPerSecond(LIMIT_PER_SECOND)
    policy = Policy.GLOBAL  # as a route dependency holds it: resolved once, not per call
    local = bastion_limiter(MemoryStorage())
    decide = local.decider(policy)
    if decide is None:
        raise RuntimeError("an in-process limiter has a local decider")
    limiter = bastion_limiter(MemoryStorage())
    gcra_plain = minimal_gcra()
    gcra_awaited = awaited(minimal_gcra())
    moving = limits_strategies.MovingWindowRateLimiter(limits_storage.MemoryStorage())
    sliding = limits_strategies.SlidingWindowCounterRateLimiter(limits_storage.MemoryStorage())
    aio_moving = limits_aio_strategies.MovingWindowRateLimiter(limits_aio_storage.MemoryStorage())
    aio_sliding = limits_aio_strategies.SlidingWindowCounterRateLimiter(limits_aio_storage.MemoryStorage())

    async def plain(call: Callable[[str], object]) -> float:
        return time_sync(MEMORY_N, call)

    async def sync_lookup() -> float:
        return time_as_middleware(MEMORY_N, local, policy)

    best = await best_of(
        {
            # What the middleware calls with in-process storage: decide(identity), clock inside.
            f"{PLAIN}/{BASTION}": lambda: plain(decide),
            f"{PLAIN}/{BASTION_LOOKED_UP}": lambda: sync_lookup(),
            f"{PLAIN}/{GCRA}": lambda: plain(gcra_plain),
            f"{PLAIN}/{MOVING}": lambda: plain(partial(moving.hit, item)),
            f"{PLAIN}/{SLIDING}": lambda: plain(partial(sliding.hit, item)),
            f"{AWAITED}/{BASTION}": lambda: time_async(MEMORY_N, partial(limiter.hit, policy)),
            f"{AWAITED}/{GCRA}": lambda: time_async(MEMORY_N, gcra_awaited),
            f"{AWAITED}/{MOVING}": lambda: time_async(MEMORY_N, partial(aio_moving.hit, item)),
            f"{AWAITED}/{SLIDING}": lambda: time_async(MEMORY_N, partial(aio_sliding.hit, item)),
        }
    )
    families: dict[str, dict[str, float]] = {PLAIN: {}, AWAITED: {}}
    for key, value in best.items():
        family, name = key.split("/")
        families[family][name] = value
    return families


async def redis_figures(url: str, concurrency: int) -> tuple[dict[str, float], float]:
    item = RateLimitItemPerSecond(LIMIT_PER_SECOND)
    client = counting_client(url, max_connections=concurrency)
    aio_uri = "async+" + url
    moving = limits_aio_strategies.MovingWindowRateLimiter(
        limits_aio_storage.RedisStorage(aio_uri, implementation="redispy", max_connections=concurrency)
    )
    sliding = limits_aio_strategies.SlidingWindowCounterRateLimiter(
        limits_aio_storage.RedisStorage(aio_uri, implementation="redispy", max_connections=concurrency)
    )
    decisions = 0
    trips = 0
    try:
        await client.flushdb()
        storage = RedisStorage(client)
        await storage.load_scripts()
        noop = await client.script_load("return 1")
        # Open every pooled connection first, so connection set-up is not counted as round trips.
        await asyncio.gather(*(client.ping() for _ in range(concurrency)))
        limiter = bastion_limiter(storage)
        policy = Policy.GLOBAL

        async def bastion() -> float:
            nonlocal decisions, trips
            before = round_trips()
            rate = await time_async(REDIS_N, partial(limiter.hit, policy), concurrency)
            trips += round_trips() - before
            decisions += REDIS_N // concurrency * concurrency
            return rate

        figures = await best_of(
            {
                "raw EVALSHA no-op (same client)": lambda: time_async(
                    REDIS_N, partial(client.evalsha, noop, 1), concurrency
                ),
                "bastion redis": bastion,
                "limits moving window redis": lambda: time_async(
                    REDIS_N, partial(moving.hit, item), concurrency
                ),
                "limits sliding window redis": lambda: time_async(
                    REDIS_N, partial(sliding.hit, item), concurrency
                ),
            }
        )
    finally:
        await client.aclose()
    return figures, trips / decisions


def show(figures: dict[str, float]) -> None:
    for name, value in figures.items():
        print(f"  {name:<48} {value:>12,.0f} decisions/s")


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT MET"


async def main() -> int:
    server: RedisServer | None = None
    url = os.environ.get("REDIS_URL")
    if not url:
        server = RedisServer().start()
        url = server.url
    try:
        print(
            f"memory (one event loop, {len(KEYS)} identities, time.time() per decision, "
            f"best of {ROUNDS} rounds)"
        )
        memory = await memory_figures()
        labels = {
            BASTION: {
                PLAIN: "bastion decide(identity)",
                AWAITED: "bastion await RateLimiter.hit(policy, identity)",
            },
            BASTION_LOOKED_UP: {PLAIN: "bastion limiter.decider(policy)(identity)"},
            GCRA: {PLAIN: "minimal GCRA function", AWAITED: "minimal GCRA behind an await"},
            MOVING: {
                PLAIN: "limits moving window memory (sync API)",
                AWAITED: "limits moving window memory (asyncio API)",
            },
            SLIDING: {
                PLAIN: "limits sliding window memory (sync API)",
                AWAITED: "limits sliding window memory (asyncio API)",
            },
        }
        ratios: dict[str, tuple[float, float]] = {}
        for family, figures in memory.items():
            print(f" {family} family")
            show({labels[name][family]: value for name, value in figures.items()})
            for name in (BASTION, BASTION_LOOKED_UP):
                if name not in figures:
                    continue
                ours = figures[name]
                vs_moving = ours / figures[MOVING]
                vs_gcra = ours / figures[GCRA]
                ratios[f"{family}/{name}"] = (vs_moving, vs_gcra)
                print(
                    f"  {labels[name][family]}: {vs_moving:.1f}x limits moving window, "
                    f"{ours / figures[SLIDING]:.1f}x sliding window, {vs_gcra:.2f}x minimal GCRA"
                )
        # Judged on exactly what the middleware runs per request: the lookup and the call.
        vs_moving, vs_gcra = ratios[f"{PLAIN}/{BASTION_LOOKED_UP}"]
        ok = vs_moving >= 10 and vs_gcra >= 0.5
        print(
            f"  targets (plain calls, as the middleware decides) >= 10x limits moving window: "
            f"{vs_moving:.1f}x, >= 0.5x minimal GCRA: {vs_gcra:.2f}x: {verdict(ok)}"
        )
        awaited_moving, awaited_gcra = ratios[f"{AWAITED}/{BASTION}"]
        print(
            f"  for information, awaited family: {awaited_moving:.1f}x limits moving window, "
            f"{awaited_gcra:.2f}x minimal GCRA "
            f"({verdict(awaited_moving >= 10 and awaited_gcra >= 0.5)} by the same bars)"
        )

        for concurrency in CONCURRENCY:
            print(f"redis (one client, {concurrency} concurrent caller(s), best of {ROUNDS} rounds)")
            redis, trips = await redis_figures(url, concurrency)
            show(redis)
            vs_raw = redis["bastion redis"] / redis["raw EVALSHA no-op (same client)"]
            vs_moving = redis["bastion redis"] / redis["limits moving window redis"]
            vs_sliding = redis["bastion redis"] / redis["limits sliding window redis"]
            print(f"  round trips per decision: {trips:.3f}")
            print(f"  bastion / raw EVALSHA no-op: {vs_raw:.2f}x")
            print(f"  bastion / limits moving window: {vs_moving:.2f}x, sliding window: {vs_sliding:.2f}x")
            met = abs(trips - 1.0) < 1e-9 and vs_raw >= 0.8
            ok = ok and met
            print(f"  targets 1 round trip per decision, >= 80% of raw EVALSHA: {verdict(met)}")
        return 0 if ok else 1
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
