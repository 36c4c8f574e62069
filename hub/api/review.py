"""Leads as received, their attachments, possible duplicates and merges: what a head of
sales reviews."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import String, cast, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.api.common import (
    HUB_KEY,
    Problem,
    iso,
    json_response,
    page,
    path_id,
    require_head,
    scope,
    write,
)
from hub.deals import changes as ch
from hub.store.models import Activity, Deal, DuplicateCandidate, InboxEvent

routes = web.RouteTableDef()


@routes.get("/api/v1/attachments/{sha256}")
async def get_attachment(request: web.Request) -> web.StreamResponse:
    """A file that came with a lead; ``?name=`` sets the download's file name."""
    hub = request.app[HUB_KEY]
    sha256 = request.match_info["sha256"]
    path = hub.attachments.path(sha256)
    if path is None:
        raise Problem(404, "no such attachment")
    owner = scope(request)
    if owner is not None:
        async with hub.store.read() as conn:
            allowed = (
                await conn.execute(
                    select(Activity.id)
                    .join(Deal, Deal.id == Activity.deal_id)
                    .where(Deal.owner_id == owner)
                    .where(cast(Activity.payload, String).contains(sha256))
                    .limit(1)
                )
            ).first()
        if allowed is None:
            raise Problem(404, "no such attachment")
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
    lead_id = path_id(request)
    require_head(request, "reading leads")
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
        raise Problem(404, f"no lead {lead_id}")
    return json_response(
        {
            **dict(row),
            "received_at": iso(row["received_at"]),
            "processed_at": iso(row["processed_at"]),
        }
    )


def _pair(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "contact_id": row["contact_id"],
        "other_id": row["other_id"],
        "score": row["score"],
        "reasons": row["reasons"]["reasons"],
        "origin": row["origin"],
        "status": row["status"],
        "created_at": iso(row["created_at"]),
    }


@routes.get("/api/v1/duplicates")
async def list_duplicates(request: web.Request) -> web.Response:
    """Possible duplicates waiting for review (from intake and `hub dedupe scan`)."""
    require_head(request, "reviewing duplicates")
    table = DuplicateCandidate.__table__
    stmt = select(table).where(table.c.status == request.query.get("status", "open"))
    return await page(request, stmt, table.c.id, _pair)


@routes.post("/api/v1/duplicates/{id}/dismiss")
async def dismiss_duplicate(request: web.Request) -> web.Response:
    """The pair is two different clients: it leaves the review list."""
    require_head(request, "reviewing duplicates")
    pair_id = path_id(request)
    table = DuplicateCandidate.__table__

    async def respond(conn: AsyncConnection) -> tuple[int, Any]:
        row = (await conn.execute(select(table).where(table.c.id == pair_id))).mappings().one()
        return 200, _pair(row)

    return await write(request, [ch.DismissDuplicate(pair_id=pair_id)], respond, refused_status=409)


@routes.post("/api/v1/merges/{id}/undo")
async def undo_merge(request: web.Request) -> web.Response:
    require_head(request, "undoing a merge")
    change = ch.Unmerge(merge_id=path_id(request))

    async def respond(conn: AsyncConnection) -> tuple[int, Any]:
        return 200, change.restored

    return await write(request, [change], respond, refused_status=409)
