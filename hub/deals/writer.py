"""The deal store's one writer.

Every insert, update and delete of contacts, points, companies, deals, stage
history, tasks, notes, activities, review pairs and merges happens here. A
caller hands :meth:`DealWriter.apply` a batch of typed changes
(:mod:`hub.deals.changes`) and who asks (:class:`~hub.deals.actors.Actor`); in
one transaction the writer

1. loads the records the batch names and hides from a manager what is not
   theirs (:class:`~hub.deals.actors.NotFound`, never "forbidden");
2. asks every ``hub_guard`` about the whole batch;
3. writes each run of same-kind changes with bulk statements, checking what
   only the store can tell (a deal already closed, a stage its pipeline lacks);
4. writes one typed domain event per change (:mod:`hub.deals.events`).

Any refusal, from a guard or from step 3, refuses the batch with every reason
at once (:class:`~hub.deals.actors.Refused`) and nothing is written.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.deals import changes as ch
from hub.deals import events as ev
from hub.deals import merging
from hub.deals.actors import Actor, NotFound, Refusal, Refused, StoreReader
from hub.domain.lead import UTM_FIELDS
from hub.store import Store
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
from hub.store.ops import Catalog, PipelineInfo, StageInfo, allocate_ids
from hub.store.types import utcnow

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

# guards(changes, actor, reader) -> refusals
Guard = Callable[[Sequence[ch.Change], Actor, StoreReader], Awaitable[list[Refusal]]]


@dataclass(slots=True)
class Applied:
    """A written batch: its changes (creating ones now carry ids) and the events written."""

    changes: list[ch.Change]
    events: list[ev.Event]


class _Batch:
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


class DealWriter:
    def __init__(
        self, store: Store, catalog: Callable[[], Catalog | None], guard: Guard | None = None
    ) -> None:
        self.store = store
        self._catalog = catalog
        self._guard = guard

    @property
    def catalog(self) -> Catalog:
        found = self._catalog()
        if found is None:
            raise RuntimeError("the writer is used before the hub loaded its pipelines")
        return found

    async def apply(self, changes: Sequence[ch.Change], actor: Actor) -> Applied:
        """Write ``changes`` in one transaction of their own."""
        async with self.store.write() as conn:
            return await self.apply_in(conn, changes, actor)

    async def apply_in(
        self,
        conn: AsyncConnection,
        changes: Sequence[ch.Change],
        actor: Actor,
        now: datetime | None = None,
    ) -> Applied:
        """Write ``changes`` in the caller's transaction (the intake worker's batch, an API
        request that records its idempotency key with the change)."""
        batch = _Batch(conn, actor, self.catalog, now or utcnow())
        await self._load(batch, changes)
        if self._guard is not None:
            batch.refusals.extend(await self._guard(changes, actor, StoreReader(conn)))
        for kind, run in itertools.groupby(changes, type):
            await _WRITERS[kind](batch, list(run))
        if batch.refusals:
            raise Refused(batch.refusals)
        if batch.events:
            await conn.execute(insert(events_t), [_row(e, actor, batch.now) for e in batch.events])
        return Applied(list(changes), batch.events)

    # -- step 1: what the batch names, as the actor may see it -------------------------------

    async def _load(self, batch: _Batch, changes: Sequence[ch.Change]) -> None:
        deal_ids: set[int] = set()
        contact_ids: set[int] = set()
        task_ids: set[int] = set()
        for change in changes:
            deal = getattr(change, "deal", None)
            if isinstance(deal, int):
                deal_ids.add(deal)
            if not batch.actor.limited_to_own:
                continue  # contacts and tasks are loaded only to hide others' from a manager
            contact = getattr(change, "contact", None)
            if isinstance(contact, int) and not isinstance(change, ch.RecordLead):
                contact_ids.add(contact)
            task = getattr(change, "task", None)
            if isinstance(task, int):
                task_ids.add(task)
        conn = batch.conn
        if task_ids:
            rows = await conn.execute(select(tasks_t).where(tasks_t.c.id.in_(sorted(task_ids))))
            tasks = {r.id: r._asdict() for r in rows}
            for task_id in task_ids:
                if task_id not in tasks or not self._visible(batch.actor, tasks[task_id]):
                    raise NotFound("task", task_id)
        if deal_ids:
            rows = await conn.execute(select(deals_t).where(deals_t.c.id.in_(sorted(deal_ids))))
            batch.deals = {r.id: r._asdict() for r in rows}
            for deal_id in deal_ids:
                if deal_id not in batch.deals or not self._visible(
                    batch.actor, batch.deals[deal_id]
                ):
                    raise NotFound("deal", deal_id)
        if contact_ids:
            rows = await conn.execute(
                select(contacts_t).where(contacts_t.c.id.in_(sorted(contact_ids)))
            )
            batch.contacts = {r.id: r._asdict() for r in rows}
            for contact_id in contact_ids:
                found = batch.contacts.get(contact_id)
                if found is None or not self._visible(batch.actor, found):
                    raise NotFound("contact", contact_id)

    @staticmethod
    def _visible(actor: Actor, row: dict[str, Any]) -> bool:
        return not actor.limited_to_own or row["owner_id"] == actor.user_id


def _row(event: ev.Event, actor: Actor, now: datetime) -> dict[str, Any]:
    payload = event.payload()
    payload["actor"] = actor.as_dict()
    payload["v"] = event.version
    return {
        "type": event.type,
        "subject": event.subject,
        "subject_id": event.subject_id,
        "payload": payload,
        "occurred_at": now,
    }


def _id(ref: Any) -> int | None:
    return ch.ref_id(ref)


async def _deal(batch: _Batch, ref: ch.DealRef) -> dict[str, Any]:
    """The deal as this batch has left it so far."""
    deal_id = _id(ref)
    assert deal_id is not None
    found = batch.deals.get(deal_id)
    if found is None:
        row = (await batch.conn.execute(select(deals_t).where(deals_t.c.id == deal_id))).first()
        if row is None:
            raise NotFound("deal", deal_id)
        found = batch.deals[deal_id] = row._asdict()
    return found


async def _active_users(batch: _Batch, ids: Iterable[int | None]) -> set[int]:
    wanted = sorted({i for i in ids if i is not None})
    if not wanted:
        return set()
    rows = await batch.conn.execute(
        select(users_t.c.id).where(users_t.c.id.in_(wanted), users_t.c.active.is_(True))
    )
    return set(rows.scalars())


def _points(points: Iterable[Any]) -> tuple[list[str], list[str]]:
    phones, emails = [], []
    for point in points:
        (phones if point.kind == "phone" else emails).append(point.normalized)
    return phones, emails


# -- contacts and companies --------------------------------------------------------------------


async def _create_companies(batch: _Batch, run: list[ch.CreateCompany]) -> None:
    ids = await allocate_ids(batch.conn, companies_t, len(run))
    rows = []
    for change, company_id in zip(run, ids, strict=True):
        change.id = company_id
        rows.append(
            {
                "id": company_id,
                "name": change.name[:300],
                "name_key": change.name_key,
                "tax_id": change.tax_id,
                "external_id": change.external_id,
                "city": change.city,
                "owner_id": change.owner_id,
                "created_at": batch.now,
                "updated_at": batch.now,
            }
        )
        batch.events.append(
            ev.CompanyCreated(subject_id=company_id, name=change.name, tax_id=change.tax_id)
        )
    await batch.conn.execute(insert(companies_t), rows)


async def _create_contacts(batch: _Batch, run: list[ch.CreateContact]) -> None:
    ids = await allocate_ids(batch.conn, contacts_t, len(run))
    rows, point_rows = [], []
    now = batch.now
    for change, contact_id in zip(run, ids, strict=True):
        change.id = contact_id
        company_id = _id(change.company)
        rows.append(
            {
                "id": contact_id,
                "name": change.name,
                "owner_id": change.owner_id,
                "city": change.city,
                "segment": change.segment,
                "external_id": change.external_id,
                "custom": change.custom,
                "created_at": now,
                "updated_at": now,
                "company_id": company_id,
            }
        )
        for point in change.points:
            point_rows.append(
                {
                    "contact_id": contact_id,
                    "kind": point.kind,
                    "value": point.value,
                    "normalized": point.normalized,
                    "created_at": now,
                }
            )
        phones, emails = _points(change.points)
        batch.events.append(
            ev.ContactCreated(
                subject_id=contact_id,
                name=change.name,
                owner_id=change.owner_id,
                company_id=company_id,
                phones=phones,
                emails=emails,
            )
        )
    await batch.conn.execute(insert(contacts_t), rows)
    if point_rows:
        await batch.conn.execute(insert(points_t), point_rows)


_CONTACT_FIELDS = ("name", "city", "segment", "external_id", "owner_id")


async def _update_contacts(batch: _Batch, run: list[ch.UpdateContact]) -> None:
    conn = batch.conn
    ids = sorted({_id(c.contact) for c in run})  # type: ignore[type-var]
    rows = await conn.execute(
        select(
            contacts_t.c.id,
            contacts_t.c.owner_id,
            contacts_t.c.company_id,
            contacts_t.c.custom,
            *(contacts_t.c[f] for f in _CONTACT_FIELDS if f != "owner_id"),
        ).where(contacts_t.c.id.in_(ids))
    )
    current = {r.id: r._asdict() for r in rows}
    owners = await _active_users(
        batch, (c.owner_id for c in run if not isinstance(c.owner_id, ch._Unset))
    )
    updates: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    point_rows: list[dict[str, Any]] = []
    for change in run:
        contact_id = _id(change.contact)
        assert contact_id is not None
        now_row = current.get(contact_id)
        if now_row is None:
            raise NotFound("contact", contact_id)
        changed: dict[str, Any] = {}
        for name in _CONTACT_FIELDS:
            value = getattr(change, name)
            if isinstance(value, ch._Unset) or value == now_row[name]:
                continue
            if change.fill_only and now_row[name] not in (None, ""):
                continue
            if name == "owner_id" and value is not None and value not in owners:
                batch.refuse(change, f"no active user {value} to own the contact", "owner")
                continue
            changed[name] = value
        if not isinstance(change.company, ch._Unset):
            company_id = _id(change.company)
            if company_id != now_row["company_id"] and not (
                change.fill_only and now_row["company_id"] is not None
            ):
                changed["company_id"] = company_id
        if not isinstance(change.custom, ch._Unset):
            custom = dict(now_row["custom"] or {})
            for key, value in change.custom.items():
                if change.fill_only and custom.get(key) not in (None, ""):
                    continue
                if value is None:
                    custom.pop(key, None)
                else:
                    custom[key] = value
            if custom != (now_row["custom"] or {}):
                changed["custom"] = custom
        now_row.update(changed)
        removed = []
        for kind, normalized in change.remove_points:
            result = await conn.execute(
                points_t.delete().where(
                    points_t.c.contact_id == contact_id,
                    points_t.c.kind == kind,
                    points_t.c.normalized == normalized,
                )
            )
            if result.rowcount:
                removed.append(normalized)
        for point in change.add_points:
            point_rows.append(
                {
                    "contact_id": contact_id,
                    "kind": point.kind,
                    "value": point.value,
                    "normalized": point.normalized,
                    "created_at": batch.now,
                }
            )
        if changed or removed:
            values = {**changed, "contact_id": contact_id}
            updates.setdefault(tuple(sorted(changed)), []).append(values)
        batch.events.append(
            ev.ContactUpdated(
                subject_id=contact_id,
                changed=changed,
                points_added=[p.normalized for p in change.add_points],
                points_removed=removed,
            )
        )
    for names, params in updates.items():
        await conn.execute(
            update(contacts_t)
            .where(contacts_t.c.id == bindparam("contact_id"))
            .values(updated_at=batch.now, **{n: bindparam(n) for n in names}),
            params,
        )
    if point_rows:
        await conn.execute(insert(points_t), point_rows)


# -- deals -------------------------------------------------------------------------------------


async def _create_deals(batch: _Batch, run: list[ch.CreateDeal]) -> None:
    ids = await allocate_ids(batch.conn, deals_t, len(run))
    rows, history = [], []
    now, user_id = batch.now, batch.actor.user_id
    for change, deal_id in zip(run, ids, strict=True):
        pipeline = batch.catalog.pipelines_by_id.get(change.pipeline_id)
        stage = batch.catalog.stages_by_id.get(change.stage_id)
        if (
            pipeline is None
            or stage is None
            or stage.id not in {s.id for s in pipeline.stages.values()}
        ):
            batch.refuse(change, "the pipeline has no such stage", "stage")
            continue
        change.id = deal_id
        contact_id = _id(change.contact)
        company_id = _id(change.company)
        rows.append(
            {
                "id": deal_id,
                "title": change.title[:300],
                "pipeline_id": change.pipeline_id,
                "stage_id": change.stage_id,
                "contact_id": contact_id,
                "company_id": company_id,
                "owner_id": change.owner_id,
                "amount": change.amount,
                "currency": change.currency,
                "source": change.source,
                "segment": change.segment,
                "status": "open",
                "loss_reason": None,
                "competitor": None,
                "custom": change.custom,
                "inbox_id": change.inbox_id,
                "created_at": now,
                "updated_at": now,
                "stage_entered_at": now,
                "closed_at": None,
                **{name: change.utm.get(name) for name in UTM_FIELDS},
            }
        )
        history.append(
            {
                "deal_id": deal_id,
                "from_stage_id": None,
                "to_stage_id": change.stage_id,
                "user_id": user_id,
                "changed_at": now,
            }
        )
        batch.events.append(
            ev.DealCreated(
                subject_id=deal_id,
                title=change.title,
                pipeline=pipeline.key,
                stage=stage.key,
                owner_id=change.owner_id,
                contact_id=contact_id,
                company_id=company_id,
                amount=change.amount,
                source=change.source,
                channel=change.channel,
                lead_id=change.inbox_id,
            )
        )
    if rows:
        await batch.conn.execute(insert(deals_t), rows)
        await batch.conn.execute(insert(history_t), history)


async def _set_deals(
    batch: _Batch, params: list[dict[str, Any]], history: list[dict[str, Any]]
) -> None:
    """Write deal updates, grouped by the columns they set."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for values in params:
        groups.setdefault(tuple(sorted(k for k in values if k != "deal_id")), []).append(values)
    for names, rows in groups.items():
        await batch.conn.execute(
            update(deals_t)
            .where(deals_t.c.id == bindparam("deal_id"))
            .values(updated_at=batch.now, **{n: bindparam(n) for n in names}),
            rows,
        )
    if history:
        await batch.conn.execute(insert(history_t), history)


