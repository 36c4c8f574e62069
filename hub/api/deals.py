"""``/api/v1/deals``: list, card, a manual deal, fields, stage moves, closing, notes and
logged activities."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub import lights
from hub.api import records
from hub.api.common import (
    HUB_KEY,
    Problem,
    body,
    int_param,
    iso,
    json_response,
    page,
    path_id,
    principal,
    scope,
    write,
)
from hub.api.people import NewContact, owner_id_of, point_changes, user_zone
from hub.deals import changes as ch
from hub.store.models import Activity, Deal, Pipeline, Stage, User
from hub.store.types import utcnow
from hub.worktime import Team

routes = web.RouteTableDef()


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class DealIn(_Body):
    """A deal entered by hand: for a known contact (``contact_id``) or a new one."""

    title: str = Field(min_length=1, max_length=300)
    contact_id: int | None = Field(default=None, ge=1, le=2**63 - 1)
    contact: NewContact | None = None
    pipeline: str | None = None
    stage: str | None = None
    amount: Decimal | None = Field(default=None, ge=0, max_digits=18, decimal_places=2)
    currency: str | None = Field(default=None, pattern="^[A-Za-z]{3}$")  # ISO 4217: RUB, usd
    source: str | None = Field(default=None, max_length=100)
    segment: str | None = Field(default=None, max_length=100)
    custom: dict[str, Any] = {}
    owner: str | None = Field(default=None, description="Owner's email; head and admin only.")


class DealPatch(_Body):
    title: str | None = Field(default=None, min_length=1, max_length=300)
    amount: Decimal | None = Field(default=None, ge=0, max_digits=18, decimal_places=2)
    currency: str | None = Field(default=None, pattern="^[A-Za-z]{3}$")  # ISO 4217: RUB, usd
    segment: str | None = Field(default=None, max_length=100)
    custom: dict[str, Any] | None = None
    owner: str | None = Field(default=None, description="Owner's email; head and admin only.")


class StageIn(_Body):
    stage: str = Field(min_length=1, max_length=64)
    override: str | None = Field(default=None, max_length=500)


class WonIn(_Body):
    amount: Decimal | None = Field(default=None, ge=0, max_digits=18, decimal_places=2)
    override: str | None = Field(default=None, max_length=500)


class LostIn(_Body):
    reason: str = Field(min_length=1, max_length=200)
    competitor: str | None = Field(default=None, max_length=200)
    override: str | None = Field(default=None, max_length=500)


class ReopenIn(_Body):
    stage: str | None = Field(default=None, max_length=64)


class NoteIn(_Body):
    text: str = Field(min_length=1, max_length=20000)


class ActivityIn(_Body):
    kind: Literal["call", "meeting", "email", "sms", "chat", "other"]
    direction: Literal["in", "out"] = "out"
    summary: str = Field(min_length=1, max_length=500)
    result: str | None = Field(default=None, max_length=2000)
    occurred_at: datetime | None = None

    @field_validator("currency", mode="before", check_fields=False)
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


def _card(deal_id: int | ch.CreateDeal, owner: int | None, status: int = 200) -> Any:
    async def respond(conn: AsyncConnection) -> tuple[int, Any]:
        found = ch.ref_id(deal_id)
        assert found is not None
        return status, await records.deal_card(conn, found, owner)

    return respond


@routes.get("/api/v1/deals")
async def list_deals(request: web.Request) -> web.Response:
    """Deals, newest first, each open one with its traffic light; filters: status, pipeline,
    stage, owner (email), contact_id, light (red, yellow, green)."""
    stmt = records.deals_query()
    owner = scope(request)
    if owner is not None:
        stmt = stmt.where(Deal.owner_id == owner)
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
        stmt = stmt.where(Deal.contact_id == int_param(request, "contact_id"))
    hub = request.app[HUB_KEY]
    if q.get("light"):
        if q["light"] not in ("red", "yellow", "green"):
            raise Problem(400, "light is red, yellow or green")
        assert hub.catalog is not None
        team = Team.of_catalog(hub.settings, hub.catalog)
        found = lights.conditions(hub.catalog, utcnow(), hub.settings.hub.timezone, team)
        stmt = stmt.where(lights.where_colour(q["light"], found))

    async def with_lights(conn: AsyncConnection, items: list[dict[str, Any]]) -> None:
        await records.add_lights(conn, items, hub)

    return await page(request, stmt, Deal.id, records.deal, with_lights)


@routes.get("/api/v1/deals/{id}")
async def get_deal(request: web.Request) -> web.Response:
    """A deal's card: its fields, stage history, tasks, notes, activities and events."""
    hub = request.app[HUB_KEY]
    deal_id = path_id(request)
    async with hub.store.read() as conn:
        card = await records.deal_card(conn, deal_id, scope(request))
        if card is not None:
            await records.add_lights(conn, [card], hub)
    if card is None:
        raise Problem(404, f"no deal {deal_id}")
    return json_response(card)


