# SPDX-License-Identifier: Apache-2.0
"""Password hashing cost, measured: hashes/s and full logins/s for argon2id and bcrypt.

Run: ``.venv/bin/python bench/auth.py [--seconds 5] [--workers 4]``. Uses the production defaults
(argon2id m=19 MiB t=2 p=1; bcrypt 12 rounds) and prints ratios against bcrypt measured in the same
run. Logins go through the real app (HTTP in-process, SQLite, the bounded hashing pool).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import httpx
from asgi_lifespan import LifespanManager

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from bastion.app import create_app
from bastion.auth.passwords import HashParameters, PasswordHasher
from bastion.db import migrate
from bastion.settings import Settings

PASSWORD = "Correct-Horse-9x!"  # noqa: S105 - a benchmark account


def hashes_per_second(algorithm: str, seconds: float) -> float:
    hasher = PasswordHasher(HashParameters(algorithm=algorithm))  # type: ignore[arg-type]
    stored = hasher.hash(PASSWORD)
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        hasher.verify(stored, PASSWORD)
        done += 1
    return done / (time.perf_counter() - start)


async def logins_per_second(algorithm: str, seconds: float, workers: int, concurrency: int) -> float:
    root = Path(tempfile.mkdtemp(prefix="bastion-bench-"))
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        environment="test",
        var_dir=root / "var",
        database_url=f"sqlite+aiosqlite:///{root / 'bench.db'}",
        password_hasher=algorithm,
        password_hash_workers=workers,
        login_delay_after_failures=100,
        login_ip_max_failures=100_000,
        enable_json_logging=True,
        log_level="WARNING",
    )
    await asyncio.to_thread(migrate.upgrade, settings.database_url.get_secret_value())
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app, client=("127.0.0.1", 1))
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
            await http.post("/api/auth/register", json={"email": "bench@example.com", "password": PASSWORD})
            done = 0
            deadline = time.perf_counter() + seconds
            start = time.perf_counter()

            async def worker() -> None:
                nonlocal done
                while time.perf_counter() < deadline:
                    response = await http.post(
                        "/api/auth/login", json={"email": "bench@example.com", "password": PASSWORD}
                    )
                    if response.status_code != 200:
                        raise RuntimeError(response.text)
                    done += 1

            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    results: dict[str, tuple[float, float]] = {}
    for algorithm in ("bcrypt", "argon2"):
        hashes = hashes_per_second(algorithm, args.seconds)
        logins = asyncio.run(logins_per_second(algorithm, args.seconds, args.workers, args.concurrency))
        results[algorithm] = (hashes, logins)
    base_hashes, base_logins = results["bcrypt"]
    print(f"{'algorithm':<10} {'verifies/s (1 thread)':>22} {'logins/s (app)':>16} {'vs bcrypt':>10}")
    for algorithm, (hashes, logins) in results.items():
        print(f"{algorithm:<10} {hashes:>22.1f} {logins:>16.1f} {logins / base_logins:>9.2f}x")
    print(f"argon2/bcrypt verify ratio: {results['argon2'][0] / base_hashes:.2f}")


if __name__ == "__main__":
    main()
