"""Rules the audits found broken, from first seen until they clear.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from hub.store.types import UTCDateTime

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "violations",
        sa.Column("id", Id, primary_key=True),
        sa.Column("rule", sa.String(length=50), nullable=False),
        sa.Column("subject", sa.String(length=20), nullable=False),
        sa.Column("subject_id", Id, nullable=False),
        sa.Column("owner_id", Id, sa.ForeignKey("users.id", name="fk_violations_owner_id_users")),
        sa.Column("severity", sa.String(length=10), nullable=False),
        sa.Column("detail", sa.String(length=500), nullable=False),
        sa.Column("first_seen", UTCDateTime(), nullable=False),
        sa.Column("resolved_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_violations"),
    )
    op.create_index("ix_violations_owner_id", "violations", ["owner_id"])
    op.create_index(
        "ix_violations_open",
        "violations",
        ["rule", "subject", "subject_id"],
        unique=True,
        sqlite_where=sa.text("resolved_at IS NULL"),
        postgresql_where=sa.text("resolved_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_violations_open", table_name="violations")
    op.drop_index("ix_violations_owner_id", table_name="violations")
    op.drop_table("violations")
