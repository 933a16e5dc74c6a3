# SPDX-License-Identifier: Apache-2.0
"""The audit log operators query (``audit_logs``), in hash chains, and the access records.

Every ``audit_events`` row moves to ``audit_logs`` in its original order, renamed to the flat
vocabulary (``auth.login_failed`` becomes ``auth_failure`` with ``details.method``; the outcome
``denied`` becomes the result ``failure``) and chained as if it had been written there. Downgrading
moves them back, without the chain.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

from bastion.audit.chain import CHAINS, GENESIS, record_hash, seal_address
from bastion.audit.events import LEGACY_NAMES, AuditEvent, kind_of
from bastion.audit.models import AuditRecord
from bastion.db.types import UTCDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

BATCH = 2000
LEGACY: Any = sa.table(
    "audit_events",
    *(sa.column(name, sa.String) for name in ("id", "event", "outcome", "actor_type", "actor_id")),
    *(sa.column(name, sa.String) for name in ("target_type", "target_id", "ip", "request_id")),
    sa.column("created_at", UTCDateTime()),
    sa.column("details", sa.JSON()),
)


def _create() -> None:
    op.create_table(
        "audit_logs",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("timestamp", UTCDateTime(), nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("result", sa.String(16), nullable=False),
        sa.Column("actor_type", sa.String(16)),
        sa.Column("actor_id", sa.String(64)),
        sa.Column("target_type", sa.String(32)),
        sa.Column("target_id", sa.String(64)),
        sa.Column("ip_address", sa.String(45)),
        sa.Column("method", sa.String(8)),
        sa.Column("route", sa.String(200)),
        sa.Column("status_code", sa.Integer()),
        sa.Column("latency_ms", sa.Float()),
        sa.Column("request_id", sa.String(64)),
        sa.Column("anomaly_flags", sa.JSON(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("chain", sa.String(16), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("ip_nonce", sa.String(32)),
        sa.Column("ip_commitment", sa.String(64)),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_logs"),
        sa.UniqueConstraint("chain", "seq", name="uq_audit_logs_chain_seq"),
    )
    op.create_index("ix_audit_logs_timestamp", "audit_logs", ["timestamp"])
    op.create_index("ix_audit_logs_event_type_timestamp", "audit_logs", ["event_type", "timestamp"])
    op.create_index("ix_audit_logs_ip_address_timestamp", "audit_logs", ["ip_address", "timestamp"])
    op.create_index("ix_audit_logs_actor_id", "audit_logs", ["actor_id"])
    op.create_index("ix_audit_logs_target_id", "audit_logs", ["target_id"])
    op.create_table(
        "audit_chain_heads",
        sa.Column("chain", sa.String(16), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("anchor_seq", sa.BigInteger(), nullable=False),
        sa.Column("anchor_hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("chain", name="pk_audit_chain_heads"),
    )
    op.create_table(
        "access_logs",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("timestamp", UTCDateTime(), nullable=False),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("route", sa.String(200), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("user_id", sa.String(64)),
        sa.Column("api_key_id", sa.String(64)),
        sa.Column("ip_address", sa.String(45)),
        sa.Column("request_id", sa.String(64)),
        sa.PrimaryKeyConstraint("id", name="pk_access_logs"),
    )
    op.create_index("ix_access_logs_timestamp", "access_logs", ["timestamp"])
    op.create_index("ix_access_logs_user_id", "access_logs", ["user_id"])
    op.create_index("ix_access_logs_api_key_id", "access_logs", ["api_key_id"])


def _renamed(event: str, details: dict[str, Any]) -> str:
    known = LEGACY_NAMES.get(event)
    if known is None:
        return event[:64]
    name, method = known
    if method is not None:
        details.setdefault("method", method)
    return name.value


def _moved(row: Any, heads: dict[str, tuple[int, str]]) -> dict[str, Any]:
    details = dict(row.details or {}) if isinstance(row.details, dict) else {}
    if row.outcome == "denied":
        details.setdefault("outcome", "denied")
    record = AuditRecord(
        id=row.id,
        timestamp=row.created_at,
        event_type=_renamed(row.event, details),
        result="success" if row.outcome == "success" else "failure",
        actor_type=row.actor_type,
        actor_id=row.actor_id,
        target_type=row.target_type,
        target_id=row.target_id,
        ip_address=row.ip,
        method=None,
        route=None,
        status_code=None,
        latency_ms=None,
        request_id=row.request_id,
        anomaly_flags=[],
        details=details,
    )
    record.chain = kind_of(record.event_type).value
    seal_address(record)
    seq, prev = heads[record.chain]
    record.seq, record.prev_hash = seq + 1, prev
    record.hash = record_hash(record, prev)
    heads[record.chain] = (record.seq, record.hash)
    return {column.key: getattr(record, column.key) for column in AuditRecord.__table__.columns}


def upgrade() -> None:
    _create()
    bind = op.get_bind()
    heads = {chain: (0, GENESIS) for chain in CHAINS}
    after: tuple[Any, str] | None = None
    while True:
        query = sa.select(LEGACY).order_by(LEGACY.c.created_at, LEGACY.c.id).limit(BATCH)
        if after is not None:
            at, last = after
            query = query.where(
                sa.or_(LEGACY.c.created_at > at, sa.and_(LEGACY.c.created_at == at, LEGACY.c.id > last))
            )
        rows = bind.execute(query).all()
        if rows:
            bind.execute(sa.insert(AuditRecord), [_moved(row, heads) for row in rows])
        if len(rows) < BATCH:
            break
        after = (rows[-1].created_at, rows[-1].id)
    op.bulk_insert(
        sa.table(
            "audit_chain_heads",
            sa.column("chain", sa.String),
            sa.column("seq", sa.BigInteger),
            sa.column("hash", sa.String),
            sa.column("anchor_seq", sa.BigInteger),
            sa.column("anchor_hash", sa.String),
        ),
        [
            {"chain": chain, "seq": seq, "hash": digest, "anchor_seq": 0, "anchor_hash": GENESIS}
            for chain, (seq, digest) in heads.items()
        ],
    )
    op.drop_table("audit_events")


def downgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("actor_type", sa.String(16)),
        sa.Column("actor_id", sa.String(64)),
        sa.Column("target_type", sa.String(32)),
        sa.Column("target_id", sa.String(64)),
        sa.Column("ip", sa.String(45)),
        sa.Column("request_id", sa.String(64)),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_events"),
    )
    op.create_index("ix_audit_events_created_at", "audit_events", ["created_at"])
    op.create_index("ix_audit_events_event_created_at", "audit_events", ["event", "created_at"])
    op.create_index("ix_audit_events_actor_id", "audit_events", ["actor_id"])
    op.create_index("ix_audit_events_target_id", "audit_events", ["target_id"])
    legacy = {(event.value, method): old for old, (event, method) in LEGACY_NAMES.items()}
    bind = op.get_bind()
    logs = AuditRecord.__table__
    rows = bind.execute(sa.select(logs).order_by(logs.c.timestamp, logs.c.id)).all()
    for row in rows:
        details = dict(row.details or {})
        method = details.get("method") if row.event_type == AuditEvent.AUTH_FAILURE else None
        old = legacy.get((row.event_type, method)) or legacy.get((row.event_type, None)) or row.event_type
        outcome = details.pop("outcome", None) or row.result
        bind.execute(
            LEGACY.insert().values(
                id=row.id,
                created_at=row.timestamp,
                event=old,
                outcome=outcome,
                actor_type=row.actor_type,
                actor_id=row.actor_id,
                target_type=row.target_type,
                target_id=row.target_id,
                ip=row.ip_address,
                request_id=row.request_id,
                details=details,
            )
        )
    op.drop_table("access_logs")
    op.drop_table("audit_chain_heads")
    op.drop_table("audit_logs")
