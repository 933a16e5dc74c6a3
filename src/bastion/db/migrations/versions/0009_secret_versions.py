# SPDX-License-Identifier: Apache-2.0
"""Secret rotation: versions of SESSION_SECRET, CSRF_SECRET and API_KEY_SALT (rotated ones sealed),
and the end of verification of superseded JWT signing keys.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bastion.db.types import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "secret_versions",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("sealed_value", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("verify_until", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_secret_versions"),
    )
    op.create_index("ix_secret_versions_name", "secret_versions", ["name", "created_at"])
    op.add_column("signing_keys", sa.Column("verify_until", UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("signing_keys") as batch:
        batch.drop_column("verify_until")
    op.drop_index("ix_secret_versions_name", table_name="secret_versions")
    op.drop_table("secret_versions")