def _history(batch: _Batch, deal_id: int, from_stage: int, to_stage: int) -> dict[str, Any]:
    return {
        "deal_id": deal_id,
        "from_stage_id": from_stage,
        "to_stage_id": to_stage,
        "user_id": batch.actor.user_id,
        "changed_at": batch.now,
    }


async def _reopen(batch: _Batch, run: list[ch.Reopen]) -> None:
    params, history = [], []
    owners = await _active_users(
        batch, (c.owner_id for c in run if not isinstance(c.owner_id, ch._Unset))
    )
    for change in run:
        deal = await _deal(batch, change.deal)
        pipeline = batch.pipeline(deal["pipeline_id"])
        if deal["status"] == "open":
            batch.refuse(change, f"deal {deal['id']} is open, there is nothing to reopen")
            continue
        stage = pipeline.stages.get(change.stage) if change.stage else pipeline.entry_stage
        if stage is None or stage.kind != "open":
            batch.refuse(change, f"pipeline {pipeline.name!r} has no open stage {change.stage!r}")
            continue
        values: dict[str, Any] = {
            "deal_id": deal["id"],
            "status": "open",
            "stage_id": stage.id,
            "stage_entered_at": batch.now,
            "closed_at": None,
            "loss_reason": None,
            "competitor": None,
        }
        if not isinstance(change.owner_id, ch._Unset):
            if change.owner_id is not None and change.owner_id not in owners:
                batch.refuse(change, f"no active user {change.owner_id}", "owner")
                continue
            values["owner_id"] = change.owner_id
        from_stage = batch.stage(deal["stage_id"])
        history.append(_history(batch, deal["id"], from_stage.id, stage.id))
        params.append(values)
        deal.update({k: v for k, v in values.items() if k != "deal_id"})
        batch.events.append(
            ev.DealReopened(
                subject_id=deal["id"],
                pipeline=pipeline.key,
                from_stage=from_stage.key,
                to_stage=stage.key,
                owner_id=deal["owner_id"],
                lead_id=change.inbox_id,
                channel=change.channel,
            )
        )
    await _set_deals(batch, params, history)


