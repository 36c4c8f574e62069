"""``/api/v1/contacts`` and ``/api/v1/companies``: lists, cards, edits and merges; and the
rules every write about people shares (owners by email, phones and emails normalized,
a point another contact holds is a conflict)."""

from __future__ import annotations

import contextlib
from datetime import tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.api import records
from hub.api.common import (
    HUB_KEY,
    Problem,
    body,
    json_response,
    page,
    path_id,
    principal,
    require_head,
    scope,
    write,
)
from hub.deals import changes as ch
from hub.domain.normalize import (
    InvalidPoint,
    Point,
    email_point,
    normalize_email,
    normalize_phone,
    phone_point,
)
from hub.store.models import Company, Contact, ContactPoint, User

routes = web.RouteTableDef()


class NewContact(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str | None = Field(default=None, max_length=300)
    phones: list[str] = Field(default=[], max_length=20)
    emails: list[str] = Field(default=[], max_length=20)
    city: str | None = Field(default=None, max_length=100)
    segment: str | None = Field(default=None, max_length=100)


class ContactPatch(BaseModel):
    """Fields to set; ``phones`` and ``emails``, when given, are the contact's whole list."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str | None = Field(default=None, max_length=300)
    city: str | None = Field(default=None, max_length=100)
    segment: str | None = Field(default=None, max_length=100)
    phones: list[str] | None = Field(default=None, max_length=20)
    emails: list[str] | None = Field(default=None, max_length=20)
    owner: str | None = Field(default=None, description="Owner's email; head and admin only.")


class MergeIn(BaseModel):
    other_id: int = Field(ge=1, le=2**63 - 1)


async def owner_id_of(request: web.Request, email: str | None) -> int | None:
    """The owner a write names: a manager's own id whatever they send (they cannot give
    records away); for head and admin the active user with that email, or nobody."""
    who = principal(request)
    if who.limited:
        if email is not None and email.lower() != (who.user_email or "").lower():
            raise Problem(
                422,
                "a manager cannot give records to someone else",
                reasons=[{"field": "owner", "reason": "head or admin only"}],
            )
        return who.user_id
    if email is None:
        return None
    hub = request.app[HUB_KEY]
    async with hub.store.read() as conn:
        found = (
            await conn.execute(
                select(User.id).where(User.email == email.lower(), User.active.is_(True))
            )
        ).scalar_one_or_none()
    if found is None:
        raise Problem(422, f"no active user {email}", reasons=[{"field": "owner"}])
    return found


async def user_zone(request: web.Request) -> tzinfo:
    """The time zone a naive time in a request is read in: the token user's, else the hub's."""
    hub = request.app[HUB_KEY]
    name = hub.settings.hub.timezone
    who = principal(request)
    if who.user_email:
        configured = next((u for u in hub.settings.users if u.email == who.user_email), None)
        if configured is not None and configured.timezone:
            name = configured.timezone
    return ZoneInfo(name)


async def point_changes(
    request: web.Request, phones: list[str], emails: list[str], contact_id: int | None
) -> list[Point]:
    """Phones and emails normalized as leads' are; a bad one or one that another contact
    holds refuses the request, every problem named at once."""
    hub = request.app[HUB_KEY]
    region = hub.settings.hub.default_region
    points: list[Point] = []
    reasons: list[dict[str, str]] = []
    for kind, values in (("phone", phones), ("email", emails)):
        for raw in values:
            try:
                point = phone_point(raw, region) if kind == "phone" else email_point(raw)
            except InvalidPoint as error:
                reasons.append({"field": f"{kind}s", "reason": f"{raw!r}: {error}"})
                continue
            if all((p.kind, p.normalized) != (point.kind, point.normalized) for p in points):
                points.append(point)
    if reasons:
        raise Problem(422, "; ".join(r["reason"] for r in reasons), reasons=reasons)
    if points:
        async with hub.store.read() as conn:
            held = await conn.execute(
                select(ContactPoint.kind, ContactPoint.normalized, ContactPoint.contact_id).where(
                    or_(
                        *(
                            and_(
                                ContactPoint.kind == p.kind,
                                ContactPoint.normalized == p.normalized,
                            )
                            for p in points
                        )
                    ),
                    ContactPoint.contact_id != (contact_id or 0),
                )
            )
            conflicts = [
                {
                    "field": f"{kind}s",
                    "reason": f"{normalized} belongs to contact {holder}",
                    "contact_id": holder,
                }
                for kind, normalized, holder in held
            ]
        if conflicts:
            raise Problem(409, "; ".join(c["reason"] for c in conflicts), reasons=conflicts)
    return points


# -- contacts -------------------------------------------------------------------------------


@routes.get("/api/v1/contacts")
async def list_contacts(request: web.Request) -> web.Response:
    """Contacts, newest first; ``?q=`` finds by phone, email or part of the name."""
    hub = request.app[HUB_KEY]
    stmt = select(Contact.__table__)
    owner = scope(request)
    if owner is not None:
        stmt = stmt.where(Contact.owner_id == owner)
    q = request.query.get("q", "").strip()
    if q:
        keys = []
        with contextlib.suppress(InvalidPoint):
            keys.append(normalize_phone(q, hub.settings.hub.default_region))
        with contextlib.suppress(InvalidPoint):
            keys.append(normalize_email(q))
        by_point = select(ContactPoint.contact_id).where(ContactPoint.normalized.in_(keys))
        stmt = stmt.where(or_(Contact.id.in_(by_point), Contact.name.ilike(f"%{q}%")))
    return await page(request, stmt, Contact.id, records.contact)


@routes.get("/api/v1/contacts/{id}")
async def get_contact(request: web.Request) -> web.Response:
    """A contact with phones and emails (as entered and normalized) and their deals."""
    hub = request.app[HUB_KEY]
    contact_id = path_id(request)
    async with hub.store.read() as conn:
        card = await records.contact_card(conn, contact_id, scope(request))
    if card is None:
        raise Problem(404, f"no contact {contact_id}")
    return json_response(card)


@routes.patch("/api/v1/contacts/{id}")
async def patch_contact(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    contact_id = path_id(request)
    given: ContactPatch = await body(request, ContactPatch)
    sent = given.model_fields_set
    change = ch.UpdateContact(contact=contact_id)
    for name in ("name", "city", "segment"):
        if name in sent:
            setattr(change, name, getattr(given, name))
    if "owner" in sent:
        if principal(request).limited:
            raise Problem(
                422, "a manager cannot give a contact to someone else", reasons=[{"field": "owner"}]
            )
        change.owner_id = await owner_id_of(request, given.owner)
    if given.phones is not None or given.emails is not None:
        async with hub.store.read() as conn:
            card = await records.contact_card(conn, contact_id, scope(request))
        if card is None:
            raise Problem(404, f"no contact {contact_id}")
        wanted = await point_changes(
            request,
            given.phones if given.phones is not None else [p["value"] for p in card["phones"]],
            given.emails if given.emails is not None else [e["value"] for e in card["emails"]],
            contact_id,
        )
        have = {("phone", p["normalized"]) for p in card["phones"]}
        have |= {("email", e["normalized"]) for e in card["emails"]}
        keys = {(p.kind, p.normalized) for p in wanted}
        change.add_points = [p for p in wanted if (p.kind, p.normalized) not in have]
        change.remove_points = sorted(have - keys)

    async def respond(conn: AsyncConnection) -> tuple[int, Any]:
        return 200, await records.contact_card(conn, contact_id, scope(request))

    return await write(request, [change], respond)


@routes.post("/api/v1/contacts/{id}/merge")
async def merge_contact(request: web.Request) -> web.Response:
    """Merge ``{"other_id": N}`` into this contact; answers the merge id for undoing it."""
    from hub.deals.merging import RULE

    require_head(request, "merging")
    keep = path_id(request)
    given: MergeIn = await body(request, MergeIn)
    change = ch.MergeContacts(keep=keep, other=given.other_id)

    async def respond(conn: AsyncConnection) -> tuple[int, Any]:
        return 201, {"merge_id": change.id, "kept": keep, "merged": given.other_id, "rule": RULE}

    return await write(request, [change], respond, refused_status=409)


# -- companies ------------------------------------------------------------------------------


@routes.get("/api/v1/companies")
async def list_companies(request: web.Request) -> web.Response:
    """Companies; ``?q=`` finds by tax id or by name in any spelling of its legal form."""
    stmt = select(Company.__table__)
    owner = scope(request)
    if owner is not None:
        from hub.store.models import Deal

        mine = select(Contact.company_id).where(Contact.owner_id == owner)
        theirs = select(Deal.company_id).where(Deal.owner_id == owner)
        stmt = stmt.where(
            or_(Company.owner_id == owner, Company.id.in_(mine), Company.id.in_(theirs))
        )
    q = request.query.get("q", "").strip()
    if q:
        stmt = stmt.where(records.company_search(q))
    return await page(request, stmt, Company.id, records.company)


@routes.get("/api/v1/companies/duplicates")
async def company_duplicates(request: web.Request) -> web.Response:
    """Companies the store holds twice (the same tax id, or the same name with a phone or
    email their contacts share), each with the one proposed to keep; nothing is changed."""
    from hub.company_duplicates import company_twins

    require_head(request, "reviewing duplicates")
    async with request.app[HUB_KEY].store.read() as conn:
        twins = await company_twins(conn)
    return json_response({"items": [t.as_dict() for t in twins]})


@routes.get("/api/v1/companies/{id}")
async def get_company(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    company_id = path_id(request)
    async with hub.store.read() as conn:
        card = await records.company_card(conn, company_id, scope(request))
    if card is None:
        raise Problem(404, f"no company {company_id}")
    return json_response(card)


@routes.post("/api/v1/companies/{id}/merge")
async def merge_company(request: web.Request) -> web.Response:
    """Merge ``{"other_id": N}`` into this company; its contacts and deals move here."""
    from hub.deals.merging import RULE

    require_head(request, "merging")
    keep = path_id(request)
    given: MergeIn = await body(request, MergeIn)
    change = ch.MergeCompanies(keep=keep, other=given.other_id)

    async def respond(conn: AsyncConnection) -> tuple[int, Any]:
        return 201, {"merge_id": change.id, "kept": keep, "merged": given.other_id, "rule": RULE}

    return await write(request, [change], respond, refused_status=409)
