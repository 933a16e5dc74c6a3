# SPDX-License-Identifier: Apache-2.0
"""Key check values, one per DATABASE_ENCRYPTION_KEY key id.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bastion.db.types import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "encryption_key_checks",
        sa.Column("kid", sa.String(32), nullable=False),
        sa.Column("check_value", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("kid", name="pk_encryption_key_checks"),
    )


def downgrade() -> None:
    op.drop_table("encryption_key_checks")
