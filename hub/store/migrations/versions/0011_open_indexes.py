"""Partial indexes for what the light, the audits and their report ask of every deal.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-25

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_tasks_open_deal",
        "tasks",
        ["deal_id"],
        sqlite_where=sa.text("done_at IS NULL"),
        postgresql_where=sa.text("done_at IS NULL"),
    )
    op.create_index(
        "ix_violations_open_owner",
        "violations",
        ["owner_id", "rule"],
        sqlite_where=sa.text("resolved_at IS NULL"),
        postgresql_where=sa.text("resolved_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_violations_open_owner", table_name="violations")
    op.drop_index("ix_tasks_open_deal", table_name="tasks")
