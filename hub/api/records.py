"""How the API shows records: deals, their cards, tasks, contacts, companies.

Every nested list is filtered the way its own list is: a manager sees only the
tasks, deals and contacts they own, inside any other object too.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub import lights
from hub.api.common import iso
from hub.domain.lead import UTM_FIELDS
from hub.domain.similarity import company_key
from hub.events import as_event
from hub.store.models import (
    Activity,
    Campaign,
    CampaignMessage,
    Company,
    Consent,
    Contact,
    ContactExternalId,
    ContactPoint,
    Deal,
    DomainEvent,
    Note,
    Pipeline,
    Stage,
    StageChange,
    Task,
    User,
)
from hub.store.types import utcnow
from hub.worktime import Team


def deals_query() -> Select[Any]:
    return (
        select(
            Deal.__table__,
            Pipeline.key.label("pipeline_key"),
            Stage.key.label("stage_key"),
            Stage.name.label("stage_name"),
            User.email.label("owner_email"),
        )
        .join(Pipeline, Pipeline.id == Deal.pipeline_id)
        .join(Stage, Stage.id == Deal.stage_id)
        .outerjoin(User, User.id == Deal.owner_id)
    )


def deal(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "title": row["title"],
        "pipeline": row["pipeline_key"],
        "stage": row["stage_key"],
        "stage_name": row["stage_name"],
        "status": row["status"],
        "contact_id": row["contact_id"],
        "company_id": row["company_id"],
        "owner_id": row["owner_id"],
        "owner": row["owner_email"],
        "amount": row["amount"],
        "currency": row["currency"],
        "source": row["source"],
        "segment": row["segment"],
        "utm": {k: row[k] for k in UTM_FIELDS if row[k]},
        "loss_reason": row["loss_reason"],
        "competitor": row["competitor"],
        "custom": row["custom"],
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
        "stage_entered_at": iso(row["stage_entered_at"]),
        "closed_at": iso(row["closed_at"]),
    }


def task(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "title": row["title"],
        "kind": row["kind"],
        "deal_id": row["deal_id"],
        "contact_id": row["contact_id"],
        "owner_id": row["owner_id"],
        "due_at": iso(row["due_at"]),
        "done_at": iso(row["done_at"]),
        "overdue": row["done_at"] is None and row["due_at"] < utcnow(),
        "result": row["result"],
    }


def contact(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "owner_id": row["owner_id"],
        "company_id": row["company_id"],
        "city": row["city"],
        "segment": row["segment"],
        "external_id": row["external_id"],
        "custom": row["custom"],
        "created_at": iso(row["created_at"]),
    }


def company(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "tax_id": row["tax_id"],
        "external_id": row["external_id"],
        "city": row["city"],
        "owner_id": row["owner_id"],
        "created_at": iso(row["created_at"]),
    }


async def add_lights(conn: AsyncConnection, deals: list[dict[str, Any]], hub: Any) -> None:
    """Each open deal's traffic light (``light``: colour and reasons); closed deals get none."""
    if hub.catalog is None:
        return
    found = await lights.lights(
        conn,
        [d["id"] for d in deals],
        hub.catalog,
        utcnow(),
        hub.settings.hub.timezone,
        Team.of_catalog(hub.settings, hub.catalog),
    )
    for deal in deals:
        light = found.get(deal["id"])
        deal["light"] = light.as_dict() if light is not None else None


def _event(row: Any) -> dict[str, Any]:
    return {**as_event(row), "occurred_at": iso(row.occurred_at)}


def company_search(q: str) -> Any:
    """Companies by tax id (ИНН), by name in any spelling of its legal form, or by part of it."""
    digits = "".join(ch for ch in q if ch.isdigit())
    return or_(
        Company.tax_id == digits,
        Company.name_key == company_key(q),
        Company.name.ilike(f"%{q}%"),
    )


async def deal_card(
    conn: AsyncConnection, deal_id: int, owner: int | None
) -> dict[str, Any] | None:
    """A deal with its stage history, tasks, notes, activities and events, oldest first;
    ``None`` when it does not exist or ``owner`` (a manager) does not own it."""
    stmt = deals_query().where(Deal.id == deal_id)
    if owner is not None:
        stmt = stmt.where(Deal.owner_id == owner)
    row = (await conn.execute(stmt)).mappings().first()
    if row is None:
        return None
    card = deal(row)
    tasks = select(Task.__table__).where(Task.deal_id == deal_id).order_by(Task.id)
    if owner is not None:
        tasks = tasks.where(Task.owner_id == owner)
    card["tasks"] = [task(t) for t in (await conn.execute(tasks)).mappings()]
    source = Stage.__table__.alias("source")
    history = await conn.execute(
        select(StageChange.changed_at, source.c.key, Stage.key, User.email, StageChange.override)
        .join(Stage, Stage.id == StageChange.to_stage_id)
        .outerjoin(source, source.c.id == StageChange.from_stage_id)
        .outerjoin(User, User.id == StageChange.user_id)
        .where(StageChange.deal_id == deal_id)
        .order_by(StageChange.id)
    )
    card["stage_history"] = [
        {"from": before, "stage": after, "by": by, "at": iso(at), "override": override}
        for at, before, after, by, override in history
    ]
    notes = await conn.execute(
        select(Note.id, Note.body, Note.created_at, User.email)
        .outerjoin(User, User.id == Note.author_id)
        .where(Note.deal_id == deal_id)
        .order_by(Note.id)
    )
    card["notes"] = [
        {"id": i, "text": text, "author": author, "created_at": iso(at)}
        for i, text, at, author in notes
    ]
    activities = await conn.execute(
        select(Activity.__table__).where(Activity.deal_id == deal_id).order_by(Activity.id)
    )
    card["activities"] = [
        {
            "id": a["id"],
            "kind": a["kind"],
            "direction": a["direction"],
            "summary": a["summary"],
            "payload": a["payload"],
            "occurred_at": iso(a["occurred_at"]),
        }
        for a in activities.mappings()
    ]
    task_ids = [t["id"] for t in card["tasks"]]
    note_ids = [n["id"] for n in card["notes"]]
    activity_ids = [a["id"] for a in card["activities"]]
    events = await conn.execute(
        select(DomainEvent.__table__)
        .where(
            or_(
                and_(DomainEvent.subject == "deal", DomainEvent.subject_id == deal_id),
                and_(DomainEvent.subject == "task", DomainEvent.subject_id.in_(task_ids)),
                and_(DomainEvent.subject == "note", DomainEvent.subject_id.in_(note_ids)),
                and_(DomainEvent.subject == "activity", DomainEvent.subject_id.in_(activity_ids)),
            )
        )
        .order_by(DomainEvent.id)
    )
    card["events"] = [_event(e) for e in events]
    return card


