"""What one batch knows while the writer writes it, and the tables it writes."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.deals import changes as ch
from hub.deals import events as ev
from hub.deals.actors import Actor, NotFound, Refusal
from hub.store.models import (
    Activity,
    Company,
    Contact,
    ContactPoint,
    Deal,
    DomainEvent,
    DuplicateCandidate,
    Note,
    StageChange,
    Task,
    User,
)
from hub.store.ops import Catalog, PipelineInfo, StageInfo
from hub.store.types import UTCDateTime

companies_t = Company.__table__
contacts_t = Contact.__table__
points_t = ContactPoint.__table__
deals_t = Deal.__table__
history_t = StageChange.__table__
tasks_t = Task.__table__
notes_t = Note.__table__
activities_t = Activity.__table__
events_t = DomainEvent.__table__
duplicates_t = DuplicateCandidate.__table__
users_t = User.__table__


class Batch:
    """What one batch knows while it is written: records it loaded, refusals, events."""

    __slots__ = ("actor", "catalog", "conn", "contacts", "deals", "events", "now", "refusals")

    def __init__(
        self, conn: AsyncConnection, actor: Actor, catalog: Catalog, now: datetime
    ) -> None:
        self.conn, self.actor, self.catalog, self.now = conn, actor, catalog, now
        self.deals: dict[int, dict[str, Any]] = {}
        self.contacts: dict[int, dict[str, Any]] = {}
        self.refusals: list[Refusal] = []
        self.events: list[ev.Event] = []

    def refuse(self, change: ch.Change, reason: str, field: str | None = None) -> None:
        self.refusals.append(Refusal(change, reason, field))

    def stage(self, stage_id: int) -> StageInfo:
        return self.catalog.stages_by_id[stage_id]

    def pipeline(self, pipeline_id: int) -> PipelineInfo:
        return self.catalog.pipelines_by_id[pipeline_id]


def ref(value: Any) -> int | None:
    """The id a change's reference stands for (an id, or a change of this batch)."""
    return ch.ref_id(value)


async def deal_of(batch: Batch, value: ch.DealRef) -> dict[str, Any]:
    """The deal as this batch has left it so far."""
    deal_id = ref(value)
    assert deal_id is not None
    found = batch.deals.get(deal_id)
    if found is None:
        row = (await batch.conn.execute(select(deals_t).where(deals_t.c.id == deal_id))).first()
        if row is None:
            raise NotFound("deal", deal_id)
        found = batch.deals[deal_id] = row._asdict()
    return found


async def active_users(batch: Batch, ids: Iterable[int | None]) -> set[int]:
    wanted = sorted({i for i in ids if i is not None})
    if not wanted:
        return set()
    rows = await batch.conn.execute(
        select(users_t.c.id).where(users_t.c.id.in_(wanted), users_t.c.active.is_(True))
    )
    return set(rows.scalars())


async def insert_rows(conn: AsyncConnection, table: Any, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` (all with the same columns) in one statement.

    The rows go straight to the driver's ``executemany``, bound column by column by
    the columns' own SQLAlchemy type processors, each distinct time converted once:
    SQLAlchemy's per-row parameter handling, mostly converting the batch's one "now"
    thousands of times, was a third of the lead pipeline's write cost (the intake's
    group insert binds the same way). Drivers other than sqlite3 and asyncpg get
    SQLAlchemy's executemany.
    """
    if not rows:
        return
    style = conn.dialect.paramstyle
    if style not in ("qmark", "numeric_dollar"):
        await conn.execute(insert(table), rows)
        return
    names = tuple(rows[0])
    columns = []
    for name in names:  # column by column: a list comprehension each, not a loop per value
        values = [row[name] for row in rows]
        bind = _bind(table, name, conn.dialect)
        if bind is not None:
            if isinstance(table.c[name].type, UTCDateTime):
                # Most times of a batch are the batch's own "now": converted once.
                seen: dict[Any, Any] = {}
                values = [
                    None if v is None else seen[v] if v in seen else seen.setdefault(v, bind(v))
                    for v in values
                ]
            else:
                values = [None if v is None else bind(v) for v in values]
        columns.append(values)
    sql = _insert_sql(table.name, names, style)
    await conn.exec_driver_sql(sql, list(zip(*columns, strict=True)))


@functools.cache
def _insert_sql(table: str, names: tuple[str, ...], style: str) -> str:
    marks = ["?"] * len(names) if style == "qmark" else [f"${i}" for i in range(1, len(names) + 1)]
    return f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join(marks)})"


_BINDS: dict[tuple[str, str, str], Any] = {}


def _bind(table: Any, name: str, dialect: Any) -> Any:
    key = (table.name, name, dialect.name)
    if key not in _BINDS:
        _BINDS[key] = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
    return _BINDS[key]
