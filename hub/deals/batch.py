"""What one batch knows while the writer writes it, and the tables it writes."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select
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