async def _move_stage(batch: _Batch, run: list[ch.MoveStage]) -> None:
    params, history = [], []
    for change in run:
        deal = await _deal(batch, change.deal)
        pipeline = batch.pipeline(deal["pipeline_id"])
        stage = pipeline.stages.get(change.stage)
        if stage is None:
            batch.refuse(
                change, f"pipeline {pipeline.name!r} has no stage {change.stage!r}", "stage"
            )
            continue
        if deal["status"] != "open":
            batch.refuse(change, f"deal {deal['id']} is closed; reopen it first", "stage")
            continue
        if stage.kind != "open":
            verb = "won" if stage.kind == "won" else "lost"
            batch.refuse(change, f"a deal is closed as {verb} with its own action", "stage")
            continue
        if stage.id == deal["stage_id"]:
            batch.refuse(change, f"the deal is already at stage {stage.name!r}", "stage")
            continue
        from_stage = batch.stage(deal["stage_id"])
        params.append({"deal_id": deal["id"], "stage_id": stage.id, "stage_entered_at": batch.now})
        history.append(_history(batch, deal["id"], from_stage.id, stage.id))
        deal.update(stage_id=stage.id, stage_entered_at=batch.now)
        batch.events.append(
            ev.DealStageChanged(
                subject_id=deal["id"],
                pipeline=pipeline.key,
                from_stage=from_stage.key,
                to_stage=stage.key,
                owner_id=deal["owner_id"],
                override=change.override,
            )
        )
    await _set_deals(batch, params, history)


