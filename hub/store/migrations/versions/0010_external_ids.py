"""Every external id a contact was given, one row each, unique per source system.

The single ``contacts.external_id`` stays (it is the contact's first id, shown where one id
is shown); its values are copied here, split into system and id as the writer splits them
(``1c:000123`` → ``1c``, ``000123``; an id without a system has an empty one). Where two
contacts had the same value, the older contact keeps it, as the import matched it.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-25

"""

import re
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from hub.store.types import UTCDateTime

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# As hub.deals.changes.split_external_id on the day of this migration.
QUALIFIED = re.compile(r"((?=[0-9_.-]*[A-Za-z])[A-Za-z0-9][A-Za-z0-9_.-]{0,31}):(.+)", re.DOTALL)


def _split(value: str) -> tuple[str, str]:
    value = value.strip()
    found = QUALIFIED.fullmatch(value)
    if found is None:
        return "", value
    return found.group(1).lower(), found.group(2).strip()


def upgrade() -> None:
    op.create_table(
        "contact_external_ids",
        sa.Column("id", Id, nullable=False),
        sa.Column("contact_id", Id, nullable=False),
        sa.Column("system", sa.String(length=32), nullable=False),
        sa.Column("external_id", sa.String(length=100), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_contact_external_ids_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contact_external_ids")),
        sa.UniqueConstraint("system", "external_id", name=op.f("uq_contact_external_ids_system")),
    )
    with op.batch_alter_table("contact_external_ids") as batch_op:
        batch_op.create_index(batch_op.f("ix_contact_external_ids_contact_id"), ["contact_id"])

    bind = op.get_bind()
    contacts = sa.table("contacts", sa.column("id", Id), sa.column("external_id", sa.String))
    kept = sa.table(
        "contact_external_ids",
        sa.column("contact_id", Id),
        sa.column("system", sa.String),
        sa.column("external_id", sa.String),
        sa.column("created_at", UTCDateTime(timezone=True)),
    )
    now = datetime.now(UTC)
    seen: set[tuple[str, str]] = set()
    rows = []
    for contact_id, value in bind.execute(
        sa.select(contacts.c.id, contacts.c.external_id)
        .where(contacts.c.external_id.is_not(None), contacts.c.external_id != "")
        .order_by(contacts.c.id)
    ):
        system, external_id = _split(value)
        if not external_id or (system, external_id) in seen:
            continue
        seen.add((system, external_id))
        rows.append(
            {
                "contact_id": contact_id,
                "system": system[:32],
                "external_id": external_id[:100],
                "created_at": now,
            }
        )
        if len(rows) >= 5000:
            bind.execute(kept.insert(), rows)
            rows = []
    if rows:
        bind.execute(kept.insert(), rows)


def downgrade() -> None:
    with op.batch_alter_table("contact_external_ids") as batch_op:
        batch_op.drop_index(batch_op.f("ix_contact_external_ids_contact_id"))
    op.drop_table("contact_external_ids")
