# SPDX-License-Identifier: Apache-2.0
"""The audit log (``audit_logs``), the heads of its hash chains, and the access records.

``audit_logs`` keeps the columns operators query by hand as plain columns (``event_type``,
``timestamp``, ``ip_address``, ``result``), so the runbook queries in docs/audit.md work verbatim on
SQLite and PostgreSQL. Each record belongs to one chain (its retention kind) at position ``seq``
and carries the hash of the record before it (``prev_hash``) and its own (``hash``); the chain's
head (last position and hash) and anchor (where retention last cut it) live in
``audit_chain_heads``. The client address enters the hash only through ``ip_commitment``, a
digest salted with ``ip_nonce``: an erasure clears the address and its nonce, and the chain still
verifies while the address can no longer be recovered from the digest.

``access_logs`` is the cheaper stream: one row per request (who, which route, status, latency),
written in batches, outside any chain, with its own retention.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Float, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bastion.crypto.randomness import new_id
from bastion.db.base import Base
from bastion.db.types import UTCDateTime, utcnow


class AuditRecord(Base):
    __tablename__ = "audit_logs"
    __table_args__ = (
        UniqueConstraint("chain", "seq", name="uq_audit_logs_chain_seq"),
        Index("ix_audit_logs_timestamp", "timestamp"),
        Index("ix_audit_logs_event_type_timestamp", "event_type", "timestamp"),
        Index("ix_audit_logs_ip_address_timestamp", "ip_address", "timestamp"),
        Index("ix_audit_logs_actor_id", "actor_id"),
        # Export and erasure find a person's records as target too.
        Index("ix_audit_logs_target_id", "target_id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    event_type: Mapped[str] = mapped_column(String(64), nullable=False)
    result: Mapped[str] = mapped_column(String(16), nullable=False)
    actor_type: Mapped[str | None] = mapped_column(String(16))
    actor_id: Mapped[str | None] = mapped_column(String(64))
    target_type: Mapped[str | None] = mapped_column(String(32))
    target_id: Mapped[str | None] = mapped_column(String(64))
    ip_address: Mapped[str | None] = mapped_column(String(45))
    method: Mapped[str | None] = mapped_column(String(8))
    route: Mapped[str | None] = mapped_column(String(200))
    status_code: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    request_id: Mapped[str | None] = mapped_column(String(64))
    anomaly_flags: Mapped[list[str]] = mapped_column(JSON, default=list, nullable=False)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, nullable=False)
    chain: Mapped[str] = mapped_column(String(16), nullable=False)
    seq: Mapped[int] = mapped_column(BigInteger, nullable=False)
    ip_nonce: Mapped[str | None] = mapped_column(String(32))
    ip_commitment: Mapped[str | None] = mapped_column(String(64))
    prev_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    hash: Mapped[str] = mapped_column(String(64), nullable=False)


class AuditChainHead(Base):
    """The last record of a chain, and the anchor retention left when it cut the chain's start."""

    __tablename__ = "audit_chain_heads"

    chain: Mapped[str] = mapped_column(String(16), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    hash: Mapped[str] = mapped_column(String(64), nullable=False)
    anchor_seq: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    anchor_hash: Mapped[str] = mapped_column(String(64), nullable=False)


class AccessRecord(Base):
    __tablename__ = "access_logs"
    __table_args__ = (
        Index("ix_access_logs_timestamp", "timestamp"),
        Index("ix_access_logs_user_id", "user_id"),
        Index("ix_access_logs_api_key_id", "api_key_id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    method: Mapped[str] = mapped_column(String(8), nullable=False)
    route: Mapped[str] = mapped_column(String(200), nullable=False)
    status_code: Mapped[int] = mapped_column(Integer, nullable=False)
    latency_ms: Mapped[float] = mapped_column(Float, nullable=False)
    user_id: Mapped[str | None] = mapped_column(String(64))
    api_key_id: Mapped[str | None] = mapped_column(String(64))
    ip_address: Mapped[str | None] = mapped_column(String(45))
    request_id: Mapped[str | None] = mapped_column(String(64))