_DEAL_FIELDS = ("title", "amount", "currency", "segment")


async def _set_deal_fields(batch: _Batch, run: list[ch.SetDealFields]) -> None:
    params = []
    for change in run:
        deal = await _deal(batch, change.deal)
        changed: dict[str, Any] = {}
        for name in _DEAL_FIELDS:
            value = getattr(change, name)
            if not isinstance(value, ch._Unset) and value != deal[name]:
                changed[name] = value
        if not isinstance(change.custom, ch._Unset):
            custom = dict(deal["custom"] or {})
            for key, value in change.custom.items():
                if value is None:
                    custom.pop(key, None)
                else:
                    custom[key] = value
            if custom != (deal["custom"] or {}):
                changed["custom"] = custom
        if changed:
            params.append({"deal_id": deal["id"], **changed})
            deal.update(changed)
        batch.events.append(ev.DealUpdated(subject_id=deal["id"], changed=changed))
    await _set_deals(batch, params, [])


async def _assign_owner(batch: _Batch, run: list[ch.AssignOwner]) -> None:
    params, contacts = [], []
    owners = await _active_users(batch, (c.owner_id for c in run))
    for change in run:
        deal = await _deal(batch, change.deal)
        if change.owner_id is not None and change.owner_id not in owners:
            batch.refuse(change, f"no active user {change.owner_id} to own the deal", "owner")
            continue
        before = deal["owner_id"]
        params.append({"deal_id": deal["id"], "owner_id": change.owner_id})
        if change.with_contact and deal["contact_id"] is not None:
            contacts.append({"contact_id": deal["contact_id"], "owner": change.owner_id})
        deal["owner_id"] = change.owner_id
        batch.events.append(
            ev.DealOwnerChanged(
                subject_id=deal["id"], from_owner_id=before, to_owner_id=change.owner_id
            )
        )
    await _set_deals(batch, params, [])
    if contacts:
        await batch.conn.execute(
            update(contacts_t)
            .where(contacts_t.c.id == bindparam("contact_id"))
            .values(owner_id=bindparam("owner"), updated_at=batch.now),
            contacts,
        )


