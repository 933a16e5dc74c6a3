# SPDX-License-Identifier: Apache-2.0
"""`bastion db rekey` throughput on SQLite and PostgreSQL, against the cipher alone.

Run: ``.venv/bin/python bench/rekey.py [--values 20000] [--batch 500]``. Seeds journal entries
(title and content, so two sealed values each) under an old key, then re-seals them all under a new
key with ``bastion.crypto.rekey``, and prints values re-sealed per second on each backend. The
baseline, measured in the same run, is the cipher alone re-sealing the same values in memory (open
under the old key, seal under the new): the ratio is what the database round trips cost.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from sqlalchemy import insert
from tests.support.servers import PostgresServer

from bastion.crypto import material
from bastion.crypto.fields import FieldCipher
from bastion.crypto.registry import JOURNAL_CONTENT, JOURNAL_TITLE
from bastion.crypto.rekey import rekey
from bastion.db import migrate
from bastion.db.engine import create_engine, create_sessionmaker
from bastion.journal.models import JournalEntry

TEXT = "A day of small things: a walk, a call with my sister, an early night. " * 8


def keys() -> tuple[str, str]:
    return tuple(f"{kid}:" + material.encryption_key().split(":", 1)[1] for kid in ("old", "new"))  # type: ignore[return-value]


def cipher_alone(count: int, old: str, new: str) -> float:
    before = FieldCipher.from_setting(old, environment="bench")
    after = FieldCipher.from_setting(f"{new},{old}", environment="bench")
    sealed = [(str(n), JOURNAL_CONTENT.seal(before, TEXT, str(n))) for n in range(count)]
    started = time.perf_counter()
    for row_id, token in sealed:
        JOURNAL_CONTENT.seal(after, JOURNAL_CONTENT.open(after, token, row_id), row_id)
    return count / (time.perf_counter() - started)


async def through_database(url: str, count: int, batch: int, old: str, new: str) -> float:
    await asyncio.to_thread(migrate.upgrade, url)
    before = FieldCipher.from_setting(old, environment="bench")
    now = datetime.now(UTC)
    rows = []
    for _ in range(count // 2):
        entry_id = uuid.uuid4().hex
        rows.append(
            {
                "id": entry_id,
                "owner_api_key_id": "bench",
                "title_ciphertext": JOURNAL_TITLE.seal(before, "A title", entry_id),
                "content_ciphertext": JOURNAL_CONTENT.seal(before, TEXT, entry_id),
                "version": 1,
                "created_at": now,
                "updated_at": now,
            }
        )
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            for start in range(0, len(rows), 1000):
                await connection.execute(insert(JournalEntry), rows[start : start + 1000])
        after = FieldCipher.from_setting(f"{new},{old}", environment="bench")
        raw = material.parse_encryption_keys(f"{new},{old}")
        started = time.perf_counter()
        reports = await rekey(engine, create_sessionmaker(engine), after, raw_keys=raw, batch_size=batch)
        elapsed = time.perf_counter() - started
    finally:
        await engine.dispose()
    resealed = sum(report.resealed for report in reports.values())
    assert resealed == 2 * len(rows), reports
    return resealed / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--values", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    old, new = keys()
    baseline = cipher_alone(args.values, old, new)
    print(f"{args.values} values of {len(TEXT)} characters, batches of {args.batch}")
    print(f"cipher alone (baseline): {baseline:,.0f} values/s")
    root = Path(tempfile.mkdtemp(prefix="bastion-bench-rekey-"))
    sqlite = asyncio.run(
        through_database(f"sqlite+aiosqlite:///{root / 'rekey.db'}", args.values, args.batch, old, new)
    )
    print(f"sqlite:     {sqlite:,.0f} values/s  ({sqlite / baseline:.2f}x the cipher alone)")
    server = PostgresServer(Path(tempfile.mkdtemp(prefix="bastion-bench-pg-"))).start()
    try:
        postgres = asyncio.run(through_database(server.url(), args.values, args.batch, old, new))
    finally:
        server.stop()
    print(f"postgresql: {postgres:,.0f} values/s  ({postgres / baseline:.2f}x the cipher alone)")


if __name__ == "__main__":
    main()
