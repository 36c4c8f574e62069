"""The lead pipeline: normalize → match → decide → assign → deal, first task, activity.

It runs over a batch of inbox events inside one transaction and writes with bulk
statements, one per table, so its cost per lead is a few rows, not a few round
trips. The decision for each lead is returned and stored on its inbox event.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import and_, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.lead import UTM_FIELDS, Lead
from hub.normalize import InvalidPoint, Point, email_point, phone_point
from hub.store.models import (
    Activity,
    Contact,
    ContactPoint,
    Deal,
    DomainEvent,
    StageChange,
    Task,
)
from hub.store.ops import Catalog, PipelineInfo, StageInfo, allocate_ids
from rules.assignment import Assigner

DEFAULT_CONTACT_WITHIN = timedelta(days=1)

contacts_t = Contact.__table__
points_t = ContactPoint.__table__
deals_t = Deal.__table__
history_t = StageChange.__table__
tasks_t = Task.__table__
activities_t = Activity.__table__
events_t = DomainEvent.__table__


class LeadRejected(ValueError):
    """A lead the pipeline cannot place (unknown pipeline or stage): a config problem."""


@dataclass(slots=True)
class _Plan:
    inbox_id: int
    lead: Lead
    pipeline: PipelineInfo
    stage: StageInfo
    points: list[Point]
    invalid: list[str]
    received_at: datetime
    contact_id: int | None = None
    new_contact: int | None = None  # index into the batch's new contacts
    owner_id: int | None = None
    rule: str = "unassigned"
    decision: str = "new_contact"
    new_points: list[Point] = field(default_factory=list)


@dataclass(slots=True)
class _NewContact:
    lead: Lead
    points: list[Point]
    owner_id: int | None = None
    id: int | None = None


def deal_title(lead: Lead) -> str:
    if lead.title:
        return lead.title[:300]
    who = lead.name or (lead.phones[0] if lead.phones else None)
    who = who or (lead.emails[0] if lead.emails else None) or "lead"
    return who[:300]


class LeadPipeline:
    def __init__(
        self,
        catalog: Catalog,
        region: str,
        reserve: Callable[[AsyncConnection, str, int], Awaitable[int]],
    ) -> None:
        self.catalog = catalog
        self.region = region
        self.reserve = reserve

    def plan(self, inbox_id: int, lead: Lead, received_at: datetime) -> _Plan:
        """Normalize and place one lead; raises :class:`LeadRejected` for a lead it cannot place."""
        pipeline_key = lead.pipeline or self.catalog.default
        pipeline = self.catalog.pipelines.get(pipeline_key)
        if pipeline is None:
            raise LeadRejected(f"unknown pipeline {pipeline_key!r}")
        if lead.stage:
            stage = pipeline.stages.get(lead.stage)
            if stage is None or stage.kind != "open":
                raise LeadRejected(f"pipeline {pipeline_key!r} has no open stage {lead.stage!r}")
        else:
            stage = pipeline.entry_stage
        points: list[Point] = []
        invalid: list[str] = []
        for raw in lead.phones:
            try:
                points.append(phone_point(raw, self.region))
            except InvalidPoint:
                invalid.append(raw)
        for raw in lead.emails:
            try:
                points.append(email_point(raw))
            except InvalidPoint:
                invalid.append(raw)
        unique = list({(p.kind, p.normalized): p for p in points}.values())
        return _Plan(inbox_id, lead, pipeline, stage, unique, invalid, received_at)

    async def run(self, conn: AsyncConnection, plans: Sequence[_Plan], now: datetime) -> list[dict]:
        """Write the deals for ``plans`` in ``conn``'s transaction; returns one result per plan."""
        known = await self._known_points(conn, plans)
        owners = await self._owners(conn, {cid for cid, _ in known.values()})
        new_contacts: list[_NewContact] = []
        pending: dict[tuple[str, str], int] = {}  # point → new contact index, within the batch

        for plan in plans:
            keys = [(p.kind, p.normalized) for p in plan.points]
            matched = sorted({known[k][0] for k in keys if k in known})
            if matched:
                plan.contact_id = matched[0]  # the oldest contact holding one of the points
                plan.decision = "known_contact"
                have = {k for k, (cid, _) in known.items() if cid == plan.contact_id}
                plan.new_points = [p for p in plan.points if (p.kind, p.normalized) not in have]
                for p in plan.new_points:
                    known[(p.kind, p.normalized)] = (plan.contact_id, p.value)
                continue
            index = next((pending[k] for k in keys if k in pending), None)
            if index is None:
                index = len(new_contacts)
                new_contacts.append(_NewContact(plan.lead, list(plan.points)))
                plan.decision = "new_contact"
            else:
                plan.decision = "same_batch_contact"
                existing = {(p.kind, p.normalized) for p in new_contacts[index].points}
                new_contacts[index].points += [
                    p for p in plan.points if (p.kind, p.normalized) not in existing
                ]
            plan.new_contact = index
            for k in keys:
                pending.setdefault(k, index)

        contact_owners = [
            owners.get(p.contact_id) if p.contact_id is not None else None for p in plans
        ]
        assigner = await Assigner.for_batch(conn, contact_owners, partial(self.reserve, conn))
        for plan, contact_owner in zip(plans, contact_owners, strict=True):
            if plan.new_contact is not None and new_contacts[plan.new_contact].owner_id:
                plan.owner_id = new_contacts[plan.new_contact].owner_id
                plan.rule = "contact_owner"
                continue
            assignment = assigner.assign(contact_owner)
            plan.owner_id, plan.rule = assignment.owner_id, assignment.rule
            if plan.new_contact is not None:
                new_contacts[plan.new_contact].owner_id = assignment.owner_id

        await self._insert_contacts(conn, new_contacts, now)
        for plan in plans:
            if plan.new_contact is not None:
                plan.contact_id = new_contacts[plan.new_contact].id
        await self._insert_points(conn, plans, new_contacts, now)
        return await self._insert_deals(conn, plans, new_contacts, now)

    # -- reads ----------------------------------------------------------------------------

    @staticmethod
    async def _known_points(
        conn: AsyncConnection, plans: Sequence[_Plan]
    ) -> dict[tuple[str, str], tuple[int, str]]:
        wanted: dict[str, set[str]] = {}
        for plan in plans:
            for p in plan.points:
                wanted.setdefault(p.kind, set()).add(p.normalized)
        if not wanted:
            return {}
        clauses = [
            and_(points_t.c.kind == kind, points_t.c.normalized.in_(sorted(values)))
            for kind, values in wanted.items()
        ]
        rows = await conn.execute(
            select(points_t.c.kind, points_t.c.normalized, points_t.c.contact_id, points_t.c.value)
            .where(or_(*clauses))
            .order_by(points_t.c.contact_id)
        )
        known: dict[tuple[str, str], tuple[int, str]] = {}
        for kind, normalized, contact_id, value in rows:
            known.setdefault((kind, normalized), (contact_id, value))
        return known

    @staticmethod
    async def _owners(conn: AsyncConnection, contact_ids: set[int]) -> dict[int, int | None]:
        if not contact_ids:
            return {}
        rows = await conn.execute(
            select(contacts_t.c.id, contacts_t.c.owner_id).where(
                contacts_t.c.id.in_(sorted(contact_ids))
            )
        )
        return dict(rows.all())

    # -- writes ---------------------------------------------------------------------------

    @staticmethod
    async def _insert_contacts(
        conn: AsyncConnection, new_contacts: list[_NewContact], now: datetime
    ) -> None:
        if not new_contacts:
            return
        rows = [
            {
                "name": c.lead.name,
                "owner_id": c.owner_id,
                "city": c.lead.city,
                "segment": c.lead.segment,
                "external_id": None,
                "custom": {"company": c.lead.company} if c.lead.company else {},
                "created_at": now,
                "updated_at": now,
                "company_id": None,
            }
            for c in new_contacts
        ]
        ids = await allocate_ids(conn, contacts_t, len(rows))
        for contact, row, contact_id in zip(new_contacts, rows, ids, strict=True):
            contact.id = row["id"] = contact_id
        await conn.execute(insert(contacts_t), rows)

    @staticmethod
    async def _insert_points(
        conn: AsyncConnection,
        plans: Sequence[_Plan],
        new_contacts: list[_NewContact],
        now: datetime,
    ) -> None:
        rows = [
            {
                "contact_id": c.id,
                "kind": p.kind,
                "value": p.value,
                "normalized": p.normalized,
                "created_at": now,
            }
            for c in new_contacts
            for p in c.points
        ]
        rows += [
            {
                "contact_id": plan.contact_id,
                "kind": p.kind,
                "value": p.value,
                "normalized": p.normalized,
                "created_at": now,
            }
            for plan in plans
            for p in plan.new_points
        ]
        if rows:
            await conn.execute(insert(points_t), rows)

    async def _insert_deals(
        self,
        conn: AsyncConnection,
        plans: Sequence[_Plan],
        new_contacts: list[_NewContact],
        now: datetime,
    ) -> list[dict[str, Any]]:
        deal_rows = []
        for plan in plans:
            lead = plan.lead
            utm = {name: lead.utm.get(name) for name in UTM_FIELDS}
            custom = dict(lead.custom)
            if lead.company:
                custom.setdefault("company", lead.company)
            deal_rows.append(
                {
                    "title": deal_title(lead),
                    "pipeline_id": plan.pipeline.id,
                    "stage_id": plan.stage.id,
                    "contact_id": plan.contact_id,
                    "company_id": None,
                    "owner_id": plan.owner_id,
                    "amount": lead.amount,
                    "currency": lead.currency,
                    "source": lead.source,
                    "segment": lead.segment,
                    "status": "open",
                    "loss_reason": None,
                    "competitor": None,
                    "custom": custom,
                    "inbox_id": plan.inbox_id,
                    "created_at": now,
                    "updated_at": now,
                    "stage_entered_at": now,
                    "closed_at": None,
                    **utm,
                }
            )
        deal_ids = await allocate_ids(conn, deals_t, len(deal_rows))
        for row, deal_id in zip(deal_rows, deal_ids, strict=True):
            row["id"] = deal_id
        await conn.execute(insert(deals_t), deal_rows)

        await conn.execute(
            insert(history_t),
            [
                {
                    "deal_id": deal_id,
                    "from_stage_id": None,
                    "to_stage_id": plan.stage.id,
                    "user_id": None,
                    "changed_at": now,
                }
                for plan, deal_id in zip(plans, deal_ids, strict=True)
            ],
        )
        task_ids = await allocate_ids(conn, tasks_t, len(plans))
        task_rows = [
            {
                "id": task_id,
                "title": plan.pipeline.first_task,
                "kind": "call",
                "deal_id": deal_id,
                "contact_id": plan.contact_id,
                "owner_id": plan.owner_id,
                "due_at": now + (plan.stage.contact_within or DEFAULT_CONTACT_WITHIN),
                "done_at": None,
                "result": None,
                "created_at": now,
            }
            for plan, deal_id, task_id in zip(plans, deal_ids, task_ids, strict=True)
        ]
        await conn.execute(insert(tasks_t), task_rows)

        activity_rows = []
        event_rows = []
        results = []
        created_contacts = {c.id for c in new_contacts}
        seen_new: set[int] = set()
        for plan, deal_id, task_id, task in zip(plans, deal_ids, task_ids, task_rows, strict=True):
            lead = plan.lead
            activity_rows.append(
                {
                    "kind": lead.activity_kind,
                    "direction": "in",
                    "deal_id": deal_id,
                    "contact_id": plan.contact_id,
                    "summary": (lead.summary or f"{lead.activity_kind} via {lead.channel}")[:500],
                    "payload": {
                        "submission": lead.submission,
                        "message": lead.message,
                        "invalid_points": plan.invalid,
                    },
                    "inbox_id": plan.inbox_id,
                    "occurred_at": plan.received_at,
                }
            )
            decision = {
                "decision": plan.decision,
                "contact_id": plan.contact_id,
                "deal_id": deal_id,
                "task_id": task_id,
                "owner_id": plan.owner_id,
                "assigned_by": plan.rule,
            }
            results.append(decision)
            common = {"occurred_at": now}
            event_rows.append(
                {
                    "type": "lead.received",
                    "subject": "lead",
                    "subject_id": plan.inbox_id,
                    "payload": {"channel": lead.channel, **decision},
                    **common,
                }
            )
            if plan.contact_id in created_contacts and plan.contact_id not in seen_new:
                seen_new.add(plan.contact_id)
                event_rows.append(
                    {
                        "type": "contact.created",
                        "subject": "contact",
                        "subject_id": plan.contact_id,
                        "payload": {"name": lead.name, "owner_id": plan.owner_id},
                        **common,
                    }
                )
            event_rows.append(
                {
                    "type": "deal.created",
                    "subject": "deal",
                    "subject_id": deal_id,
                    "payload": {
                        "title": deal_title(lead),
                        "pipeline": plan.pipeline.key,
                        "stage": plan.stage.key,
                        "owner_id": plan.owner_id,
                        "contact_id": plan.contact_id,
                        "source": lead.source,
                        "channel": lead.channel,
                    },
                    **common,
                }
            )
            event_rows.append(
                {
                    "type": "task.created",
                    "subject": "task",
                    "subject_id": task_id,
                    "payload": {
                        "deal_id": deal_id,
                        "owner_id": plan.owner_id,
                        "title": task["title"],
                        "due_at": task["due_at"].isoformat(),
                    },
                    **common,
                }
            )
        await conn.execute(insert(activities_t), activity_rows)
        await conn.execute(insert(events_t), event_rows)
        return results
