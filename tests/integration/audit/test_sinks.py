# SPDX-License-Identifier: Apache-2.0
"""Audit sinks: stdout and rotated files written before record() returns; an HTTP collector fed
in batches that survives being down, failing or slow without holding up the audited action."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bastion.audit.chain import verify
from bastion.audit.events import AuditEvent, Result
from bastion.audit.service import AuditService
from bastion.audit.sinks import AuditFanout, CollectorSink, FileSink, StreamSink, build_fanout
from bastion.db.engine import create_engine, create_sessionmaker
from bastion.observability.delivery import Courier
from bastion.observability.logging import configure_logging
from bastion.observability.metrics import Metrics
from bastion.settings import Settings
from tests.conftest import SettingsFactory
from tests.support.servers import free_port

SECRET_SHAPED = "bst_live_should_never_be_here"


@pytest.fixture
async def sessionmaker(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    from bastion.db import migrate

    url = f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}"
    await asyncio.to_thread(migrate.upgrade, url)
    engine = create_engine(url)
    try:
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()


class Collector:
    """An HTTP collector on loopback: answers each POST with the next scripted status (200 after
    the script), optionally holding every answer until ``release`` is set."""

    def __init__(self, port: int, statuses: list[int] | None = None) -> None:
        self.port = port
        self.statuses = list(statuses or [])
        self.batches: list[dict[str, object]] = []
        self.headers: list[str] = []
        self.release = asyncio.Event()
        self.release.set()
        self.arrived = asyncio.Event()
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> Collector:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    @property
    def records(self) -> list[dict[str, object]]:
        return [record for batch in self.batches for record in batch["records"]]  # type: ignore[attr-defined]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                body = await reader.readexactly(length)
                self.arrived.set()
                await self.release.wait()
                status = self.statuses.pop(0) if self.statuses else 200
                if status == 200:
                    self.batches.append(json.loads(body))
                    self.headers.append(head.decode("latin-1"))
                writer.write(f"HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n".encode())
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def courier(port: int, metrics: Metrics, **options: object) -> Courier:
    values: dict[str, object] = {"flush_seconds": 0.05, "backoff_seconds": 0.05, "max_backoff_seconds": 0.2}
    values.update(options)
    return Courier(
        f"http://127.0.0.1:{port}/ingest", kind="audit", envelope="records", metrics=metrics, **values
    )  # type: ignore[arg-type]


async def until(condition, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


def series(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return float(value or 0)


async def test_stdout_and_file_sinks_have_each_record_before_record_returns(
    sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    stream = io.StringIO()
    path = tmp_path / "audit" / "audit.jsonl"
    fanout = AuditFanout(sinks=[StreamSink(stream), FileSink(path, max_bytes=2000, backups=3)]).attach(
        sessionmaker
    )
    audit = AuditService(sessionmaker=sessionmaker)
    made = [
        await audit.record(AuditEvent.AUTH_FAILURE, result=Result.FAILURE, ip="203.0.113.9", details={"n": i})
        for i in range(12)
    ]
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["id"] for line in lines] == [record.id for record in made]
    first = lines[0]
    assert first["event_type"] == "auth_failure" and first["ip_address"] == "203.0.113.9"
    assert first["hash"] == made[0].hash and first["seq"] == 1 and "ip_nonce" not in first
    # Rotated by size: the current file and backups together hold the newest records in order.
    files = sorted(path.parent.iterdir())
    assert len(files) > 1 and all(p.stat().st_mode & 0o777 == 0o600 for p in files)
    kept = [
        json.loads(line)
        for p in [*sorted((f for f in files if f != path), key=lambda f: -int(f.suffix[1:])), path]
        for line in p.read_text().splitlines()
    ]
    assert [line["id"] for line in kept] == [record.id for record in made][-len(kept) :]
    assert all(report.intact for report in await verify(sessionmaker))
    await fanout.aclose()


async def test_a_failing_sink_never_fails_the_audited_action(
    sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    metrics = Metrics()
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the directory should be")
    sink = FileSink(tmp_path / "audit.jsonl", max_bytes=10_000, backups=1)
    sink.handler.baseFilename = str(blocked / "audit.jsonl")
    sink.handler.close()  # the next write reopens at a path that cannot exist
    AuditFanout(sinks=[sink], metrics=metrics).attach(sessionmaker)
    record = await AuditService(sessionmaker=sessionmaker).record(AuditEvent.CONFIG_CHANGED)
    assert record.seq == 1  # stored in the database all the same
    assert series(metrics, "bastion_delivery_dropped_total", kind="audit_file", reason="write_failed") == 1


async def test_the_collector_gets_batches_with_its_token(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    metrics, port = Metrics(), free_port()
    async with Collector(port) as collector:
        sink = CollectorSink(courier(port, metrics, headers={"Authorization": "Bearer collector-token"}))
        fanout = AuditFanout(sinks=[sink], metrics=metrics).attach(sessionmaker)
        audit = AuditService(sessionmaker=sessionmaker)
        made = [await audit.record(AuditEvent.AUTH_SUCCESS, actor_id=f"u{i}") for i in range(30)]
        await until(lambda: len(collector.records) == 30)
        assert [r["id"] for r in collector.records] == [m.id for m in made]
        assert all("authorization: bearer collector-token" in h.lower() for h in collector.headers)
        assert len(collector.batches) < 30  # batched
        await fanout.aclose()
    assert series(metrics, "bastion_delivery_backlog", kind="audit") == 0


async def test_a_collector_that_is_down_then_failing_gets_everything_once_it_answers(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    metrics, port = Metrics(), free_port()
    fanout = AuditFanout(sinks=[CollectorSink(courier(port, metrics, max_attempts=60))], metrics=metrics)
    fanout.attach(sessionmaker)
    audit = AuditService(sessionmaker=sessionmaker)
    made = [await audit.record(AuditEvent.AUTH_FAILURE, ip="192.0.2.1") for _ in range(5)]  # nobody listens
    await asyncio.sleep(0.3)  # a few refused connections
    async with Collector(port, statuses=[500, 503]) as collector:
        await until(lambda: len(collector.records) == 5)
        assert [r["id"] for r in collector.records] == [m.id for m in made]
        await fanout.aclose()
    assert series(metrics, "bastion_delivery_dropped_total", kind="audit", reason="gave_up") == 0


async def test_a_slow_collector_holds_up_nothing_and_a_full_buffer_is_counted(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    metrics, port = Metrics(), free_port()
    async with Collector(port) as collector:
        collector.release.clear()  # every answer waits
        the_courier = courier(port, metrics, max_buffer=10, batch_size=5, timeout_seconds=30.0)
        fanout = AuditFanout(sinks=[CollectorSink(the_courier)], metrics=metrics).attach(sessionmaker)
        audit = AuditService(sessionmaker=sessionmaker)
        await audit.record(AuditEvent.AUTH_SUCCESS)
        await asyncio.wait_for(collector.arrived.wait(), 20)
        # The collector holds its answer; records keep being stored and returned meanwhile.
        for _ in range(25):
            await audit.record(AuditEvent.AUTH_SUCCESS)
        assert not collector.release.is_set() and collector.records == []
        dropped = series(metrics, "bastion_delivery_dropped_total", kind="audit", reason="queue_full")
        assert dropped == 15 and the_courier.dropped == 15  # 10 buffered, the rest counted
        assert all(report.intact and report.records in (0, 26) for report in await verify(sessionmaker))
        collector.release.set()
        await until(lambda: len(collector.records) == 11)
        await fanout.aclose()


def test_the_sink_setting_is_parsed_and_checked(tmp_path: Path) -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        environment="test",
        audit_log_sink=f" db , stdout,file:{tmp_path}/a.jsonl, https://collector.example/ingest ",
        audit_log_sink_token=SECRET_SHAPED,
    )
    fanout = build_fanout(settings)
    assert fanout.to_database and [sink.name for sink in fanout.sinks] == ["stdout", "file", "http"]
    collector = fanout.sinks[2]
    assert isinstance(collector, CollectorSink)
    assert collector.courier.headers["Authorization"] == f"Bearer {SECRET_SHAPED}"
    for bad in ("", "db,kafka", "file:", "https://user:pw@collector.example/", "https://c.example/?token=x"):
        with pytest.raises(ValueError):
            Settings(_env_file=None, environment="test", audit_log_sink=bad)  # type: ignore[call-arg]
    plain = Settings(_env_file=None, environment="test", audit_log_sink="stdout,http://collector.example/")  # type: ignore[call-arg]
    assert not build_fanout(plain).to_database
    # What the deploy check and every production start report for such a choice.
    found = plain.findings(lambda check: check.id.startswith("audit-"))
    assert {finding.id for finding in found} == {"audit-db-missing", "audit-http-sink"}
    warnings = " ".join(finding.message for finding in found)
    assert "no db" in warnings and "plain http" in warnings


async def test_a_record_the_database_refuses_is_logged_whole_and_still_reaches_the_sinks(
    tmp_path: Path, make_settings: SettingsFactory
) -> None:
    # A database that cannot take the record: its tables do not exist (as during an outage, the
    # write raises).
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
    sessionmaker = create_sessionmaker(engine)
    log = io.StringIO()
    configure_logging(make_settings(), stream=log)
    stream = io.StringIO()
    metrics = Metrics()
    fanout = AuditFanout(sinks=[StreamSink(stream)], metrics=metrics).attach(sessionmaker)
    try:
        with pytest.raises(Exception):  # noqa: B017 - whatever the database raised
            await AuditService(sessionmaker=sessionmaker).record(
                AuditEvent.AUTH_FAILURE, result=Result.FAILURE, ip="203.0.113.7", request_id="req-1"
            )
        unwritten = [json.loads(line) for line in log.getvalue().splitlines()]
        (line,) = [entry for entry in unwritten if entry.get("event") == "audit_unwritten"]
        assert line["level"] == "error"
        assert line["record"]["event_type"] == "auth_failure"
        assert line["record"]["request_id"] == "req-1" and line["record"]["ip_address"] == "203.0.113.7"
        (sunk,) = [json.loads(entry) for entry in stream.getvalue().splitlines()]
        assert sunk["id"] == line["record"]["id"]
        assert series(metrics, "bastion_delivery_dropped_total", kind="audit_db", reason="write_failed") == 1
    finally:
        await fanout.aclose()
        await engine.dispose()
