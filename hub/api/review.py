"""Leads as received, their attachments, possible duplicates and merges: what a head of
sales reviews."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from sqlalchemy import String, cast, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.api import records
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
from hub.domain.similarity import company_key, place_key
from hub.store.models import Activity, Company, Deal, DuplicateCandidate, InboxEvent

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


# What a head of sales compares in two records, in the order a card shows it.
COMPARED = (
    ("name", "имя"),
    ("company", "компания"),
    ("city", "город"),
    ("phones", "телефоны"),
    ("emails", "email"),
    ("birth_date", "дата рождения"),
    ("address", "адрес"),
    ("postcode", "индекс"),
    ("personal_tax_id", "ИНН"),
    ("snils", "СНИЛС"),
    ("external_ids", "во внешних системах"),
    ("owner_id", "ответственный"),
)
# How a field's two values are told the same: Самара = Samara, «Ромашка» ООО = Romashka LLC.
KEYS = {"company": company_key, "city": place_key, "address": place_key}


def _folded(text: str) -> str:
    return " ".join(text.casefold().replace("ё", "е").split())


# A reason as the matcher words it: "phone equal +9.1", "first name differs −4.0".
_WEIGHT = re.compile(r"^(?P<reason>.*\S)\s+(?P<bits>[+−-]\d+(?:\.\d+)?)$")


def weights(reasons: list[str]) -> list[dict[str, Any]]:
    """The partial weights of a pair's reasons, in bits; a reason with no weight (a note
    such as "kept apart: ...") has ``bits`` None."""
    out = []
    for reason in reasons:
        found = _WEIGHT.match(reason)
        if found is None:
            out.append({"reason": reason, "bits": None})
        else:
            bits = float(found["bits"].replace("−", "-"))
            out.append({"reason": found["reason"], "bits": bits})
    return out


def _values(card: dict[str, Any], company: str | None) -> dict[str, Any]:
    custom = card.get("custom") or {}
    return {
        "name": card["name"],
        "company": company,
        "city": card["city"],
        "phones": sorted(p["normalized"] for p in card["phones"]),
        "emails": sorted(p["normalized"] for p in card["emails"]),
        **{key: custom.get(key) for key in
           ("birth_date", "address", "postcode", "personal_tax_id", "snils")},
        "external_ids": sorted(i["ref"] for i in card["external_ids"]),
        "owner_id": card["owner_id"],
    }  # fmt: skip


def side_by_side(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    """Each field of both records with what it says: ``same``, ``differs``, ``shared`` (lists
    with something in common), or ``one_side`` (given on one record only)."""
    rows = []
    for key, label in COMPARED:
        left, right = a[key], b[key]
        if not left and not right:
            continue
        if not left or not right:
            verdict = "one_side"
        elif isinstance(left, list):
            verdict = "same" if left == right else "shared" if set(left) & set(right) else "differs"
        else:
            key_of = KEYS.get(key, _folded)
            verdict = "same" if key_of(str(left)) == key_of(str(right)) else "differs"
        rows.append({"field": key, "label": label, "a": left, "b": right, "verdict": verdict})
    return rows


class PairGone(LookupError):
    """A contact of the pair is gone (merged away since the pair was proposed)."""


async def pair_review(conn: AsyncConnection, pair_id: int) -> dict[str, Any] | None:
    """Pair ``pair_id`` as a reviewer sees it: the pair, the partial weights of its score,
    both contacts' cards, and their fields side by side; None when there is no such pair."""
    table = DuplicateCandidate.__table__
    row = (await conn.execute(select(table).where(table.c.id == pair_id))).mappings().first()
    if row is None:
        return None
    cards = []
    for contact_id in (row["contact_id"], row["other_id"]):
        card = await records.contact_card(conn, contact_id, None)
        if card is None:
            raise PairGone(f"contact {contact_id} of pair {pair_id} is gone")
        company = None
        if card["company_id"] is not None:
            company = (
                await conn.execute(select(Company.name).where(Company.id == card["company_id"]))
            ).scalar_one_or_none()
        cards.append((card, company))
    pair = _pair(row)
    (a, a_company), (b, b_company) = cards
    return {
        **pair,
        "weights": weights(pair["reasons"]),
        "contacts": [a, b],
        "side_by_side": side_by_side(_values(a, a_company), _values(b, b_company)),
    }


@routes.get("/api/v1/duplicates/{id}")
async def get_duplicate(request: web.Request) -> web.Response:
    """One pair for review: both records side by side, field by field, and the partial
    weights that made the score."""
    require_head(request, "reviewing duplicates")
    hub = request.app[HUB_KEY]
    pair_id = path_id(request)
    async with hub.store.read() as conn:
        try:
            found = await pair_review(conn, pair_id)
        except PairGone as gone:
            raise Problem(404, str(gone)) from None
    if found is None:
        raise Problem(404, f"no duplicate pair {pair_id}")
    return json_response(found)


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
