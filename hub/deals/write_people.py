"""The writer's part for contacts, their phones and emails, and companies."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import bindparam, select, update

from hub.deals import changes as ch
from hub.deals import events as ev
from hub.deals.actors import NotFound
from hub.deals.batch import (
    Batch,
    active_users,
    companies_t,
    contacts_t,
    insert_rows,
    points_t,
    ref,
)
from hub.store.ops import allocate_ids


async def create_companies(batch: Batch, run: list[ch.CreateCompany]) -> None:
    ids = await allocate_ids(batch.conn, companies_t, len(run))
    rows = []
    for change, company_id in zip(run, ids, strict=True):
        change.id = company_id
        rows.append(
            {
                "id": company_id,
                "name": change.name[:300],
                "name_key": change.name_key,
                "tax_id": change.tax_id,
                "external_id": change.external_id,
                "city": change.city,
                "owner_id": change.owner_id,
                "created_at": batch.now,
                "updated_at": batch.now,
            }
        )
        batch.events.append(
            ev.CompanyCreated(subject_id=company_id, name=change.name, tax_id=change.tax_id)
        )
    await insert_rows(batch.conn, companies_t, rows)


async def create_contacts(batch: Batch, run: list[ch.CreateContact]) -> None:
    ids = await allocate_ids(batch.conn, contacts_t, len(run))
    rows, point_rows = [], []
    now = batch.now
    for change, contact_id in zip(run, ids, strict=True):
        change.id = contact_id
        company_id = ref(change.company)
        rows.append(
            {
                "id": contact_id,
                "name": change.name,
                "owner_id": change.owner_id,
                "city": change.city,
                "segment": change.segment,
                "external_id": change.external_id,
                "custom": change.custom,
                "created_at": now,
                "updated_at": now,
                "company_id": company_id,
            }
        )
        for point in change.points:
            point_rows.append(
                {
                    "contact_id": contact_id,
                    "kind": point.kind,
                    "value": point.value,
                    "normalized": point.normalized,
                    "created_at": now,
                }
            )
        phones, emails = _points(change.points)
        batch.events.append(
            ev.ContactCreated(
                subject_id=contact_id,
                name=change.name,
                owner_id=change.owner_id,
                company_id=company_id,
                phones=phones,
                emails=emails,
            )
        )
    await insert_rows(batch.conn, contacts_t, rows)
    if point_rows:
        await insert_rows(batch.conn, points_t, point_rows)


_CONTACT_FIELDS = ("name", "city", "segment", "external_id", "owner_id")


async def update_contacts(batch: Batch, run: list[ch.UpdateContact]) -> None:
    conn = batch.conn
    ids = sorted({ref(c.contact) for c in run})  # type: ignore[type-var]
    rows = await conn.execute(
        select(
            contacts_t.c.id,
            contacts_t.c.owner_id,
            contacts_t.c.company_id,
            contacts_t.c.custom,
            *(contacts_t.c[f] for f in _CONTACT_FIELDS if f != "owner_id"),
        ).where(contacts_t.c.id.in_(ids))
    )
    current = {r.id: r._asdict() for r in rows}
    owners = await active_users(
        batch, (c.owner_id for c in run if not isinstance(c.owner_id, ch._Unset))
    )
    updates: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    point_rows: list[dict[str, Any]] = []
    for change in run:
        contact_id = ref(change.contact)
        assert contact_id is not None
        now_row = current.get(contact_id)
        if now_row is None:
            raise NotFound("contact", contact_id)
        changed: dict[str, Any] = {}
        for name in _CONTACT_FIELDS:
            value = getattr(change, name)
            if isinstance(value, ch._Unset) or value == now_row[name]:
                continue
            if change.fill_only and now_row[name] not in (None, ""):
                continue
            if name == "owner_id" and value is not None and value not in owners:
                batch.refuse(change, f"no active user {value} to own the contact", "owner")
                continue
            changed[name] = value
        if not isinstance(change.company, ch._Unset):
            company_id = ref(change.company)
            if company_id != now_row["company_id"] and not (
                change.fill_only and now_row["company_id"] is not None
            ):
                changed["company_id"] = company_id
        if not isinstance(change.custom, ch._Unset):
            custom = dict(now_row["custom"] or {})
            for key, value in change.custom.items():
                if change.fill_only and custom.get(key) not in (None, ""):
                    continue
                if value is None:
                    custom.pop(key, None)
                else:
                    custom[key] = value
            if custom != (now_row["custom"] or {}):
                changed["custom"] = custom
        now_row.update(changed)
        removed = []
        for kind, normalized in change.remove_points:
            result = await conn.execute(
                points_t.delete().where(
                    points_t.c.contact_id == contact_id,
                    points_t.c.kind == kind,
                    points_t.c.normalized == normalized,
                )
            )
            if result.rowcount:
                removed.append(normalized)
        for point in change.add_points:
            point_rows.append(
                {
                    "contact_id": contact_id,
                    "kind": point.kind,
                    "value": point.value,
                    "normalized": point.normalized,
                    "created_at": batch.now,
                }
            )
        if changed or removed:
            values = {**changed, "contact_id": contact_id}
            updates.setdefault(tuple(sorted(changed)), []).append(values)
        batch.events.append(
            ev.ContactUpdated(
                subject_id=contact_id,
                changed=changed,
                points_added=[p.normalized for p in change.add_points],
                points_removed=removed,
            )
        )
    for names, params in updates.items():
        await conn.execute(
            update(contacts_t)
            .where(contacts_t.c.id == bindparam("contact_id"))
            .values(updated_at=batch.now, **{n: bindparam(n) for n in names}),
            params,
        )
    if point_rows:
        await insert_rows(conn, points_t, point_rows)


def _points(points: Iterable[Any]) -> tuple[list[str], list[str]]:
    phones, emails = [], []
    for point in points:
        (phones if point.kind == "phone" else emails).append(point.normalized)
    return phones, emails
