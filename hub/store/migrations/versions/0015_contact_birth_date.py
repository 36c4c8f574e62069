"""Contacts get their birth date as a column, indexed: a card without a surname is found
by birth date and address.

``contacts.birth_date`` is the ``birth_date`` of the contact's custom fields
(``hub.domain.blocking.birth_key``), kept beside it by the writer. Intake and imports look
up a record's birth date here, then compare the address; before the index an import read
every contact's custom fields once per batch. Existing contacts are filled here, a
thousand rows a statement.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-08

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from hub.domain.blocking import birth_key

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHUNK = 1000


def upgrade() -> None:
    op.add_column("contacts", sa.Column("birth_date", sa.String(length=32), nullable=True))
    contacts = sa.table(
        "contacts",
        sa.column("id", sa.Integer),
        sa.column("custom", sa.JSON),
        sa.column("birth_date"),
    )
    conn = op.get_bind()
    rows = conn.execute(sa.select(contacts.c.id, contacts.c.custom))
    dated = [{"cid": cid, "born": born} for cid, custom in rows if (born := birth_key(custom))]
    statement = (
        sa.update(contacts)
        .where(contacts.c.id == sa.bindparam("cid"))
        .values(birth_date=sa.bindparam("born"))
    )
    for start in range(0, len(dated), CHUNK):
        conn.execute(statement, dated[start : start + CHUNK])
    op.create_index("ix_contacts_birth_date", "contacts", ["birth_date"])


def downgrade() -> None:
    op.drop_index("ix_contacts_birth_date", table_name="contacts")
    with op.batch_alter_table("contacts") as batch_op:
        batch_op.drop_column("birth_date")
