"""Merging two contacts (or two companies) into one, and undoing it: the writer's part.

Called only by :class:`hub.deals.writer.DealWriter` (``MergeContacts``,
``MergeCompanies``, ``Unmerge``), inside its transaction; the writer emits the
events.

Everything attached to the other contact (deals, tasks, notes, activities,
phones and emails, external ids, review flags) moves to the kept one; a phone or email the
kept contact already has is dropped from the other, not doubled. Fields follow
one stated rule: **the kept contact's filled fields win; the other's fill its
blanks** (custom fields likewise, key by key). The merge row records both
contacts as they were and the id of every row moved or dropped, so
``unmerge`` puts the store back as it was; changes made to the moved records
after the merge (a stage move, a finished task) are kept.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Table, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.domain.blocking import birth_key
from hub.store.models import (
    Activity,
    Company,
    Contact,
    ContactExternalId,
    ContactPoint,
    Deal,
    DuplicateCandidate,
    Merge,
    Note,
    Task,
)
from hub.store.types import UTCDateTime

RULE = "kept contact's filled fields win; the other's fill its blanks"
FIELDS = ("name", "name_key", "company_id", "owner_id", "city", "segment", "external_id")
MOVED = {
    "deals": Deal.__table__,
    "tasks": Task.__table__,
    "notes": Note.__table__,
    "activities": Activity.__table__,
    # Ids are unique per system, so none is ever dropped as doubled. Merges recorded before
    # ids were kept have no such entry.
    "external_ids": ContactExternalId.__table__,
}

companies = Company.__table__
COMPANY_FIELDS = ("tax_id", "external_id", "city", "owner_id")
COMPANY_MOVED = {"contacts": Contact.__table__, "deals": Deal.__table__}
contacts = Contact.__table__
points = ContactPoint.__table__
duplicates = DuplicateCandidate.__table__
merges = Merge.__table__
external_ids = ContactExternalId.__table__


class MergeError(ValueError):
    """A merge or unmerge that cannot be done, with the reason."""


def _dump(table: Table, row: Any) -> dict[str, Any]:
    out = {}
    for column in table.columns:
        value = row[column.name]
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, Decimal):
            value = str(value)
        out[column.name] = value
    return out


def _load(table: Table, data: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for column in table.columns:
        value = data.get(column.name)
        if value is not None and isinstance(column.type, UTCDateTime):
            value = datetime.fromisoformat(value)
        out[column.name] = value
    return out


async def _free_id(conn: AsyncConnection, table: Table, data: dict[str, Any]) -> dict[str, Any]:
    """A deleted row as it was, less its id when a newer row took that id meanwhile."""
    row = _load(table, data)
    if await _row(conn, table, row["id"]) is not None:
        del row["id"]
    return row


async def _row(conn: AsyncConnection, table: Table, row_id: int) -> dict[str, Any] | None:
    found = (await conn.execute(select(table).where(table.c.id == row_id))).mappings().first()
    return dict(found) if found else None


async def merge_contacts(
    conn: AsyncConnection, keep_id: int, other_id: int, now: datetime
) -> tuple[int, dict[str, int]]:
    """Merge contact ``other_id`` into ``keep_id``; returns the merge id (for ``unmerge``)
    and how many rows of each kind moved."""
    if keep_id == other_id:
        raise MergeError("a contact cannot be merged into itself")
    keep = await _row(conn, contacts, keep_id)
    other = await _row(conn, contacts, other_id)
    if keep is None or other is None:
        missing = keep_id if keep is None else other_id
        raise MergeError(f"no contact {missing}")
    moved: dict[str, Any] = {"keep": _dump(contacts, keep), "other": _dump(contacts, other)}
    for name, table in MOVED.items():
        ids = (
            (
                await conn.execute(
                    update(table)
                    .where(table.c.contact_id == other_id)
                    .values(contact_id=keep_id)
                    .returning(table.c.id)
                )
            )
            .scalars()
            .all()
        )
        moved[name] = sorted(ids)

    have = {
        (r.kind, r.normalized)
        for r in await conn.execute(
            select(points.c.kind, points.c.normalized).where(points.c.contact_id == keep_id)
        )
    }
    theirs = (
        (await conn.execute(select(points).where(points.c.contact_id == other_id))).mappings().all()
    )
    doubled = [dict(p) for p in theirs if (p["kind"], p["normalized"]) in have]
    moved["points_dropped"] = [_dump(points, p) for p in doubled]
    if doubled:
        await conn.execute(delete(points).where(points.c.id.in_([p["id"] for p in doubled])))
    moved["points"] = sorted(p["id"] for p in theirs if (p["kind"], p["normalized"]) not in have)
    if moved["points"]:
        await conn.execute(
            update(points).where(points.c.id.in_(moved["points"])).values(contact_id=keep_id)
        )

    flags = (
        (
            await conn.execute(
                select(duplicates).where(
                    (duplicates.c.contact_id == other_id) | (duplicates.c.other_id == other_id)
                )
            )
        )
        .mappings()
        .all()
    )
    moved["duplicates"] = [_dump(duplicates, f) for f in flags]
    if flags:
        await conn.execute(delete(duplicates).where(duplicates.c.id.in_([f["id"] for f in flags])))

    fill = {f: other[f] for f in FIELDS if keep[f] in (None, "") and other[f] not in (None, "")}
    custom = {**(other["custom"] or {}), **(keep["custom"] or {})}
    await conn.execute(
        update(contacts)
        .where(contacts.c.id == keep_id)
        .values(**fill, custom=custom, birth_date=birth_key(custom), updated_at=now)
    )
    moved["filled"] = sorted(fill)
    await conn.execute(delete(contacts).where(contacts.c.id == other_id))
    merge_id = (
        await conn.execute(
            insert(merges)
            .values(keep_id=keep_id, other_id=other_id, moved=moved, rule=RULE, created_at=now)
            .returning(merges.c.id)
        )
    ).scalar_one()
    return merge_id, {k: len(v) for k, v in moved.items() if isinstance(v, list)}


async def merge_companies(
    conn: AsyncConnection, keep_id: int, other_id: int, now: datetime
) -> tuple[int, dict[str, int]]:
    """Merge company ``other_id`` into ``keep_id``: its contacts and deals move; the kept
    company's filled fields win, the other's fill its blanks."""
    if keep_id == other_id:
        raise MergeError("a company cannot be merged into itself")
    keep = await _row(conn, companies, keep_id)
    other = await _row(conn, companies, other_id)
    if keep is None or other is None:
        raise MergeError(f"no company {keep_id if keep is None else other_id}")
    if keep["tax_id"] and other["tax_id"] and keep["tax_id"] != other["tax_id"]:
        raise MergeError(
            f"companies {keep_id} and {other_id} have different tax ids "
            f"({keep['tax_id']}, {other['tax_id']}): they are different legal entities"
        )
    moved: dict[str, Any] = {"keep": _dump(companies, keep), "other": _dump(companies, other)}
    for name, table in COMPANY_MOVED.items():
        moved[name] = sorted(
            (
                await conn.execute(
                    update(table)
                    .where(table.c.company_id == other_id)
                    .values(company_id=keep_id)
                    .returning(table.c.id)
                )
            )
            .scalars()
            .all()
        )
    fill = {
        f: other[f] for f in COMPANY_FIELDS if keep[f] in (None, "") and other[f] not in (None, "")
    }
    if fill:
        await conn.execute(
            update(companies).where(companies.c.id == keep_id).values(**fill, updated_at=now)
        )
    moved["filled"] = sorted(fill)
    await conn.execute(delete(companies).where(companies.c.id == other_id))
    merge_id = (
        await conn.execute(
            insert(merges)
            .values(
                kind="company",
                keep_id=keep_id,
                other_id=other_id,
                moved=moved,
                rule=RULE,
                created_at=now,
            )
            .returning(merges.c.id)
        )
    ).scalar_one()
    return merge_id, {"contacts": len(moved["contacts"]), "deals": len(moved["deals"])}


async def _unmerge_company(conn: AsyncConnection, row: dict[str, Any]) -> None:
    moved, keep_id, other_id = row["moved"], row["keep_id"], row["other_id"]
    if await _row(conn, companies, other_id) is not None:
        raise MergeError(f"company {other_id} exists again; cannot restore it")
    await conn.execute(insert(companies).values(**_load(companies, moved["other"])))
    before = _load(companies, moved["keep"])
    await conn.execute(
        update(companies)
        .where(companies.c.id == keep_id)
        .values(**{f: before[f] for f in (*COMPANY_FIELDS, "updated_at")})
    )
    holders = await _holders(conn, row)
    for name, table in COMPANY_MOVED.items():
        if moved[name]:
            await conn.execute(
                update(table)
                .where(table.c.id.in_(moved[name]), table.c.company_id.in_(holders))
                .values(company_id=other_id)
            )


async def _holders(conn: AsyncConnection, row: dict[str, Any]) -> list[int]:
    """Where the rows a merge moved may still be: its kept record, and what that record was
    merged into later, while those merges stand. A moved row found anywhere else was moved
    since (an earlier merge undone after this one took it back) and stays where it is."""
    later = await conn.execute(
        select(merges.c.other_id, merges.c.keep_id).where(
            merges.c.kind == row["kind"], merges.c.id > row["id"], merges.c.undone_at.is_(None)
        )
    )
    into: dict[int, int] = dict(later.all())
    held = [row["keep_id"]]
    while held[-1] in into and into[held[-1]] not in held:
        held.append(into[held[-1]])
    return held


async def unmerge(conn: AsyncConnection, merge_id: int, now: datetime) -> dict[str, Any]:
    """Undo merge ``merge_id``: the other contact (or company) comes back with what it had."""
    row = await _row(conn, merges, merge_id)
    if row is None:
        raise MergeError(f"no merge {merge_id}")
    if row["undone_at"] is not None:
        raise MergeError(f"merge {merge_id} was already undone")
    if row["kind"] == "company":
        await _unmerge_company(conn, row)
        await conn.execute(update(merges).where(merges.c.id == merge_id).values(undone_at=now))
        return {"kind": "company", "keep_id": row["keep_id"], "other_id": row["other_id"]}
    moved = row["moved"]
    keep_id, other_id = row["keep_id"], row["other_id"]
    if await _row(conn, contacts, other_id) is not None:
        raise MergeError(f"contact {other_id} exists again; cannot restore it")
    other = _load(contacts, moved["other"])
    if other["company_id"] is not None and await _row(conn, companies, other["company_id"]) is None:
        raise MergeError(
            f"contact {other_id}'s company {other['company_id']} is gone since (merged?); "
            "undo that first"
        )
    other["birth_date"] = birth_key(other["custom"])  # a merge older than the column has none
    await conn.execute(insert(contacts).values(**other))
    keep_before = _load(contacts, moved["keep"])
    await conn.execute(
        update(contacts)
        .where(contacts.c.id == keep_id)
        .values(
            **{f: keep_before[f] for f in (*FIELDS, "custom", "updated_at")},
            birth_date=birth_key(keep_before["custom"]),
        )
    )
    holders = await _holders(conn, row)
    for name, table in (*MOVED.items(), ("points", points)):
        if moved.get(name):
            await conn.execute(
                update(table)
                .where(table.c.id.in_(moved[name]), table.c.contact_id.in_(holders))
                .values(contact_id=other_id)
            )
    if keep_before["external_id"] is None:
        # Ids given to the kept contact while the merge stood stay with it; its shown id
        # (blank before the merge) becomes the first of them.
        first = (
            await conn.execute(
                select(external_ids.c.system, external_ids.c.external_id)
                .where(external_ids.c.contact_id == keep_id)
                .order_by(external_ids.c.id)
                .limit(1)
            )
        ).first()
        if first is not None:
            shown = f"{first[0]}:{first[1]}" if first[0] else first[1]
            await conn.execute(
                update(contacts).where(contacts.c.id == keep_id).values(external_id=shown)
            )
    for point in moved["points_dropped"]:
        await conn.execute(insert(points).values(**await _free_id(conn, points, point)))
    for flag in moved["duplicates"]:
        # A pair comes back only while both its contacts exist and nobody flagged it again.
        pair = (flag["contact_id"], flag["other_id"])
        present = await conn.execute(select(contacts.c.id).where(contacts.c.id.in_(pair)))
        again = await conn.execute(
            select(duplicates.c.id).where(
                duplicates.c.contact_id == pair[0], duplicates.c.other_id == pair[1]
            )
        )
        if len(set(present.scalars())) == 2 and again.first() is None:
            await conn.execute(insert(duplicates).values(**await _free_id(conn, duplicates, flag)))
    await conn.execute(update(merges).where(merges.c.id == merge_id).values(undone_at=now))
    return {"kind": "contact", "keep_id": keep_id, "other_id": other_id}