def _closing_stage(batch: _Batch, change: ch.Change, deal: dict[str, Any], kind: str) -> Any:
    pipeline = batch.pipeline(deal["pipeline_id"])
    if deal["status"] != "open":
        batch.refuse(change, f"deal {deal['id']} is already closed ({deal['status']})")
        return None
    stage = next((s for s in pipeline.stages.values() if s.kind == kind), None)
    if stage is None:
        batch.refuse(change, f"pipeline {pipeline.name!r} has no {kind} stage")
    return stage


async def _close_won(batch: _Batch, run: list[ch.CloseWon]) -> None:
    params, history = [], []
    for change in run:
        deal = await _deal(batch, change.deal)
        stage = _closing_stage(batch, change, deal, "won")
        if stage is None:
            continue
        values: dict[str, Any] = {
            "deal_id": deal["id"],
            "status": "won",
            "stage_id": stage.id,
            "stage_entered_at": batch.now,
            "closed_at": batch.now,
        }
        if not isinstance(change.amount, ch._Unset):
            values["amount"] = change.amount
        from_stage = batch.stage(deal["stage_id"])
        history.append(_history(batch, deal["id"], from_stage.id, stage.id))
        params.append(values)
        deal.update({k: v for k, v in values.items() if k != "deal_id"})
        batch.events.append(
            ev.DealWon(
                subject_id=deal["id"],
                pipeline=batch.pipeline(deal["pipeline_id"]).key,
                from_stage=from_stage.key,
                stage=stage.key,
                amount=deal["amount"],
                currency=deal["currency"],
                owner_id=deal["owner_id"],
                override=change.override,
            )
        )
    await _set_deals(batch, params, history)


async def _close_lost(batch: _Batch, run: list[ch.CloseLost]) -> None:
    params, history = [], []
    for change in run:
        deal = await _deal(batch, change.deal)
        stage = _closing_stage(batch, change, deal, "lost")
        if stage is None:
            continue
        values = {
            "deal_id": deal["id"],
            "status": "lost",
            "stage_id": stage.id,
            "stage_entered_at": batch.now,
            "closed_at": batch.now,
            "loss_reason": change.reason,
            "competitor": change.competitor,
        }
        from_stage = batch.stage(deal["stage_id"])
        history.append(_history(batch, deal["id"], from_stage.id, stage.id))
        params.append(values)
        deal.update({k: v for k, v in values.items() if k != "deal_id"})
        batch.events.append(
            ev.DealLost(
                subject_id=deal["id"],
                pipeline=batch.pipeline(deal["pipeline_id"]).key,
                from_stage=from_stage.key,
                stage=stage.key,
                reason=change.reason,
                competitor=change.competitor,
                owner_id=deal["owner_id"],
                override=change.override,
            )
        )
    await _set_deals(batch, params, history)


