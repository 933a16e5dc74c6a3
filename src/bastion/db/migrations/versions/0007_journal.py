# SPDX-License-Identifier: Apache-2.0
"""Journal entries, sealed at rest.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bastion.db.types import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "journal_entries",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("owner_user_id", sa.String(32), nullable=True),
        sa.Column("owner_api_key_id", sa.String(32), nullable=True),
        sa.Column("title_ciphertext", sa.Text(), nullable=True),
        sa.Column("content_ciphertext", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_journal_entries"),
        sa.ForeignKeyConstraint(
            ["owner_user_id"], ["users.id"], name="fk_journal_entries_owner_user_id_users", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_journal_entries_owner_user", "journal_entries", ["owner_user_id", "created_at"])
    op.create_index("ix_journal_entries_owner_key", "journal_entries", ["owner_api_key_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_journal_entries_owner_key", table_name="journal_entries")
    op.drop_index("ix_journal_entries_owner_user", table_name="journal_entries")
    op.drop_table("journal_entries")
