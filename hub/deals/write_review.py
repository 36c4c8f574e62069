"""The writer's part for leads' records, review pairs and merges."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update

from hub.deals import changes as ch
from hub.deals import events as ev
from hub.deals import merging
from hub.deals.actors import NotFound
from hub.deals.batch import (
    Batch,
    duplicates_t,
    insert_rows,
    ref,
)


async def record_leads(batch: Batch, run: list[ch.RecordLead]) -> None:
    for change in run:
        batch.events.append(
            ev.LeadReceived(
                subject_id=change.inbox_id,
                channel=change.channel,
                decision=change.decision,
                contact_id=ref(change.contact),
                deal_id=ref(change.deal),
                task_id=ref(change.task),
                owner_id=change.owner_id,
                assigned_by=change.assigned_by,
                match=change.match,
                possible_duplicate_of=change.possible_duplicate_of,
            )
        )


async def flag_duplicates(batch: Batch, run: list[ch.FlagDuplicate]) -> None:
    pairs = [(ref(c.contact), ref(c.other), c) for c in run]
    known = set()
    ids = sorted({a for a, _, _ in pairs})  # type: ignore[type-var]
    if any(not isinstance(c.contact, ch.CreateContact) for c in run):
        rows = await batch.conn.execute(
            select(duplicates_t.c.contact_id, duplicates_t.c.other_id).where(
                duplicates_t.c.contact_id.in_(ids)
            )
        )
        known = {tuple(r) for r in rows}
    rows_out = []
    for contact_id, other_id, change in pairs:
        if (contact_id, other_id) in known or contact_id == other_id:
            continue
        known.add((contact_id, other_id))
        rows_out.append(
            {
                "contact_id": contact_id,
                "other_id": other_id,
                "score": change.score,
                "reasons": {"reasons": list(change.reasons)},
                "origin": change.origin,
                "status": "open",
                "inbox_id": change.inbox_id,
                "created_at": batch.now,
            }
        )
        batch.events.append(
            ev.PossibleDuplicate(
                subject_id=contact_id,
                other_id=other_id,  # type: ignore[arg-type]
                score=change.score,
                origin=change.origin,
            )
        )
    if rows_out:
        await insert_rows(batch.conn, duplicates_t, rows_out)


async def dismiss_duplicates(batch: Batch, run: list[ch.DismissDuplicate]) -> None:
    for change in run:
        row = (
            await batch.conn.execute(
                select(duplicates_t).where(duplicates_t.c.id == change.pair_id)
            )
        ).first()
        if row is None:
            raise NotFound("review pair", change.pair_id)
        if row.status != "open":
            batch.refuse(change, f"pair {change.pair_id} was already {row.status}")
            continue
        await batch.conn.execute(
            update(duplicates_t)
            .where(duplicates_t.c.id == change.pair_id)
            .values(status="dismissed")
        )
        batch.events.append(
            ev.DuplicateDismissed(
                subject_id=change.pair_id, contact_id=row.contact_id, other_id=row.other_id
            )
        )


async def merge_contacts(batch: Batch, run: list[ch.MergeContacts]) -> None:
    await _merge(batch, run, merging.merge_contacts, ev.ContactsMerged, "contact")


async def merge_companies(batch: Batch, run: list[ch.MergeCompanies]) -> None:
    await _merge(batch, run, merging.merge_companies, ev.CompaniesMerged, "company")


async def _merge(batch: Batch, run: list[Any], merge: Any, event: Any, what: str) -> None:
    for change in run:
        try:
            change.id, moved = await merge(batch.conn, change.keep, change.other, batch.now)
        except merging.MergeError as error:
            _merge_refused(batch, change, error, what)
            continue
        batch.events.append(
            event(subject_id=change.keep, merge_id=change.id, other_id=change.other, moved=moved)
        )


def _merge_refused(batch: Batch, change: ch.Change, error: Exception, what: str) -> None:
    text = str(error)
    if text.startswith("no "):
        missing = int(text.rsplit(" ", 1)[1])
        raise NotFound(what, missing) from error
    batch.refuse(change, text)


async def unmerge(batch: Batch, run: list[ch.Unmerge]) -> None:
    for change in run:
        try:
            change.restored = await merging.unmerge(batch.conn, change.merge_id, batch.now)
        except merging.MergeError as error:
            _merge_refused(batch, change, error, "merge")
            continue
        restored = change.restored
        cls = ev.CompaniesUnmerged if restored["kind"] == "company" else ev.ContactsUnmerged
        batch.events.append(
            cls(
                subject_id=restored["other_id"],
                merge_id=change.merge_id,
                keep_id=restored["keep_id"],
            )
        )
