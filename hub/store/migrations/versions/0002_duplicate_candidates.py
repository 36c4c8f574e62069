"""Possible duplicate contacts for review.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

import hub.store.types

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "duplicate_candidates",
        sa.Column("id", BIGID, nullable=False),
        sa.Column("contact_id", BIGID, nullable=False),
        sa.Column("other_id", BIGID, nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("reasons", JSON, nullable=False),
        sa.Column("origin", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("inbox_id", BIGID, nullable=True),
        sa.Column("created_at", hub.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_duplicate_candidates_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["other_id"],
            ["contacts.id"],
            name=op.f("fk_duplicate_candidates_other_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_duplicate_candidates")),
        sa.UniqueConstraint(
            "contact_id", "other_id", name=op.f("uq_duplicate_candidates_contact_id")
        ),
    )
    with op.batch_alter_table("duplicate_candidates") as batch_op:
        batch_op.create_index(batch_op.f("ix_duplicate_candidates_other_id"), ["other_id"])


def downgrade() -> None:
    with op.batch_alter_table("duplicate_candidates") as batch_op:
        batch_op.drop_index(batch_op.f("ix_duplicate_candidates_other_id"))
    op.drop_table("duplicate_candidates")
