"""Segments, campaigns and consent over HTTP: what a marketer does from the CLI, for a
head of sales or admin token (a manager's token sees none of it)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from hub.api.common import (
    HUB_KEY,
    PRINCIPAL,
    Problem,
    body,
    json_response,
    path_id,
    require_head,
)
from hub.campaigns.audience import Audience
from hub.campaigns.desk import CampaignError
from hub.deals.actors import NotFound, Refused

routes = web.RouteTableDef()


class NewCampaign(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    segment: str = Field(min_length=1, max_length=100)
    channel: Literal["sms", "email"]
    text: str = Field(min_length=1, max_length=20000)
    subject: str | None = Field(None, max_length=300)
    html: str | None = Field(None, max_length=200000)
    gateway: str | None = None
    service: bool = False
    rate: float | None = Field(None, gt=0)
    quiet_hours: str | None = None
    start_at: datetime | None = None


class NewConsent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: Literal["sms", "email"]
    granted: bool
    source: str = Field("api", min_length=1, max_length=100)


def _campaign(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in ("audience",)} | {
        "filters": row.get("audience")
    }


class SettleHeld(BaseModel):
    model_config = ConfigDict(extra="forbid")

    resend: bool  # true: send them again; false: take them as sent
    ids: list[int] | None = None  # the held messages meant; none: all of them


async def _call(coroutine: Any) -> Any:
    try:
        return await coroutine
    except CampaignError as error:
        raise Problem(422 if "нет кампании" not in str(error) else 404, str(error)) from None
    except Refused as refused:
        reasons = [r.reason for r in refused.refusals]
        raise Problem(409, "; ".join(reasons)) from None


@routes.get("/api/v1/segments/{name}/preview")
async def preview_segment(request: web.Request) -> web.Response:
    """How many contacts the segment has, how many agreed to each channel, and a sample."""
    require_head(request, "segments")
    hub = request.app[HUB_KEY]
    audience = await _call(_sync(hub.campaigns.audience, request.match_info["name"]))
    return json_response(await _call(hub.campaigns.preview(audience)))


@routes.post("/api/v1/segments/preview")
async def preview_filter(request: web.Request) -> web.Response:
    """The same for a filter sent in the body (the fields of ``[segments.NAME]``)."""
    require_head(request, "segments")
    hub = request.app[HUB_KEY]
    audience = await body(request, Audience)
    return json_response(await _call(hub.campaigns.preview(audience)))


@routes.get("/api/v1/campaigns")
async def list_campaigns(request: web.Request) -> web.Response:
    require_head(request, "campaigns")
    hub = request.app[HUB_KEY]
    return json_response({"items": [_campaign(c) for c in await hub.campaigns.list()]})


@routes.post("/api/v1/campaigns")
async def create_campaign(request: web.Request) -> web.Response:
    """A draft campaign; nothing is sent until it is started."""
    require_head(request, "campaigns")
    hub = request.app[HUB_KEY]
    new = await body(request, NewCampaign)
    campaign_id = await _call(
        hub.campaigns.create(**new.model_dump(), actor=request[PRINCIPAL].actor)
    )
    return json_response(_campaign(await hub.campaigns.get(campaign_id)), status=201)


@routes.get("/api/v1/campaigns/{id}")
async def campaign_status(request: web.Request) -> web.Response:
    """The campaign, its messages by state and the reasons recipients were skipped."""
    require_head(request, "campaigns")
    hub = request.app[HUB_KEY]
    report = await _call(hub.campaigns.report(path_id(request)))
    report["campaign"] = _campaign(report["campaign"])
    return json_response(report)


@routes.post("/api/v1/campaigns/{id}/dry-run")
async def dry_run(request: web.Request) -> web.Response:
    """Every message rendered, who would be skipped and why, SMS parts; nothing is sent."""
    require_head(request, "campaigns")
    hub = request.app[HUB_KEY]
    found = await _call(hub.campaigns.dry_run(path_id(request)))
    return json_response(
        {
            "segment_size": found.segment_size,
            "would_send": found.would_send,
            "skipped": found.skipped,
            "sms_parts": found.sms_parts,
            "encodings": found.encodings,
            "samples": found.samples,
        }
    )


@routes.post("/api/v1/campaigns/{id}/start")
async def start_campaign(request: web.Request) -> web.Response:
    """Write the outbox (who is skipped and why); the hub's sender sends it at its pace."""
    require_head(request, "campaigns")
    hub = request.app[HUB_KEY]
    started = await _call(hub.campaigns.start(path_id(request), request[PRINCIPAL].actor))
    if hub.campaign_sender is not None:
        hub.campaign_sender.wake.set()
    return json_response(started)


def _state_route(action: str, state: str) -> None:
    async def handler(request: web.Request) -> web.Response:
        require_head(request, "campaigns")
        hub = request.app[HUB_KEY]
        campaign_id = path_id(request)
        await _call(hub.campaigns.set_state(campaign_id, state, request[PRINCIPAL].actor))
        if hub.campaign_sender is not None:
            hub.campaign_sender.wake.set()
        return json_response(_campaign(await hub.campaigns.get(campaign_id)))

    handler.__name__ = f"{action}_campaign"
    routes.post(f"/api/v1/campaigns/{{id}}/{action}")(handler)


_state_route("pause", "paused")
_state_route("resume", "running")
_state_route("cancel", "cancelled")


@routes.post("/api/v1/contacts/{id}/consents")
async def set_consent(request: web.Request) -> web.Response:
    """Record that the contact agreed to advertising on a channel, or withdrew."""
    hub = request.app[HUB_KEY]
    contact_id = path_id(request)
    new = await body(request, NewConsent)
    try:
        await hub.campaigns.set_consent(
            contact_id,
            new.channel,
            new.granted,
            source=new.source,
            actor=request[PRINCIPAL].actor,
        )
    except NotFound:
        raise Problem(404, f"no contact {contact_id}") from None
    return json_response({"contact_id": contact_id, **new.model_dump()}, status=201)


async def _sync(function: Any, *args: Any) -> Any:
    return function(*args)


@routes.get("/api/v1/campaigns/{id}/held")
async def held_messages(request: web.Request) -> web.Response:
    """Messages a crash left unknown, waiting for a person's decision."""
    require_head(request, "campaigns")
    hub = request.app[HUB_KEY]
    return json_response({"held": await _call(hub.campaigns.held(path_id(request)))})


@routes.post("/api/v1/campaigns/{id}/held")
async def settle_held(request: web.Request) -> web.Response:
    """Send the held messages again, or take them as sent."""
    require_head(request, "campaigns")
    hub = request.app[HUB_KEY]
    decision = await body(request, SettleHeld)
    settled = await _call(
        hub.campaigns.settle_held(
            path_id(request),
            resend=decision.resend,
            ids=decision.ids,
            actor=request[PRINCIPAL].actor,
        )
    )
    if hub.campaign_sender is not None:
        hub.campaign_sender.wake.set()
    return json_response({"settled": settled})
