"""Contacts get their name block key, indexed: how intake finds a returning client by name.

``contacts.name_key`` is the surname stem and first name of a contact's name in Latin
letters, diminutives expanded (``hub.domain.similarity.person_key``): a lead with a new
phone and mailbox but the same name and birth date, company, city or address finds the
contact through it. Existing contacts are keyed here, a thousand rows a statement; the
key follows the code of the day, and a later change of it comes with a migration that
keys them again.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from hub.domain.similarity import person_key

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHUNK = 1000


def upgrade() -> None:
    op.add_column("contacts", sa.Column("name_key", sa.String(length=120), nullable=True))
    contacts = sa.table(
        "contacts", sa.column("id", sa.Integer), sa.column("name", sa.String), sa.column("name_key")
    )
    conn = op.get_bind()
    rows = conn.execute(
        sa.select(contacts.c.id, contacts.c.name).where(contacts.c.name.is_not(None))
    )
    keyed = [{"cid": cid, "key": key} for cid, name in rows if (key := person_key(name))]
    statement = (
        sa.update(contacts)
        .where(contacts.c.id == sa.bindparam("cid"))
        .values(name_key=sa.bindparam("key"))
    )
    for start in range(0, len(keyed), CHUNK):
        conn.execute(statement, keyed[start : start + CHUNK])
    op.create_index("ix_contacts_name_key", "contacts", ["name_key"])


def downgrade() -> None:
    op.drop_index("ix_contacts_name_key", table_name="contacts")
    with op.batch_alter_table("contacts") as batch_op:
        batch_op.drop_column("name_key")
