"""Companies found by name key; merges of companies as well as contacts.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("companies") as batch_op:
        batch_op.add_column(sa.Column("name_key", sa.String(length=300), nullable=True))
        batch_op.create_index(batch_op.f("ix_companies_name_key"), ["name_key"])
    with op.batch_alter_table("merges") as batch_op:
        batch_op.add_column(
            sa.Column("kind", sa.String(length=10), nullable=False, server_default="contact")
        )


def downgrade() -> None:
    with op.batch_alter_table("merges") as batch_op:
        batch_op.drop_column("kind")
    with op.batch_alter_table("companies") as batch_op:
        batch_op.drop_index(batch_op.f("ix_companies_name_key"))
        batch_op.drop_column("name_key")
