"""Why a stage rule was skipped, kept in the deal's stage history.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("stage_history") as batch_op:
        batch_op.add_column(sa.Column("override", sa.String(length=500), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("stage_history") as batch_op:
        batch_op.drop_column("override")