async def _repeat_inquiry(batch: _Batch, run: list[ch.RepeatInquiry]) -> None:
    # Writes no row of its own: the request is the activity logged beside it.
    for change in run:
        deal_id = _id(change.deal)
        deal = batch.deals.get(deal_id) if deal_id is not None else None
        batch.events.append(
            ev.DealRepeatInquiry(
                subject_id=deal_id,
                owner_id=deal["owner_id"] if deal else None,
                contact_id=deal["contact_id"] if deal else None,
                lead_id=change.inbox_id,
                channel=change.channel,
            )
        )


# -- tasks, notes, activities ------------------------------------------------------------------


async def _owner_of(batch: _Batch, change: ch.AddTask) -> int | None:
    if not isinstance(change.owner_id, ch._Unset):
        return change.owner_id
    if isinstance(change.deal, ch.CreateDeal):
        return change.deal.owner_id
    if change.deal is not None:
        return (await _deal(batch, change.deal))["owner_id"]
    if batch.actor.user_id is not None:
        return batch.actor.user_id
    return None


async def _add_tasks(batch: _Batch, run: list[ch.AddTask]) -> None:
    ids = await allocate_ids(batch.conn, tasks_t, len(run))
    rows = []
    for change, task_id in zip(run, ids, strict=True):
        if change.deal is None and change.contact is None:
            batch.refuse(change, "a task belongs to a deal or a contact", "deal_id")
            continue
        if change.due_at.tzinfo is None:
            batch.refuse(change, "the due time needs a time zone", "due_at")
            continue
        change.id = task_id
        deal_id, contact_id = _id(change.deal), _id(change.contact)
        if contact_id is None and deal_id is not None and deal_id in batch.deals:
            contact_id = batch.deals[deal_id]["contact_id"]
        owner_id = await _owner_of(batch, change)
        rows.append(
            {
                "id": task_id,
                "title": change.title[:300],
                "kind": change.task_kind,
                "deal_id": deal_id,
                "contact_id": contact_id,
                "owner_id": owner_id,
                "due_at": change.due_at,
                "done_at": None,
                "result": None,
                "created_at": batch.now,
            }
        )
        batch.events.append(
            ev.TaskCreated(
                subject_id=task_id,
                title=change.title,
                deal_id=deal_id,
                contact_id=contact_id,
                owner_id=owner_id,
                due_at=change.due_at,
            )
        )
    if rows:
        await batch.conn.execute(insert(tasks_t), rows)


async def _tasks(batch: _Batch, refs: Iterable[ch.TaskRef]) -> dict[int, dict[str, Any]]:
    ids = sorted({_id(r) for r in refs})  # type: ignore[type-var]
    rows = await batch.conn.execute(select(tasks_t).where(tasks_t.c.id.in_(ids)))
    return {r.id: r._asdict() for r in rows}


async def _complete_tasks(batch: _Batch, run: list[ch.CompleteTask]) -> None:
    tasks = await _tasks(batch, (c.task for c in run))
    params = []
    for change in run:
        task = tasks.get(_id(change.task))  # type: ignore[arg-type]
        if task is None:
            raise NotFound("task", _id(change.task))  # type: ignore[arg-type]
        if task["done_at"] is not None:
            batch.refuse(change, f"task {task['id']} is already done")
            continue
        task.update(done_at=batch.now, result=change.result)
        params.append({"task_id": task["id"], "done": batch.now, "result": change.result})
        batch.events.append(
            ev.TaskCompleted(
                subject_id=task["id"],
                deal_id=task["deal_id"],
                owner_id=task["owner_id"],
                result=change.result,
            )
        )
    if params:
        await batch.conn.execute(
            update(tasks_t)
            .where(tasks_t.c.id == bindparam("task_id"))
            .values(done_at=bindparam("done"), result=bindparam("result")),
            params,
        )


