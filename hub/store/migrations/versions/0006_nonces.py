"""Keys a channel accepts once: signatures of signed requests, so a replay is refused.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from hub.store.types import UTCDateTime

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "nonces",
        sa.Column("namespace", sa.String(length=100), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("namespace", "key", name=op.f("pk_nonces")),
    )
    op.create_index(op.f("ix_nonces_expires_at"), "nonces", ["expires_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_nonces_expires_at"), table_name="nonces")
    op.drop_table("nonces")
