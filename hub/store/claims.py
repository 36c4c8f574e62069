"""Taking rows of an outbox for one worker: the one query every sender claims with.

A claim is one UPDATE of the rows a SELECT picks, in a transaction of its own. On
PostgreSQL the picked rows are locked ``FOR UPDATE SKIP LOCKED``, so hub processes
sharing the store each take other rows and none waits on another; SQLite has one
writer at a time, which is the same guarantee.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, Table, select, update

from hub.store import Store


async def update_picked(
    store: Store, table: Table, picked: Select[Any], values: Mapping[str, Any], *returning: Any
) -> list[Any]:
    """Set ``values`` on the rows whose ids ``picked`` selects; the ``returning`` columns
    of each (every column when none are named)."""
    async with store.write() as conn:
        if conn.dialect.name == "postgresql":
            picked = picked.with_for_update(skip_locked=True)
        rows = await conn.execute(
            update(table)
            .where(table.c.id.in_(picked.scalar_subquery()))
            .values(**values)
            .returning(*(returning or table.c))
        )
        return list(rows)


async def claim_due(
    store: Store,
    table: Table,
    *where: ColumnElement[bool],
    worker: str,
    limit: int,
    now: datetime,
    lease: timedelta,
) -> list[dict[str, Any]]:
    """Up to ``limit`` queued rows due by ``now`` (and matching ``where``), oldest due
    first, taken for ``worker``: ``sending``, leased until ``now + lease``, the attempt
    counted."""
    if limit <= 0:
        return []
    c = table.c
    due = (
        select(c.id)
        .where(c.state == "queued", c.due_at <= now, *where)
        .order_by(c.due_at, c.id)
        .limit(limit)
    )
    rows = await update_picked(
        store,
        table,
        due,
        {
            "state": "sending",
            "claimed_by": worker,
            "lease_until": now + lease,
            "attempts": c.attempts + 1,
        },
    )
    return sorted((dict(r._mapping) for r in rows), key=lambda r: (r["due_at"], r["id"]))
