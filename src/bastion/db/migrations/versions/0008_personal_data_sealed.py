# SPDX-License-Identifier: Apache-2.0
"""Personal data sealed at rest: e-mail addresses (with a blind index), API key names and addresses.

Rows already stored are sealed on the way with the deployment's cipher (``bastion db upgrade``
passes it); a database holding such rows cannot be migrated without it. Downgrading opens them
again.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import context, op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# (table, plaintext column, sealed column, name in the associated data, blind index column)
COLUMNS = (
    ("users", "email", "email_ciphertext", "email", "email_index"),
    ("invitations", "email", "email_ciphertext", "email", None),
    ("api_keys", "name", "name_ciphertext", "name", None),
    ("api_keys", "last_used_ip", "last_used_ip_ciphertext", "last_used_ip", None),
)


def _cipher() -> Any:
    cipher = context.config.attributes.get("cipher")
    if cipher is None:
        raise RuntimeError(
            "this database holds personal data to seal: run `bastion db upgrade` (it brings "
            "DATABASE_ENCRYPTION_KEY), or migrate.upgrade(url, cipher=...)"
        )
    return cipher


def _seal(table: str, plain: str, sealed: str, name: str, index: str | None) -> None:
    bind = op.get_bind()
    rows = bind.execute(
        sa.text(f"SELECT id, {plain} FROM {table} WHERE {plain} IS NOT NULL")  # noqa: S608 # nosec B608 # fixed names
    ).all()
    for row_id, value in rows:
        cipher = _cipher()
        values = {"id": row_id, "sealed": cipher.seal(value, table=table, column=name, row_id=row_id)}
        assignments = f"{sealed} = :sealed"
        if index is not None:
            values["index"] = cipher.blind_index(value, purpose=f"{table}.{name}")
            assignments += f", {index} = :index"
        bind.execute(
            sa.text(f"UPDATE {table} SET {assignments} WHERE id = :id"),  # noqa: S608 # nosec B608 # fixed names
            values,
        )


def _open(table: str, plain: str, sealed: str, name: str) -> None:
    bind = op.get_bind()
    rows = bind.execute(
        sa.text(f"SELECT id, {sealed} FROM {table} WHERE {sealed} IS NOT NULL")  # noqa: S608 # nosec B608 # fixed names
    ).all()
    for row_id, value in rows:
        opened = _cipher().open(value, table=table, column=name, row_id=row_id)
        bind.execute(
            sa.text(f"UPDATE {table} SET {plain} = :plain WHERE id = :id"),  # noqa: S608 # nosec B608 # fixed names
            {"id": row_id, "plain": opened},
        )


def _holds_rows() -> bool:
    bind = op.get_bind()
    return any(
        bind.execute(sa.text(f"SELECT 1 FROM {table} LIMIT 1")).first()  # noqa: S608 # nosec B608 # fixed names
        is not None
        for table in {table for table, *_ in COLUMNS}
    )


def upgrade() -> None:
    if _holds_rows():
        _cipher()  # refused before any change when the rows cannot be sealed
    op.add_column("users", sa.Column("email_ciphertext", sa.Text(), nullable=True))
    op.add_column("users", sa.Column("email_index", sa.String(100), nullable=True))
    op.add_column("invitations", sa.Column("email_ciphertext", sa.Text(), nullable=True))
    op.add_column("api_keys", sa.Column("name_ciphertext", sa.Text(), nullable=True))
    op.add_column("api_keys", sa.Column("last_used_ip_ciphertext", sa.Text(), nullable=True))
    for table, plain, sealed, name, index in COLUMNS:
        _seal(table, plain, sealed, name, index)
    with op.batch_alter_table("users") as batch:
        batch.drop_constraint("uq_users_email", type_="unique")
        batch.drop_column("email")
        batch.alter_column("email_ciphertext", existing_type=sa.Text(), nullable=False)
        batch.alter_column("email_index", existing_type=sa.String(100), nullable=False)
        batch.create_unique_constraint("uq_users_email_index", ["email_index"])
    with op.batch_alter_table("invitations") as batch:
        batch.drop_column("email")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("name")
        batch.drop_column("last_used_ip")
        batch.alter_column("name_ciphertext", existing_type=sa.Text(), nullable=False)


def downgrade() -> None:
    op.add_column("users", sa.Column("email", sa.String(320), nullable=True))
    op.add_column("invitations", sa.Column("email", sa.String(320), nullable=True))
    op.add_column("api_keys", sa.Column("name", sa.String(100), nullable=True))
    op.add_column("api_keys", sa.Column("last_used_ip", sa.String(64), nullable=True))
    for table, plain, sealed, name, _index in COLUMNS:
        _open(table, plain, sealed, name)
    with op.batch_alter_table("users") as batch:
        batch.drop_constraint("uq_users_email_index", type_="unique")
        batch.drop_column("email_index")
        batch.drop_column("email_ciphertext")
        batch.alter_column("email", existing_type=sa.String(320), nullable=False)
        batch.create_unique_constraint("uq_users_email", ["email"])
    with op.batch_alter_table("invitations") as batch:
        batch.drop_column("email_ciphertext")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("name_ciphertext")
        batch.drop_column("last_used_ip_ciphertext")
        batch.alter_column("name", existing_type=sa.String(100), nullable=False)
