"""Merges of contacts, kept so they can be undone.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

import hub.store.types

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "merges",
        sa.Column("id", BIGID, nullable=False),
        sa.Column("keep_id", BIGID, nullable=False),
        sa.Column("other_id", BIGID, nullable=False),
        sa.Column("moved", JSON, nullable=False),
        sa.Column("rule", sa.String(length=200), nullable=False),
        sa.Column("created_at", hub.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("undone_at", hub.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_merges")),
    )
    with op.batch_alter_table("merges") as batch_op:
        batch_op.create_index(batch_op.f("ix_merges_keep_id"), ["keep_id"])


def downgrade() -> None:
    with op.batch_alter_table("merges") as batch_op:
        batch_op.drop_index(batch_op.f("ix_merges_keep_id"))
    op.drop_table("merges")
