# SPDX-License-Identifier: Apache-2.0
"""Queries on the alerts and admin networks tables."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from bastion.alerts.models import AdminNetwork, Alert

OPEN = "open"
ACKNOWLEDGED = "acknowledged"


class AlertRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, alert_id: str) -> Alert | None:
        return await self.session.get(Alert, alert_id)

    async def open_alert(self, kind: str, subject: str) -> Alert | None:
        """The open alert of this kind about this subject, if there is one."""
        query = (
            select(Alert)
            .where(Alert.kind == kind, Alert.subject == subject, Alert.status == OPEN)
            .order_by(Alert.created_at.desc())
            .limit(1)
        )
        return (await self.session.scalars(query)).first()

    async def page(
        self, *, status: str | None, kind: str | None, after: tuple[datetime, str] | None, limit: int
    ) -> Sequence[Alert]:
        """Newest first, after the position (creation time, id) of the previous page's last alert."""
        query = select(Alert).order_by(Alert.created_at.desc(), Alert.id.desc()).limit(limit)
        if status is not None:
            query = query.where(Alert.status == status)
        if kind is not None:
            query = query.where(Alert.kind == kind)
        if after is not None:
            created_at, alert_id = after
            query = query.where(
                or_(Alert.created_at < created_at, and_(Alert.created_at == created_at, Alert.id < alert_id))
            )
        return (await self.session.scalars(query)).all()

    async def networks_of(self, user_id: str) -> Sequence[AdminNetwork]:
        query = select(AdminNetwork).where(AdminNetwork.user_id == user_id)
        return (await self.session.scalars(query)).all()