async def points_of(conn: AsyncConnection, contact_id: int) -> dict[str, list[dict[str, str]]]:
    """Phones and emails as the client entered them, beside their normalized form."""
    rows = await conn.execute(
        select(ContactPoint.kind, ContactPoint.value, ContactPoint.normalized)
        .where(ContactPoint.contact_id == contact_id)
        .order_by(ContactPoint.id)
    )
    found: dict[str, list[dict[str, str]]] = {"phones": [], "emails": []}
    for kind, value, normalized in rows:
        found[f"{kind}s"].append({"value": value, "normalized": normalized})
    return found


CAMPAIGNS_SHOWN = 20


async def reach_of(conn: AsyncConnection, contact_id: int) -> dict[str, list[dict[str, Any]]]:
    """Where else the contact is known (external ids), what they agreed to be sent, and the
    campaigns that reached them, newest first."""
    ids = await conn.execute(
        select(ContactExternalId.system, ContactExternalId.external_id)
        .where(ContactExternalId.contact_id == contact_id)
        .order_by(ContactExternalId.id)
    )
    consents = await conn.execute(
        select(Consent.channel, Consent.granted, Consent.source, Consent.recorded_at)
        .where(Consent.contact_id == contact_id)
        .order_by(Consent.channel)
    )
    m = CampaignMessage.__table__.c
    messages = await conn.execute(
        select(
            m.campaign_id, Campaign.name, Campaign.channel, m.state, m.skip_reason, m.sent_at,
            m.delivered_at, m.error,
        )
        .join(Campaign, Campaign.id == m.campaign_id)
        .where(m.contact_id == contact_id)
        .order_by(m.id.desc())
        .limit(CAMPAIGNS_SHOWN)
    )  # fmt: skip
    return {
        "external_ids": [
            {"system": system or None, "id": value, "ref": f"{system}:{value}" if system else value}
            for system, value in ids
        ],
        "consents": [
            {"channel": c, "granted": g, "source": src, "recorded_at": iso(at)}
            for c, g, src, at in consents
        ],
        "campaigns": [
            {
                "campaign_id": r.campaign_id,
                "name": r.name,
                "channel": r.channel,
                "state": r.state,
                "skip_reason": r.skip_reason,
                "sent_at": iso(r.sent_at),
                "delivered_at": iso(r.delivered_at),
                "error": r.error,
            }
            for r in messages
        ],
    }


async def contact_card(
    conn: AsyncConnection, contact_id: int, owner: int | None
) -> dict[str, Any] | None:
    stmt = select(Contact.__table__).where(Contact.id == contact_id)
    if owner is not None:
        stmt = stmt.where(Contact.owner_id == owner)
    row = (await conn.execute(stmt)).mappings().first()
    if row is None:
        return None
    card = contact(row)
    card.update(await points_of(conn, contact_id))
    card.update(await reach_of(conn, contact_id))
    deals = deals_query().where(Deal.contact_id == contact_id).order_by(Deal.id.desc())
    if owner is not None:
        deals = deals.where(Deal.owner_id == owner)
    card["deals"] = [deal(d) for d in (await conn.execute(deals)).mappings()]
    return card


async def company_card(
    conn: AsyncConnection, company_id: int, owner: int | None
) -> dict[str, Any] | None:
    """A company with its contacts and deals; a manager sees the company when it is theirs
    or one of their contacts or deals belongs to it, and only their own inside it."""
    row = (
        (await conn.execute(select(Company.__table__).where(Company.id == company_id)))
        .mappings()
        .first()
    )
    if row is None:
        return None
    card = company(row)
    people = select(Contact.__table__).where(Contact.company_id == company_id)
    deals = deals_query().where(Deal.company_id == company_id)
    if owner is not None:
        people = people.where(Contact.owner_id == owner)
        deals = deals.where(Deal.owner_id == owner)
    card["contacts"] = [
        contact(c) for c in (await conn.execute(people.order_by(Contact.id.desc()))).mappings()
    ]
    card["deals"] = [
        deal(d) for d in (await conn.execute(deals.order_by(Deal.id.desc()))).mappings()
    ]
    if (
        owner is not None
        and row["owner_id"] != owner
        and not card["contacts"]
        and not card["deals"]
    ):
        return None
    return card