async def _reschedule_tasks(batch: _Batch, run: list[ch.RescheduleTask]) -> None:
    tasks = await _tasks(batch, (c.task for c in run))
    owners = await _active_users(
        batch, (c.owner_id for c in run if not isinstance(c.owner_id, ch._Unset))
    )
    for change in run:
        task = tasks.get(_id(change.task))  # type: ignore[arg-type]
        if task is None:
            raise NotFound("task", _id(change.task))  # type: ignore[arg-type]
        if task["done_at"] is not None:
            batch.refuse(change, f"task {task['id']} is done; add a new one instead")
            continue
        values: dict[str, Any] = {}
        if not isinstance(change.due_at, ch._Unset):
            if change.due_at.tzinfo is None:
                batch.refuse(change, "the due time needs a time zone", "due_at")
                continue
            values["due_at"] = change.due_at
        if not isinstance(change.owner_id, ch._Unset):
            if change.owner_id is not None and change.owner_id not in owners:
                batch.refuse(change, f"no active user {change.owner_id} to own the task", "owner")
                continue
            values["owner_id"] = change.owner_id
        if not isinstance(change.title, ch._Unset):
            values["title"] = change.title[:300]
        before = dict(task)
        if values:
            await batch.conn.execute(
                update(tasks_t).where(tasks_t.c.id == task["id"]).values(**values)
            )
            task.update(values)
        batch.events.append(
            ev.TaskRescheduled(
                subject_id=task["id"],
                deal_id=task["deal_id"],
                due_at=task["due_at"],
                previous_due_at=before["due_at"],
                owner_id=task["owner_id"],
                previous_owner_id=before["owner_id"],
            )
        )


async def _add_notes(batch: _Batch, run: list[ch.AddNote]) -> None:
    ids = await allocate_ids(batch.conn, notes_t, len(run))
    rows = []
    for change, note_id in zip(run, ids, strict=True):
        if not change.body.strip():
            batch.refuse(change, "the note is empty", "text")
            continue
        change.id = note_id
        deal_id, contact_id = _id(change.deal), _id(change.contact)
        if contact_id is None and deal_id is not None:
            contact_id = (await _deal(batch, deal_id))["contact_id"]
        rows.append(
            {
                "id": note_id,
                "deal_id": deal_id,
                "contact_id": contact_id,
                "author_id": batch.actor.user_id,
                "body": change.body,
                "created_at": batch.now,
            }
        )
        batch.events.append(
            ev.NoteAdded(
                subject_id=note_id,
                deal_id=deal_id,
                contact_id=contact_id,
                author_id=batch.actor.user_id,
            )
        )
    if rows:
        await batch.conn.execute(insert(notes_t), rows)


async def _log_activities(batch: _Batch, run: list[ch.LogActivity]) -> None:
    ids = await allocate_ids(batch.conn, activities_t, len(run))
    rows = []
    for change, activity_id in zip(run, ids, strict=True):
        change.id = activity_id
        deal_id, contact_id = _id(change.deal), _id(change.contact)
        if contact_id is None and deal_id is not None and deal_id in batch.deals:
            contact_id = batch.deals[deal_id]["contact_id"]
        occurred = change.occurred_at or batch.now
        payload = change.payload
        if change.result is not None:
            payload = {**payload, "result": change.result}
        rows.append(
            {
                "id": activity_id,
                "kind": change.activity,
                "direction": change.direction,
                "deal_id": deal_id,
                "contact_id": contact_id,
                "summary": change.summary[:500],
                "payload": payload,
                "inbox_id": change.inbox_id,
                "occurred_at": occurred,
            }
        )
        batch.events.append(
            ev.ActivityLogged(
                subject_id=activity_id,
                kind=change.activity,
                direction=change.direction,
                deal_id=deal_id,
                contact_id=contact_id,
                result=change.result,
                occurred_at=occurred,
            )
        )
    await batch.conn.execute(insert(activities_t), rows)


# -- leads, review pairs, merges ---------------------------------------------------------------


async def _record_leads(batch: _Batch, run: list[ch.RecordLead]) -> None:
    for change in run:
        batch.events.append(
            ev.LeadReceived(
                subject_id=change.inbox_id,
                channel=change.channel,
                decision=change.decision,
                contact_id=_id(change.contact),
                deal_id=_id(change.deal),
                task_id=_id(change.task),
                owner_id=change.owner_id,
                assigned_by=change.assigned_by,
                match=change.match,
                possible_duplicate_of=change.possible_duplicate_of,
            )
        )


