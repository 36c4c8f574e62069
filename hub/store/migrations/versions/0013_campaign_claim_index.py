"""The sender claims a campaign's due rows in order: index them by campaign, not gateway.

Without it SQLite sorts every queued row of a large campaign (a temp B-tree over 700k rows,
~300 ms) on each claim, and the pace turns into bursts.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

QUEUED = sa.text("state = 'queued'")


def upgrade() -> None:
    op.drop_index("ix_campaign_messages_due", table_name="campaign_messages")
    op.create_index(
        "ix_campaign_messages_claim",
        "campaign_messages",
        ["campaign_id", "due_at", "id"],
        sqlite_where=QUEUED,
        postgresql_where=QUEUED,
    )


def downgrade() -> None:
    op.drop_index("ix_campaign_messages_claim", table_name="campaign_messages")
    op.create_index(
        "ix_campaign_messages_due",
        "campaign_messages",
        ["gateway", "due_at"],
        sqlite_where=QUEUED,
        postgresql_where=QUEUED,
    )
