"""Writing a placed batch of leads: each table once, with bulk statements.

The lead pipeline (:mod:`hub.leads`) decides what every lead becomes; these
functions write it: contacts and their points, reopened and new deals, tasks,
review flags, stage history, activities and domain events. Ids are allocated
before each insert (:func:`hub.store.ops.allocate_ids`), so no insert needs
``RETURNING``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, insert, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.config import Settings
from hub.domain.lead import UTM_FIELDS, Lead
from hub.store.models import (
    Activity,
    Contact,
    ContactPoint,
    Deal,
    DomainEvent,
    DuplicateCandidate,
    StageChange,
    Task,
)
from hub.store.ops import Catalog, allocate_ids

if TYPE_CHECKING:
    from hub.leads import _Contact, _Plan

DEFAULT_CONTACT_WITHIN = timedelta(days=1)

contacts_t = Contact.__table__
points_t = ContactPoint.__table__
deals_t = Deal.__table__
history_t = StageChange.__table__
tasks_t = Task.__table__
activities_t = Activity.__table__
events_t = DomainEvent.__table__
duplicates_t = DuplicateCandidate.__table__


def deal_title(lead: Lead) -> str:
    if lead.title:
        return lead.title[:300]
    who = lead.name or (lead.phones[0] if lead.phones else None)
    who = who or (lead.emails[0] if lead.emails else None) or "lead"
    return who[:300]


async def insert_contacts(
    conn: AsyncConnection, new_contacts: list[_Contact], now: datetime
) -> None:
    if not new_contacts:
        return
    ids = await allocate_ids(conn, contacts_t, len(new_contacts))
    rows = []
    for contact, contact_id in zip(new_contacts, ids, strict=True):
        contact.id = contact_id
        lead = contact.lead
        assert lead is not None
        rows.append(
            {
                "id": contact_id,
                "name": lead.name,
                "owner_id": contact.owner_id,
                "city": lead.city,
                "segment": lead.segment,
                "external_id": lead.external_id,
                "custom": {"company": lead.company} if lead.company else {},
                "created_at": now,
                "updated_at": now,
                "company_id": contact.company_id,
            }
        )
    await conn.execute(insert(contacts_t), rows)


async def insert_points(
    conn: AsyncConnection, plans: Sequence[_Plan], new_contacts: list[_Contact], now: datetime
) -> None:
    rows: list[dict[str, Any]] = []
    done: set[tuple[int, str, str]] = set()
    for plan in plans:
        contact = plan.contact
        assert contact is not None and contact.id is not None
        fresh = contact in new_contacts
        for point in plan.points if fresh else plan.new_points:
            key = (contact.id, point.kind, point.normalized)
            if key in done:
                continue
            done.add(key)
            rows.append(
                {
                    "contact_id": contact.id,
                    "kind": point.kind,
                    "value": point.value,
                    "normalized": point.normalized,
                    "created_at": now,
                }
            )
    if rows:
        await conn.execute(insert(points_t), rows)


async def reopen(conn: AsyncConnection, plans: list[_Plan], now: datetime) -> None:
    if not plans:
        return
    await conn.execute(
        update(deals_t)
        .where(deals_t.c.id == bindparam("deal_id"))
        .values(
            status="open",
            stage_id=bindparam("stage"),
            stage_entered_at=now,
            closed_at=None,
            updated_at=now,
            owner_id=bindparam("owner"),
        ),
        [
            {"deal_id": p.deal.id, "stage": p.stage.id, "owner": p.owner_id}
            for p in plans
            if p.deal is not None
        ],
    )


async def insert_deals(conn: AsyncConnection, plans: list[_Plan], now: datetime) -> None:
    if not plans:
        return
    ids = await allocate_ids(conn, deals_t, len(plans))
    rows = []
    for plan, deal_id in zip(plans, ids, strict=True):
        assert plan.deal is not None and plan.contact is not None
        plan.deal.id = deal_id
        lead = plan.lead
        custom = dict(lead.custom)
        if lead.company:
            custom.setdefault("company", lead.company)
        rows.append(
            {
                "id": deal_id,
                "title": deal_title(lead),
                "pipeline_id": plan.pipeline.id,
                "stage_id": plan.stage.id,
                "contact_id": plan.contact.id,
                "company_id": plan.company_id or plan.contact.company_id,
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
                **{name: lead.utm.get(name) for name in UTM_FIELDS},
            }
        )
    await conn.execute(insert(deals_t), rows)


async def insert_tasks(
    conn: AsyncConnection,
    plans: Sequence[_Plan],
    now: datetime,
    catalog: Catalog,
    settings: Settings,
) -> None:
    ids = await allocate_ids(conn, tasks_t, len(plans))
    rows = []
    for plan, task_id in zip(plans, ids, strict=True):
        assert plan.deal is not None
        plan.task_id = task_id
        if plan.action == "attach":
            stage = catalog.stages_by_id.get(plan.deal.stage_id, plan.stage)
            title = repeat_task(settings, plan)
        else:
            stage, title = plan.stage, plan.pipeline.first_task
        rows.append(
            {
                "id": task_id,
                "title": title,
                "kind": "call",
                "deal_id": plan.deal.id,
                "contact_id": plan.contact.id if plan.contact else None,
                "owner_id": plan.owner_id,
                "due_at": now + (stage.contact_within or DEFAULT_CONTACT_WITHIN),
                "done_at": None,
                "result": None,
                "created_at": now,
            }
        )
    if rows:
        await conn.execute(insert(tasks_t), rows)


def repeat_task(settings: Settings, plan: _Plan) -> str:
    configured = settings.pipelines.get(plan.pipeline.key)
    return configured.repeat.task if configured else "Repeat request from the client"


async def insert_duplicates(conn: AsyncConnection, plans: list[_Plan], now: datetime) -> None:
    rows = []
    for plan in plans:
        assert plan.review is not None and plan.contact is not None
        other, result = plan.review
        if other.id is None or plan.contact.id is None:
            continue
        rows.append(
            {
                "contact_id": plan.contact.id,
                "other_id": other.id,
                "score": result.value,
                "reasons": {"reasons": list(result.reasons)},
                "origin": "intake",
                "status": "open",
                "inbox_id": plan.inbox_id,
                "created_at": now,
            }
        )
    if rows:
        await conn.execute(insert(duplicates_t), rows)


async def insert_history(
    conn: AsyncConnection,
    plans: Sequence[_Plan],
    new_contacts: list[_Contact],
    now: datetime,
) -> list[dict[str, Any]]:
    """Stage history, activities, domain events, and each lead's recorded decision."""
    history, activities, events, results = [], [], [], []
    announced: set[int] = set()
    for plan in plans:
        lead, deal, contact = plan.lead, plan.deal, plan.contact
        assert deal is not None and contact is not None
        if plan.action in ("new_deal", "reopen"):
            history.append(
                {
                    "deal_id": deal.id,
                    "from_stage_id": plan.reopened_from,
                    "to_stage_id": plan.stage.id,
                    "user_id": None,
                    "changed_at": now,
                }
            )
        activities.append(
            {
                "kind": lead.activity_kind,
                "direction": "in",
                "deal_id": deal.id,
                "contact_id": contact.id,
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
        result: dict[str, Any] = {
            "decision": plan.decision,
            "contact_id": contact.id,
            "deal_id": deal.id,
            "task_id": plan.task_id,
            "owner_id": plan.owner_id,
            "assigned_by": plan.rule,
        }
        if plan.match is not None:
            result["match"] = plan.match.describe()
        if plan.review is not None:
            result["possible_duplicate_of"] = plan.review[0].id
            result["match"] = plan.review[1].describe()
        results.append(result)
        common = {"occurred_at": now}
        events.append(
            {
                "type": "lead.received",
                "subject": "lead",
                "subject_id": plan.inbox_id,
                "payload": {"channel": lead.channel, **result},
                **common,
            }
        )
        if contact in new_contacts and contact.id not in announced:
            announced.add(contact.id)  # type: ignore[arg-type]
            events.append(
                {
                    "type": "contact.created",
                    "subject": "contact",
                    "subject_id": contact.id,
                    "payload": {"name": contact.name, "owner_id": contact.owner_id},
                    **common,
                }
            )
        deal_event = {
            "new_deal": "deal.created",
            "attach": "deal.repeat_inquiry",
            "reopen": "deal.reopened",
        }[plan.action]
        events.append(
            {
                "type": deal_event,
                "subject": "deal",
                "subject_id": deal.id,
                "payload": {
                    "title": deal_title(lead),
                    "pipeline": plan.pipeline.key,
                    "stage": plan.stage.key,
                    "owner_id": plan.owner_id,
                    "contact_id": contact.id,
                    "source": lead.source,
                    "channel": lead.channel,
                    "lead_id": plan.inbox_id,
                },
                **common,
            }
        )
        events.append(
            {
                "type": "task.created",
                "subject": "task",
                "subject_id": plan.task_id,
                "payload": {"deal_id": deal.id, "owner_id": plan.owner_id},
                **common,
            }
        )
        if plan.review is not None:
            events.append(
                {
                    "type": "contact.possible_duplicate",
                    "subject": "contact",
                    "subject_id": contact.id,
                    "payload": {"other_id": plan.review[0].id, "score": plan.review[1].value},
                    **common,
                }
            )
    if history:
        await conn.execute(insert(history_t), history)
    await conn.execute(insert(activities_t), activities)
    await conn.execute(insert(events_t), events)
    return results