async def _flag_duplicates(batch: _Batch, run: list[ch.FlagDuplicate]) -> None:
    pairs = [(_id(c.contact), _id(c.other), c) for c in run]
    known = set()
    ids = sorted({a for a, _, _ in pairs})  # type: ignore[type-var]
    if any(not isinstance(c.contact, ch.CreateContact) for c in run):
        rows = await batch.conn.execute(
            select(duplicates_t.c.contact_id, duplicates_t.c.other_id).where(
                duplicates_t.c.contact_id.in_(ids)
            )
        )
        known = {tuple(r) for r in rows}
    rows_out = []
    for contact_id, other_id, change in pairs:
        if (contact_id, other_id) in known or contact_id == other_id:
            continue
        known.add((contact_id, other_id))
        rows_out.append(
            {
                "contact_id": contact_id,
                "other_id": other_id,
                "score": change.score,
                "reasons": {"reasons": list(change.reasons)},
                "origin": change.origin,
                "status": "open",
                "inbox_id": change.inbox_id,
                "created_at": batch.now,
            }
        )
        batch.events.append(
            ev.PossibleDuplicate(
                subject_id=contact_id,
                other_id=other_id,  # type: ignore[arg-type]
                score=change.score,
                origin=change.origin,
            )
        )
    if rows_out:
        await batch.conn.execute(insert(duplicates_t), rows_out)


async def _dismiss_duplicates(batch: _Batch, run: list[ch.DismissDuplicate]) -> None:
    for change in run:
        row = (
            await batch.conn.execute(
                select(duplicates_t).where(duplicates_t.c.id == change.pair_id)
            )
        ).first()
        if row is None:
            raise NotFound("review pair", change.pair_id)
        if row.status != "open":
            batch.refuse(change, f"pair {change.pair_id} was already {row.status}")
            continue
        await batch.conn.execute(
            update(duplicates_t)
            .where(duplicates_t.c.id == change.pair_id)
            .values(status="dismissed")
        )
        batch.events.append(
            ev.DuplicateDismissed(
                subject_id=change.pair_id, contact_id=row.contact_id, other_id=row.other_id
            )
        )


async def _merge_contacts(batch: _Batch, run: list[ch.MergeContacts]) -> None:
    for change in run:
        try:
            change.id, moved = await merging.merge_contacts(
                batch.conn, change.keep, change.other, batch.now
            )
        except merging.MergeError as error:
            _merge_refused(batch, change, error, "contact")
            continue
        batch.events.append(
            ev.ContactsMerged(
                subject_id=change.keep, merge_id=change.id, other_id=change.other, moved=moved
            )
        )


async def _merge_companies(batch: _Batch, run: list[ch.MergeCompanies]) -> None:
    for change in run:
        try:
            change.id, moved = await merging.merge_companies(
                batch.conn, change.keep, change.other, batch.now
            )
        except merging.MergeError as error:
            _merge_refused(batch, change, error, "company")
            continue
        batch.events.append(
            ev.CompaniesMerged(
                subject_id=change.keep, merge_id=change.id, other_id=change.other, moved=moved
            )
        )


def _merge_refused(batch: _Batch, change: ch.Change, error: Exception, what: str) -> None:
    text = str(error)
    if text.startswith("no "):
        missing = int(text.rsplit(" ", 1)[1])
        raise NotFound(what, missing) from error
    batch.refuse(change, text)


async def _unmerge(batch: _Batch, run: list[ch.Unmerge]) -> None:
    for change in run:
        try:
            change.restored = await merging.unmerge(batch.conn, change.merge_id, batch.now)
        except merging.MergeError as error:
            _merge_refused(batch, change, error, "merge")
            continue
        restored = change.restored
        cls = ev.CompaniesUnmerged if restored["kind"] == "company" else ev.ContactsUnmerged
        batch.events.append(
            cls(
                subject_id=restored["other_id"],
                merge_id=change.merge_id,
                keep_id=restored["keep_id"],
            )
        )


_WRITERS: dict[type[ch.Change], Callable[[_Batch, Any], Awaitable[None]]] = {
    ch.CreateCompany: _create_companies,
    ch.CreateContact: _create_contacts,
    ch.UpdateContact: _update_contacts,
    ch.CreateDeal: _create_deals,
    ch.MoveStage: _move_stage,
    ch.SetDealFields: _set_deal_fields,
    ch.AssignOwner: _assign_owner,
    ch.CloseWon: _close_won,
    ch.CloseLost: _close_lost,
    ch.Reopen: _reopen,
    ch.RepeatInquiry: _repeat_inquiry,
    ch.AddTask: _add_tasks,
    ch.CompleteTask: _complete_tasks,
    ch.RescheduleTask: _reschedule_tasks,
    ch.AddNote: _add_notes,
    ch.LogActivity: _log_activities,
    ch.RecordLead: _record_leads,
    ch.FlagDuplicate: _flag_duplicates,
    ch.DismissDuplicate: _dismiss_duplicates,
    ch.MergeContacts: _merge_contacts,
    ch.MergeCompanies: _merge_companies,
    ch.Unmerge: _unmerge,
}
