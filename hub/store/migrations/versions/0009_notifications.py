"""The notification outbox: one row per message, queued with the event that caused it.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-25

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from hub.store.types import UTCDateTime

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "notifications",
        sa.Column("id", Id, primary_key=True),
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("notifier", sa.String(length=50), nullable=False),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("template", sa.String(length=100), nullable=True),
        sa.Column("context", Json, nullable=False),
        sa.Column("event_type", sa.String(length=50), nullable=True),
        sa.Column("deal_id", Id, nullable=True),
        sa.Column("user_id", Id, nullable=True),
        sa.Column("queued_by", sa.String(length=100), nullable=False),
        # queued, sending, sent, failed, review
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("due_at", UTCDateTime(), nullable=False),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.Column("lease_until", UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("provider_id", sa.String(length=200), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_notifications"),
        sa.UniqueConstraint("key", name="uq_notifications_key"),
    )
    # The sender's question: what is due now? Only unsent rows are in the index.
    op.create_index(
        "ix_notifications_due",
        "notifications",
        ["due_at"],
        sqlite_where=sa.text("state = 'queued'"),
        postgresql_where=sa.text("state = 'queued'"),
    )
    op.create_index(
        "ix_notifications_sending",
        "notifications",
        ["lease_until"],
        sqlite_where=sa.text("state = 'sending'"),
        postgresql_where=sa.text("state = 'sending'"),
    )
    op.create_index("ix_notifications_deal_id", "notifications", ["deal_id"])


def downgrade() -> None:
    op.drop_index("ix_notifications_deal_id", table_name="notifications")
    op.drop_index("ix_notifications_sending", table_name="notifications")
    op.drop_index("ix_notifications_due", table_name="notifications")
    op.drop_table("notifications")
