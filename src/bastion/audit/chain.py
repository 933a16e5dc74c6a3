# SPDX-License-Identifier: Apache-2.0
"""The audit log's hash chains: how a record's hash is computed, and how a chain is verified.

A record's hash is SHA-256 over a canonical JSON array: a format version, the previous record's
hash, and every stored field of the record but the client address and its nonce (the address
enters through its salted commitment, so an erasure can clear it without breaking the chain).
Changing any hashed field of a stored record, removing one, inserting one or reordering them
breaks the chain at that record, and ``verify`` names it.

What this cannot do: someone who can write the database can rebuild a whole chain from the point
they edit. The chain makes a change evident to anyone holding an earlier copy of a hash: the
records the stdout, file and collector sinks hold (each carries its hash), or a head noted by
``bastion audit verify`` (docs/audit.md).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bastion.audit.events import RecordKind
from bastion.audit.models import AuditChainHead, AuditRecord
from bastion.db.session import read_only

FORMAT = "bastion-audit-v1"
GENESIS = "0" * 64
CHAINS = tuple(kind.value for kind in RecordKind)
HASHED_FIELDS = (
    "id",
    "chain",
    "seq",
    "timestamp",
    "event_type",
    "result",
    "actor_type",
    "actor_id",
    "target_type",
    "target_id",
    "method",
    "route",
    "status_code",
    "latency_ms",
    "request_id",
    "anomaly_flags",
    "details",
    "ip_commitment",
)
VERIFY_PAGE = 1000


def timestamp_text(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def commit_address(ip: str, nonce: str) -> str:
    """The salted digest of a client address that the chain covers in its place."""
    return hashlib.sha256(f"{nonce}|{ip}".encode()).hexdigest()


def seal_address(record: AuditRecord) -> None:
    """Give a new record's address (if any) its nonce and commitment."""
    if record.ip_address:
        record.ip_nonce = secrets.token_hex(16)
        record.ip_commitment = commit_address(record.ip_address, record.ip_nonce)
    else:
        record.ip_address = record.ip_nonce = record.ip_commitment = None


def canonical(record: AuditRecord, prev_hash: str) -> bytes:
    body: dict[str, Any] = {name: getattr(record, name) for name in HASHED_FIELDS}
    body["timestamp"] = timestamp_text(record.timestamp)
    body["anomaly_flags"] = list(record.anomaly_flags or [])
    body["details"] = record.details or {}
    text = json.dumps([FORMAT, prev_hash, body], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode()


def record_hash(record: AuditRecord, prev_hash: str) -> str:
    return hashlib.sha256(canonical(record, prev_hash)).hexdigest()


@dataclass
class ChainReport:
    """What ``verify`` found on one chain: how far it checked and the first break, if any."""

    chain: str
    first_seq: int = 0
    last_seq: int = 0
    records: int = 0
    redacted_addresses: int = 0
    problems: list[str] = field(default_factory=list)
    broken_record: str | None = None

    @property
    def intact(self) -> bool:
        return not self.problems

    def fail(self, problem: str, record_id: str | None) -> None:
        self.problems.append(problem)
        if self.broken_record is None:
            self.broken_record = record_id


async def _records(sessionmaker: async_sessionmaker[AsyncSession], chain: str) -> AsyncIterator[AuditRecord]:
    after = -1
    while True:
        async with read_only(sessionmaker) as session:
            page = (
                await session.scalars(
                    select(AuditRecord)
                    .where(AuditRecord.chain == chain, AuditRecord.seq > after)
                    .order_by(AuditRecord.seq)
                    .limit(VERIFY_PAGE)
                )
            ).all()
        for record in page:
            yield record
        if len(page) < VERIFY_PAGE:
            return
        after = page[-1].seq


def _address_problem(record: AuditRecord) -> str | None:
    if record.ip_commitment is None:
        return "has a client address the chain never covered" if record.ip_address else None
    if record.ip_address is None:
        return None  # cleared by an erasure: the commitment alone stays in the chain
    if record.ip_nonce is None or commit_address(record.ip_address, record.ip_nonce) != record.ip_commitment:
        return "has a client address other than the one recorded"
    return None


async def verify_chain(sessionmaker: async_sessionmaker[AsyncSession], chain: str) -> ChainReport:
    """Walk ``chain`` from its anchor to its head; stop at the first break (later ones follow from it)."""
    report = ChainReport(chain)
    async with read_only(sessionmaker) as session:
        head = await session.get(AuditChainHead, chain)
    if head is None:
        report.fail(f"the {chain} chain has no head record (audit_chain_heads was edited)", None)
        return report
    expected_seq, expected_prev, previous = head.anchor_seq + 1, head.anchor_hash, None
    report.first_seq = expected_seq
    async for record in _records(sessionmaker, chain):
        where = f"record {record.id} ({chain} #{record.seq}, {record.event_type}, "
        where += f"{timestamp_text(record.timestamp)})"
        if record.seq < expected_seq:
            report.fail(f"{where} lies before the chain's anchor #{head.anchor_seq}: inserted", record.id)
        elif record.seq > expected_seq:
            missing = (
                f"#{expected_seq}"
                if record.seq == expected_seq + 1
                else f"#{expected_seq}..#{record.seq - 1}"
            )
            report.fail(f"{missing} missing before {where}: deleted", record.id)
        elif record.prev_hash != expected_prev:
            after = f"record {previous}" if previous else f"the anchor #{head.anchor_seq}"
            report.fail(f"{where} does not follow {after}: one of them was inserted or altered", record.id)
        elif record_hash(record, record.prev_hash) != record.hash:
            report.fail(f"{where} does not match its hash: edited", record.id)
        elif (problem := _address_problem(record)) is not None:
            report.fail(f"{where} {problem}: edited", record.id)
        if report.problems:
            return report
        report.records += 1
        report.last_seq = record.seq
        report.redacted_addresses += record.ip_commitment is not None and record.ip_address is None
        expected_seq, expected_prev, previous = record.seq + 1, record.hash, record.id
    if expected_seq - 1 != head.seq or expected_prev != head.hash:
        if expected_seq - 1 < head.seq:
            report.fail(
                f"#{expected_seq}..#{head.seq} missing at the end of the {chain} chain: deleted", None
            )
        else:
            report.fail(f"the {chain} chain's head (#{head.seq}) does not match its last record", previous)
    return report


async def verify(sessionmaker: async_sessionmaker[AsyncSession]) -> list[ChainReport]:
    return [await verify_chain(sessionmaker, chain) for chain in CHAINS]
