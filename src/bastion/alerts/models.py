# SPDX-License-Identifier: Apache-2.0
"""The alerts table, and the networks each administrator has signed in from."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bastion.crypto.randomness import new_id
from bastion.db.base import Base
from bastion.db.types import UTCDateTime, utcnow


class Alert(Base):
    """One alert: raised by a detector, open until an administrator acknowledges it.

    While it is open, the same kind firing again for the same subject (a later window) updates
    it (``count``, ``last_seen``, ``occurrences``) instead of adding a row. ``subject`` names what
    the alert is about in a form safe to show administrators: ``ip:<address>``, ``user:<id>``,
    ``key:<id>`` or ``all``; never an e-mail address or a secret.
    """

    __tablename__ = "alerts"
    __table_args__ = (
        Index("ix_alerts_created_at", "created_at", "id"),
        Index("ix_alerts_status_created_at", "status", "created_at"),
        Index("ix_alerts_kind_subject_status", "kind", "subject", "status"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    severity: Mapped[str] = mapped_column(String(16), nullable=False)
    subject: Mapped[str] = mapped_column(String(160), nullable=False)
    count: Mapped[int] = mapped_column(Integer, nullable=False)
    threshold: Mapped[int] = mapped_column(Integer, nullable=False)
    window_seconds: Mapped[int] = mapped_column(Integer, nullable=False)
    occurrences: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="open")
    acknowledged_by: Mapped[str | None] = mapped_column(String(64))
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    details: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)


class AdminNetwork(Base):
    """A network (IPv4 /24, IPv6 /64) an administrator has signed in from."""

    __tablename__ = "admin_networks"
    __table_args__ = (UniqueConstraint("user_id", "network", name="uq_admin_networks_user_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    # Erasing the account erases where it signed in from.
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    network: Mapped[str] = mapped_column(String(64), nullable=False)
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
