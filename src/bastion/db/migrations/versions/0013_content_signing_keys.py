# SPDX-License-Identifier: Apache-2.0
"""Content-signing keys: the Ed25519 keys that sign model replies (X-Content-Signature).

Revision ID: 0013
Revises: 0012
Create Date: 2027-01-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bastion.db.types import UTCDateTime

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "content_signing_keys",
        sa.Column("kid", sa.String(32), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("public_key", sa.String(64), nullable=False),
        sa.Column("private_ciphertext", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("verify_until", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("kid", name="pk_content_signing_keys"),
        sa.UniqueConstraint("generation", name="uq_content_signing_keys_generation"),
    )


def downgrade() -> None:
    op.drop_table("content_signing_keys")
