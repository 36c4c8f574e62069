"""The store as it was: a transaction that is always rolled back, for trying a policy on
history (``hub rules simulate``) without writing anything.

It is part of the writer's package because it changes CRM rows, but nothing it does is
ever committed: :func:`rolled_back` gives a connection whose transaction is rolled back
however the block ends, and each ``restore`` runs inside a savepoint of it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, bindparam, case, delete, func, null, or_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.store import Store
from hub.store.models import ContactPoint, Deal, Task
from hub.store.types import UTCDateTime

deals_t = Deal.__table__
tasks_t = Task.__table__
points_t = ContactPoint.__table__


@dataclass(frozen=True, slots=True)
class DealThen:
    """A deal as it was just before a moment: its open stage, its fields, its client."""

    deal_id: int
    stage_id: int
    at: datetime
    contact_id: int | None
    title: str
    amount: Decimal | None
    currency: str | None
    segment: str | None
    custom: dict[str, Any] | None


_at = bindparam("b_at", type_=UTCDateTime())
_RESTORE_DEAL = (
    update(deals_t)
    .where(deals_t.c.id == bindparam("b_deal"))
    .values(
        stage_id=bindparam("b_stage"),
        status="open",
        closed_at=None,
        loss_reason=None,
        competitor=None,
        title=bindparam("b_title"),
        amount=bindparam("b_amount", type_=deals_t.c.amount.type),
        currency=bindparam("b_currency"),
        segment=bindparam("b_segment"),
        custom=bindparam("b_custom", type_=deals_t.c.custom.type),
    )
)
_OPEN_THEN = and_(
    tasks_t.c.created_at <= _at, or_(tasks_t.c.done_at.is_(None), tasks_t.c.done_at > _at)
)
# A task open at the moment is open; any other (done by then, or not yet created) is done.
_RESTORE_TASKS = (
    update(tasks_t)
    .where(tasks_t.c.deal_id == bindparam("b_deal"))
    .values(done_at=case((_OPEN_THEN, null()), else_=func.coalesce(tasks_t.c.done_at, _at)))
)
_HIDE_LATER_POINTS = delete(points_t).where(
    points_t.c.contact_id == bindparam("b_contact"), points_t.c.created_at > _at
)


@asynccontextmanager
async def rolled_back(store: Store) -> AsyncIterator[AsyncConnection]:
    """A connection in a transaction that is rolled back when the block ends, however."""
    async with store.writer.connect() as conn:
        transaction = await conn.begin()
        try:
            yield conn
        finally:
            await transaction.rollback()


async def restore(conn: AsyncConnection, deals: Sequence[DealThen]) -> None:
    """Put each deal back as it was at its moment: stage, fields, open tasks, the client's
    phones and emails known then. Only inside :func:`rolled_back`."""
    if not conn.in_nested_transaction() and not conn.in_transaction():
        raise RuntimeError("restore() runs only inside rolled_back()")
    await conn.execute(
        _RESTORE_DEAL,
        [
            {
                "b_deal": d.deal_id,
                "b_stage": d.stage_id,
                "b_title": d.title,
                "b_amount": d.amount,
                "b_currency": d.currency,
                "b_segment": d.segment,
                "b_custom": d.custom,
            }
            for d in deals
        ],
    )
    await conn.execute(_RESTORE_TASKS, [{"b_deal": d.deal_id, "b_at": d.at} for d in deals])
    hide = [{"b_contact": d.contact_id, "b_at": d.at} for d in deals if d.contact_id]
    if hide:
        await conn.execute(_HIDE_LATER_POINTS, hide)
