# SPDX-License-Identifier: Apache-2.0
"""Queries over the api_keys table."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bastion.auth.models import ApiKey


class ApiKeyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, key: ApiKey) -> ApiKey:
        self.session.add(key)
        await self.session.flush()
        return key

    async def get(self, key_id: str) -> ApiKey | None:
        return await self.session.get(ApiKey, key_id)

    async def list(self, *, user_id: str | None, limit: int) -> Sequence[ApiKey]:
        query = select(ApiKey).order_by(ApiKey.created_at.desc(), ApiKey.id).limit(limit)
        if user_id is not None:
            query = query.where(ApiKey.user_id == user_id)
        return (await self.session.scalars(query)).all()

    async def count_live(self, user_id: str) -> int:
        query = (
            select(func.count())
            .select_from(ApiKey)
            .where(ApiKey.user_id == user_id, ApiKey.revoked_at.is_(None))
        )
        return int(await self.session.scalar(query) or 0)

    async def touch(self, key_id: str, *, now: datetime, sealed_ip: str | None) -> None:
        await self.session.execute(
            update(ApiKey)
            .where(ApiKey.id == key_id)
            .values(last_used_at=now, last_used_ip_ciphertext=sealed_ip)
        )

    async def rehash(self, key_id: str, *, column: str, old: str, new: str) -> bool:
        """Replace a hash made under a rotated-out API_KEY_SALT, only if it is still ``old``."""
        target = ApiKey.secret_hash if column == "secret_hash" else ApiKey.previous_secret_hash
        result = await self.session.execute(
            update(ApiKey).where(ApiKey.id == key_id, target == old).values({target: new}),
            execution_options={"synchronize_session": False},
        )
        return bool(getattr(result, "rowcount", 0) == 1)

    async def ids_of(self, user_id: str) -> Sequence[str]:
        """Every key the user ever had, revoked ones included."""
        return (await self.session.scalars(select(ApiKey.id).where(ApiKey.user_id == user_id))).all()

    async def delete_of(self, user_id: str) -> int:
        result = await self.session.execute(delete(ApiKey).where(ApiKey.user_id == user_id))
        return int(getattr(result, "rowcount", 0) or 0)
