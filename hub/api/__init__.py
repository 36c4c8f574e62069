"""The HTTP API: ``/api/v1/...`` behind bearer tokens with roles.

Reads for every role; merging contacts (and undoing it) for head and admin.

Roles: ``admin`` and ``head`` see everything; ``manager`` sees only the deals,
tasks and contacts they own. Lists are paginated by id (``?after=ID&limit=N``)
and carry a ``next`` link while more remain.
"""

from __future__ import annotations

import contextlib
import hmac
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from sqlalchemy import Select, and_, or_, select

from hub.context import Hub
from hub.domain.normalize import InvalidPoint, normalize_email, normalize_phone
from hub.store.models import (
    Activity,
    Company,
    Contact,
    ContactPoint,
    Deal,
    InboxEvent,
    Pipeline,
    Stage,
    StageChange,
    Task,
    User,
)
from hub.store.types import utcnow

HUB_KEY = web.AppKey("hub", Hub)


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    role: str
    user_email: str | None


PRINCIPAL = web.RequestKey("principal", Principal)


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps(data, default=_default),
        status=status,
        content_type="application/json",
    )


def _problem(status: int, message: str) -> web.Response:
    return _json({"error": message}, status=status)


@web.middleware
async def auth_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    if not request.path.startswith("/api/") or request.path == OPENAPI_PATH:
        return await handler(request)
    hub = request.app[HUB_KEY]
    header = request.headers.get("Authorization", "")
    if not header.lower().startswith("bearer "):
        return _problem(401, "missing bearer token")
    given = header[7:].strip().encode()
    for name, token in hub.settings.api.tokens.items():
        if hmac.compare_digest(given, token.token.get_secret_value().encode()):
            request[PRINCIPAL] = Principal(name, token.role, token.user)
            return await handler(request)
    return _problem(401, "unknown token")


def _int(request: web.Request, name: str, default: int | None = None) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise web.HTTPBadRequest(
            text=orjson.dumps({"error": f"{name} must be an integer"}).decode(),
            content_type="application/json",
        ) from None


async def _owner_scope(request: web.Request) -> int | bool | None:
    """The user id a manager token is limited to; False when not limited."""
    principal: Principal = request[PRINCIPAL]
    if principal.role != "manager":
        return False
    hub = request.app[HUB_KEY]
    async with hub.store.read() as conn:
        return (
            await conn.execute(select(User.id).where(User.email == principal.user_email))
        ).scalar_one_or_none()


async def _page(
    request: web.Request, stmt: Select[Any], id_column: Any, serialize: Any
) -> web.Response:
    hub = request.app[HUB_KEY]
    limit = min(_int(request, "limit", hub.settings.api.page_size) or 1, 1000)
    after = _int(request, "after", 0) or 0
    stmt = stmt.where(id_column > after).order_by(id_column).limit(limit + 1)
    async with hub.store.read() as conn:
        rows = (await conn.execute(stmt)).mappings().all()
    more = len(rows) > limit
    rows = rows[:limit]
    items = [serialize(row) for row in rows]
    next_link = None
    if more and rows:
        query = dict(request.query)
        query.update(after=str(rows[-1]["id"]), limit=str(limit))
        next_link = str(request.rel_url.with_query(query))
    return _json({"items": items, "next": next_link})


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _deal(row: Any) -> dict[str, Any]:
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
        "utm": {
            k: row[k]
            for k in ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
            if row[k]
        },
        "loss_reason": row["loss_reason"],
        "custom": row["custom"],
        "created_at": _iso(row["created_at"]),
        "stage_entered_at": _iso(row["stage_entered_at"]),
        "closed_at": _iso(row["closed_at"]),
    }


def _deals_query() -> Select[Any]:
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


routes = web.RouteTableDef()
OPENAPI_PATH = "/api/v1/openapi.json"
OPENAPI = Path(__file__).with_name("openapi.json")


@routes.get(OPENAPI_PATH)
async def openapi(request: web.Request) -> web.Response:
    """The API described for clients and generators; readable without a token."""
    return web.Response(body=OPENAPI.read_bytes(), content_type="application/json")


