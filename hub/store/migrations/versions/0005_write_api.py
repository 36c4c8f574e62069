"""Idempotency keys of API writes; domain events found by their subject.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from hub.store.types import UTCDateTime

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "api_requests",
        sa.Column("principal", sa.String(length=100), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("principal", "key", name=op.f("pk_api_requests")),
    )
    op.create_index(op.f("ix_api_requests_created_at"), "api_requests", ["created_at"])
    op.create_index("ix_domain_events_subject", "domain_events", ["subject", "subject_id"])


def downgrade() -> None:
    op.drop_index("ix_domain_events_subject", table_name="domain_events")
    op.drop_index(op.f("ix_api_requests_created_at"), table_name="api_requests")
    op.drop_table("api_requests")