@routes.post("/api/v1/deals")
async def create_deal(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    given: DealIn = await body(request, DealIn)
    if (given.contact_id is None) == (given.contact is None):
        raise Problem(422, "give either contact_id or contact", reasons=[{"field": "contact"}])
    catalog = hub.catalog
    assert catalog is not None
    pipeline = catalog.pipelines.get(given.pipeline or catalog.default)
    if pipeline is None:
        raise Problem(422, f"no pipeline {given.pipeline!r}", reasons=[{"field": "pipeline"}])
    stage = pipeline.stages.get(given.stage) if given.stage else pipeline.entry_stage
    if stage is None or stage.kind != "open":
        raise Problem(
            422,
            f"pipeline {pipeline.name!r} has no open stage {given.stage!r}",
            reasons=[{"field": "stage"}],
        )
    owner = await owner_id_of(request, given.owner)
    contact: ch.ContactRef
    new: list[ch.Change] = []
    if given.contact is not None:
        points = await point_changes(request, given.contact.phones, given.contact.emails, None)
        create = ch.CreateContact(
            name=given.contact.name,
            owner_id=owner,
            city=given.contact.city,
            segment=given.contact.segment or given.segment,
            points=points,
        )
        new.append(create)
        contact = create
    else:
        assert given.contact_id is not None
        contact = given.contact_id
    deal = ch.CreateDeal(
        title=given.title,
        pipeline_id=pipeline.id,
        stage_id=stage.id,
        contact=contact,
        owner_id=owner,
        amount=given.amount,
        currency=given.currency.upper() if given.currency else None,
        source=given.source,
        segment=given.segment,
        custom=given.custom,
        channel="api",
    )
    new.append(deal)  # a known contact must be one the token may see: the writer checks
    return await write(request, new, _card(deal, scope(request), 201))


@routes.patch("/api/v1/deals/{id}")
async def patch_deal(request: web.Request) -> web.Response:
    deal_id = path_id(request)
    given: DealPatch = await body(request, DealPatch)
    sent = given.model_fields_set
    fields: dict[str, Any] = {}
    for name in ("title", "amount", "segment", "custom"):
        if name in sent:
            fields[name] = getattr(given, name)
    if "currency" in sent:
        fields["currency"] = given.currency.upper() if given.currency else None
    if fields.get("title", "") is None:
        raise Problem(422, "a deal needs a title", reasons=[{"field": "title"}])
    if fields.get("custom", {}) is None:
        fields["custom"] = {}
    changes: list[ch.Change] = [ch.SetDealFields(deal=deal_id, **fields)]
    if "owner" in sent:
        if principal(request).limited:
            raise Problem(
                422, "a manager cannot give a deal to someone else", reasons=[{"field": "owner"}]
            )
        changes.append(
            ch.AssignOwner(deal=deal_id, owner_id=await owner_id_of(request, given.owner))
        )
    return await write(request, changes, _card(deal_id, scope(request)))


@routes.post("/api/v1/deals/{id}/stage")
async def move_stage(request: web.Request) -> web.Response:
    deal_id = path_id(request)
    given: StageIn = await body(request, StageIn)
    change = ch.MoveStage(deal=deal_id, stage=given.stage, override=given.override)
    return await write(request, [change], _card(deal_id, scope(request)))


@routes.post("/api/v1/deals/{id}/won")
async def close_won(request: web.Request) -> web.Response:
    deal_id = path_id(request)
    given: WonIn = await body(request, WonIn)
    amount = given.amount if "amount" in given.model_fields_set else ch.UNSET
    change = ch.CloseWon(deal=deal_id, amount=amount, override=given.override)
    return await write(request, [change], _card(deal_id, scope(request)))


@routes.post("/api/v1/deals/{id}/lost")
async def close_lost(request: web.Request) -> web.Response:
    deal_id = path_id(request)
    given: LostIn = await body(request, LostIn)
    change = ch.CloseLost(
        deal=deal_id, reason=given.reason, competitor=given.competitor, override=given.override
    )
    return await write(request, [change], _card(deal_id, scope(request)))


@routes.post("/api/v1/deals/{id}/reopen")
async def reopen(request: web.Request) -> web.Response:
    deal_id = path_id(request)
    given: ReopenIn = await body(request, ReopenIn)
    change = ch.Reopen(deal=deal_id, stage=given.stage)
    return await write(request, [change], _card(deal_id, scope(request)))


@routes.post("/api/v1/deals/{id}/notes")
async def add_note(request: web.Request) -> web.Response:
    deal_id = path_id(request)
    given: NoteIn = await body(request, NoteIn)
    note = ch.AddNote(deal=deal_id, body=given.text)

    async def respond(conn: AsyncConnection) -> tuple[int, Any]:
        return 201, {"id": note.id, "deal_id": deal_id, "text": given.text}

    return await write(request, [note], respond)


@routes.post("/api/v1/deals/{id}/activities")
async def log_activity(request: web.Request) -> web.Response:
    """A call, meeting or email logged by hand, with its time (default: now) and result."""
    deal_id = path_id(request)
    given: ActivityIn = await body(request, ActivityIn)
    occurred = given.occurred_at
    if occurred is not None and occurred.tzinfo is None:
        occurred = occurred.replace(tzinfo=await user_zone(request))
    activity = ch.LogActivity(
        activity=given.kind,
        direction=given.direction,
        summary=given.summary,
        result=given.result,
        deal=deal_id,
        occurred_at=occurred,
    )

    async def respond(conn: AsyncConnection) -> tuple[int, Any]:
        row = (
            await conn.execute(
                select(Activity.contact_id, Activity.occurred_at).where(Activity.id == activity.id)
            )
        ).one()
        return 201, {
            "id": activity.id,
            "deal_id": deal_id,
            "contact_id": row.contact_id,
            "kind": given.kind,
            "direction": given.direction,
            "summary": given.summary,
            "result": given.result,
            "occurred_at": iso(row.occurred_at),
        }

    return await write(request, [activity], respond)