@routes.get("/api/v1/deals")
async def list_deals(request: web.Request) -> web.Response:
    stmt = _deals_query()
    scope = await _owner_scope(request)
    if scope is not False:
        stmt = stmt.where(Deal.owner_id == scope)
    q = request.query
    if q.get("status"):
        stmt = stmt.where(Deal.status == q["status"])
    if q.get("pipeline"):
        stmt = stmt.where(Pipeline.key == q["pipeline"])
    if q.get("stage"):
        stmt = stmt.where(Stage.key == q["stage"])
    if q.get("owner"):
        stmt = stmt.where(User.email == q["owner"].lower())
    if q.get("contact_id"):
        stmt = stmt.where(Deal.contact_id == _int(request, "contact_id"))
    return await _page(request, stmt, Deal.id, _deal)


@routes.get("/api/v1/deals/{id}")
async def get_deal(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    deal_id = _path_id(request)
    stmt = _deals_query().where(Deal.id == deal_id)
    scope = await _owner_scope(request)
    if scope is not False:
        stmt = stmt.where(Deal.owner_id == scope)
    async with hub.store.read() as conn:
        row = (await conn.execute(stmt)).mappings().first()
        if row is None:
            return _problem(404, f"no deal {deal_id}")
        deal = _deal(row)
        tasks = (
            await conn.execute(select(Task.__table__).where(Task.deal_id == deal_id))
        ).mappings()
        deal["tasks"] = [_task(t) for t in tasks]
        history = await conn.execute(
            select(StageChange.changed_at, Stage.key)
            .join(Stage, Stage.id == StageChange.to_stage_id)
            .where(StageChange.deal_id == deal_id)
            .order_by(StageChange.id)
        )
        deal["stage_history"] = [{"stage": k, "at": _iso(at)} for at, k in history]
        activities = await conn.execute(
            select(Activity.__table__).where(Activity.deal_id == deal_id).order_by(Activity.id)
        )
        deal["activities"] = [
            {
                "id": a["id"],
                "kind": a["kind"],
                "direction": a["direction"],
                "summary": a["summary"],
                "payload": a["payload"],
                "occurred_at": _iso(a["occurred_at"]),
            }
            for a in activities.mappings()
        ]
    return _json(deal)


def _task(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "title": row["title"],
        "kind": row["kind"],
        "deal_id": row["deal_id"],
        "contact_id": row["contact_id"],
        "owner_id": row["owner_id"],
        "due_at": _iso(row["due_at"]),
        "done_at": _iso(row["done_at"]),
        "overdue": row["done_at"] is None and row["due_at"] < utcnow(),
        "result": row["result"],
    }


@routes.get("/api/v1/tasks")
async def list_tasks(request: web.Request) -> web.Response:
    stmt = select(Task.__table__)
    scope = await _owner_scope(request)
    if scope is not False:
        stmt = stmt.where(Task.owner_id == scope)
    q = request.query
    if q.get("open") in ("1", "true", "yes"):
        stmt = stmt.where(Task.done_at.is_(None))
    if q.get("overdue") in ("1", "true", "yes"):
        stmt = stmt.where(and_(Task.done_at.is_(None), Task.due_at < utcnow()))
    if q.get("deal_id"):
        stmt = stmt.where(Task.deal_id == _int(request, "deal_id"))
    return await _page(request, stmt, Task.id, _task)


def _contact(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "owner_id": row["owner_id"],
        "company_id": row["company_id"],
        "city": row["city"],
        "segment": row["segment"],
        "external_id": row["external_id"],
        "custom": row["custom"],
        "created_at": _iso(row["created_at"]),
    }


@routes.get("/api/v1/contacts")
async def list_contacts(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    stmt = select(Contact.__table__)
    scope = await _owner_scope(request)
    if scope is not False:
        stmt = stmt.where(Contact.owner_id == scope)
    q = request.query.get("q", "").strip()
    if q:
        keys = []
        with contextlib.suppress(InvalidPoint):
            keys.append(normalize_phone(q, hub.settings.hub.default_region))
        with contextlib.suppress(InvalidPoint):
            keys.append(normalize_email(q))
        by_point = select(ContactPoint.contact_id).where(ContactPoint.normalized.in_(keys))
        stmt = stmt.where(or_(Contact.id.in_(by_point), Contact.name.ilike(f"%{q}%")))
    return await _page(request, stmt, Contact.id, _contact)


@routes.get("/api/v1/contacts/{id}")
async def get_contact(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    contact_id = _path_id(request)
    stmt = select(Contact.__table__).where(Contact.id == contact_id)
    scope = await _owner_scope(request)
    if scope is not False:
        stmt = stmt.where(Contact.owner_id == scope)
    async with hub.store.read() as conn:
        row = (await conn.execute(stmt)).mappings().first()
        if row is None:
            return _problem(404, f"no contact {contact_id}")
        contact = _contact(row)
        points = await conn.execute(
            select(ContactPoint.kind, ContactPoint.value, ContactPoint.normalized)
            .where(ContactPoint.contact_id == contact_id)
            .order_by(ContactPoint.id)
        )
        contact["phones"] = []
        contact["emails"] = []
        for kind, value, normalized in points:
            contact[f"{kind}s"].append({"value": value, "normalized": normalized})
        deals = await conn.execute(
            _deals_query().where(Deal.contact_id == contact_id).order_by(Deal.id)
        )
        contact["deals"] = [_deal(d) for d in deals.mappings()]
    return _json(contact)


def _company(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "tax_id": row["tax_id"],
        "external_id": row["external_id"],
        "city": row["city"],
        "owner_id": row["owner_id"],
        "created_at": _iso(row["created_at"]),
    }


@routes.get("/api/v1/companies")
async def list_companies(request: web.Request) -> web.Response:
    """Companies; ``?q=`` finds by tax id or by name in any spelling of its legal form."""
    from hub.domain.similarity import company_key

    stmt = select(Company.__table__)
    scope = await _owner_scope(request)
    if scope is not False:
        stmt = stmt.where(Company.owner_id == scope)
    q = request.query.get("q", "").strip()
    if q:
        digits = "".join(ch for ch in q if ch.isdigit())
        stmt = stmt.where(
            or_(
                Company.tax_id == digits,
                Company.name_key == company_key(q),
                Company.name.ilike(f"%{q}%"),
            )
        )
    return await _page(request, stmt, Company.id, _company)


@routes.get("/api/v1/companies/{id}")
async def get_company(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    company_id = _path_id(request)
    stmt = select(Company.__table__).where(Company.id == company_id)
    scope = await _owner_scope(request)
    if scope is not False:
        stmt = stmt.where(Company.owner_id == scope)
    async with hub.store.read() as conn:
        row = (await conn.execute(stmt)).mappings().first()
        if row is None:
            return _problem(404, f"no company {company_id}")
        company = _company(row)
        people = await conn.execute(
            select(Contact.__table__).where(Contact.company_id == company_id).order_by(Contact.id)
        )
        company["contacts"] = [_contact(c) for c in people.mappings()]
        deals = await conn.execute(
            _deals_query().where(Deal.company_id == company_id).order_by(Deal.id)
        )
        company["deals"] = [_deal(d) for d in deals.mappings()]
    return _json(company)


@routes.post("/api/v1/companies/{id}/merge")
async def merge_company(request: web.Request) -> web.Response:
    """Merge ``{"other_id": N}`` into this company; its contacts and deals move here."""
    from hub.merge import RULE, MergeError, merge_companies

    if (refused := _may_change(request)) is not None:
        return refused
    try:
        other = int((await request.json())["other_id"])
    except (ValueError, KeyError, TypeError):
        return _problem(400, 'send {"other_id": <company id>}')
    try:
        merge_id = await merge_companies(request.app[HUB_KEY].store, _path_id(request), other)
    except MergeError as error:
        return _problem(404 if "no company" in str(error) else 409, str(error))
    return _json(
        {"merge_id": merge_id, "kept": _path_id(request), "merged": other, "rule": RULE}, status=201
    )


@routes.get("/api/v1/attachments/{sha256}")
async def get_attachment(request: web.Request) -> web.StreamResponse:
    """A file that came with a lead; ``?name=`` sets the download's file name."""
    from sqlalchemy import String, cast

    hub = request.app[HUB_KEY]
    sha256 = request.match_info["sha256"]
    path = hub.attachments.path(sha256)
    if path is None:
        return _problem(404, "no such attachment")
    scope = await _owner_scope(request)
    if scope is not False:
        async with hub.store.read() as conn:
            allowed = (
                await conn.execute(
                    select(Activity.id)
                    .join(Deal, Deal.id == Activity.deal_id)
                    .where(Deal.owner_id == scope)
                    .where(cast(Activity.payload, String).contains(sha256))
                    .limit(1)
                )
            ).first()
        if allowed is None:
            return _problem(404, "no such attachment")
    name = request.query.get("name") or sha256
    safe = "".join(ch for ch in name if ch.isalnum() or ch in "._- ")[:100] or sha256
    return web.FileResponse(
        path,
        headers={
            "Content-Disposition": f'attachment; filename="{safe}"',
            "Content-Type": "application/octet-stream",
        },
    )


@routes.get("/api/v1/leads/{id}")
async def get_lead(request: web.Request) -> web.Response:
    """What became of a submission: its status and, once processed, the deal."""
    hub = request.app[HUB_KEY]
    lead_id = _path_id(request)
    principal: Principal = request[PRINCIPAL]
    if principal.role == "manager":
        return _problem(403, "leads are visible to head and admin tokens")
    inbox = InboxEvent.__table__
    async with hub.store.read() as conn:
        row = (
            (
                await conn.execute(
                    select(
                        inbox.c.id,
                        inbox.c.channel,
                        inbox.c.status,
                        inbox.c.received_at,
                        inbox.c.processed_at,
                        inbox.c.attempts,
                        inbox.c.last_error,
                        inbox.c.result,
                    ).where(inbox.c.id == lead_id)
                )
            )
            .mappings()
            .first()
        )
    if row is None:
        return _problem(404, f"no lead {lead_id}")
    return _json(
        {
            **dict(row),
            "received_at": _iso(row["received_at"]),
            "processed_at": _iso(row["processed_at"]),
        }
    )


def _may_change(request: web.Request) -> web.Response | None:
    principal: Principal = request[PRINCIPAL]
    if principal.role not in ("admin", "head"):
        return _problem(403, "merging needs a head or admin token")
    return None


@routes.get("/api/v1/duplicates")
async def list_duplicates(request: web.Request) -> web.Response:
    """Possible duplicates waiting for review (from intake and `hub dedupe scan`)."""
    from hub.store.models import DuplicateCandidate

    if (refused := _may_change(request)) is not None:
        return refused
    table = DuplicateCandidate.__table__
    stmt = select(table).where(table.c.status == request.query.get("status", "open"))

    def serialize(row: Any) -> dict[str, Any]:
        return {
            "id": row["id"],
            "contact_id": row["contact_id"],
            "other_id": row["other_id"],
            "score": row["score"],
            "reasons": row["reasons"]["reasons"],
            "origin": row["origin"],
            "status": row["status"],
            "created_at": _iso(row["created_at"]),
        }

    return await _page(request, stmt, table.c.id, serialize)


@routes.post("/api/v1/contacts/{id}/merge")
async def merge_contact(request: web.Request) -> web.Response:
    """Merge ``{"other_id": N}`` into this contact; answers the merge id for undoing it."""
    from hub.merge import RULE, MergeError, merge_contacts

    if (refused := _may_change(request)) is not None:
        return refused
    try:
        body = await request.json()
        other = int(body["other_id"])
    except (ValueError, KeyError, TypeError):
        return _problem(400, 'send {"other_id": <contact id>}')
    try:
        merge_id = await merge_contacts(request.app[HUB_KEY].store, _path_id(request), other)
    except MergeError as error:
        return _problem(409 if "no contact" not in str(error) else 404, str(error))
    return _json(
        {"merge_id": merge_id, "kept": _path_id(request), "merged": other, "rule": RULE}, status=201
    )


@routes.post("/api/v1/merges/{id}/undo")
async def undo_merge(request: web.Request) -> web.Response:
    from hub.merge import MergeError, unmerge

    if (refused := _may_change(request)) is not None:
        return refused
    try:
        result = await unmerge(request.app[HUB_KEY].store, _path_id(request))
    except MergeError as error:
        return _problem(404 if "no merge" in str(error) else 409, str(error))
    return _json(result)


def _path_id(request: web.Request) -> int:
    try:
        return int(request.match_info["id"])
    except ValueError:
        raise web.HTTPNotFound(
            text=orjson.dumps({"error": "not found"}).decode(), content_type="application/json"
        ) from None
