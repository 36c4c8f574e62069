"""The writer's part for contacts, their phones and emails, their external ids, and companies.

A contact keeps every external id it is given (``contact_external_ids``, one row per
system and id); an id another contact holds refuses the change that gives it, so one
source record never points at two contacts. ``contacts.external_id`` is the contact's
first id, filled when it has none.
"""

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
from hub.domain.blocking import birth_key
from hub.domain.similarity import person_key
from hub.store.models import ContactExternalId
from hub.store.ops import allocate_ids

external_ids_t = ContactExternalId.__table__


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
    given = {c: _given(batch, c, [c.external_id, *c.external_ids]) for c in run}
    kept = _Kept(await _holders(batch, given.values()))
    for change, contact_id in zip(run, ids, strict=True):
        change.id = contact_id
        company_id = ref(change.company)
        added = kept.add(batch, change, contact_id, given[change])
        rows.append(
            {
                "id": contact_id,
                "name": change.name,
                "name_key": person_key(change.name),  # the name block intake matches by
                "owner_id": change.owner_id,
                "city": change.city,
                "segment": change.segment,
                "external_id": added[0] if added else None,
                "custom": change.custom,
                "birth_date": birth_key(change.custom),  # the block of birth date and address
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
    await kept.write(batch)


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
    given = {
        c: _given(
            batch,
            c,
            [None if isinstance(c.external_id, ch._Unset) else c.external_id, *c.add_external_ids],
        )
        for c in run
    }
    kept = _Kept(await _holders(batch, given.values()))
    for change in run:
        contact_id = ref(change.contact)
        assert contact_id is not None
        now_row = current.get(contact_id)
        if now_row is None:
            raise NotFound("contact", contact_id)
        ids_added = kept.add(batch, change, contact_id, given[change])
        changed: dict[str, Any] = {}
        for name in _CONTACT_FIELDS:
            value = getattr(change, name)
            if name == "external_id" and isinstance(value, str):
                value = ch.external_id(*ch.split_external_id(value))
            if isinstance(value, ch._Unset) or value == now_row[name]:
                continue
            if change.fill_only and now_row[name] not in (None, ""):
                continue
            if name == "owner_id" and value is not None and value not in owners:
                batch.refuse(change, f"no active user {value} to own the contact", "owner")
                continue
            changed[name] = value
        if (
            ids_added
            and now_row["external_id"] is None
            and isinstance(change.external_id, ch._Unset)  # not cleared on purpose
        ):
            changed["external_id"] = ids_added[0]
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
            if "name" in changed:
                values["name_key"] = person_key(changed["name"])  # the name block intake matches by
            if "custom" in changed:
                values["birth_date"] = birth_key(changed["custom"])
            updates.setdefault(tuple(sorted(set(values) - {"contact_id"})), []).append(values)
        if changed or removed or change.add_points or ids_added:
            # An update that finds everything as it would leave it is no event: importing a
            # file twice leaves the store (and what plugins are told) as the first time.
            batch.events.append(
                ev.ContactUpdated(
                    subject_id=contact_id,
                    # The ids added are named as a field: the contact's external ids.
                    changed={**changed, "external_ids": ids_added} if ids_added else changed,
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
    await kept.write(batch)


# -- external ids --------------------------------------------------------------------------

ExternalKey = tuple[str, str]  # (system, id)


def _given(batch: Batch, change: ch.Change, values: Iterable[str | None]) -> list[ExternalKey]:
    """The external ids a change gives, split and without repeats; a malformed one is
    refused."""
    out: list[ExternalKey] = []
    for value in values:
        if value is None or not value.strip():
            continue
        key = ch.split_external_id(value)
        if len(ch.external_id(*key)) > 100:
            batch.refuse(change, f"external id {value[:40]!r}... is longer than 100", "external_id")
            continue
        if key not in out:
            out.append(key)
    return out


async def _holders(batch: Batch, given: Iterable[list[ExternalKey]]) -> dict[ExternalKey, int]:
    wanted = {key for keys in given for key in keys}
    if not wanted:
        return {}
    rows = await batch.conn.execute(
        select(
            external_ids_t.c.system, external_ids_t.c.external_id, external_ids_t.c.contact_id
        ).where(external_ids_t.c.external_id.in_(sorted({v for _, v in wanted})))
    )
    return {(s, v): c for s, v, c in rows if (s, v) in wanted}


class _Kept:
    """External ids a run of changes adds, checked against who holds each already."""

    def __init__(self, held: dict[ExternalKey, int]) -> None:
        self.held = held
        self.rows: list[dict[str, Any]] = []

    def add(
        self, batch: Batch, change: ch.Change, contact_id: int, keys: list[ExternalKey]
    ) -> list[str]:
        """Ids new to the contact, as strings; an id another contact holds refuses
        ``change``."""
        added = []
        for system, value in keys:
            holder = self.held.get((system, value))
            if holder == contact_id:
                continue
            name = ch.external_id(system, value)
            if holder is not None:
                batch.refuse(
                    change, f"external id {name} belongs to contact {holder}", "external_id"
                )
                continue
            self.held[(system, value)] = contact_id
            self.rows.append(
                {
                    "contact_id": contact_id,
                    "system": system,
                    "external_id": value,
                    "created_at": batch.now,
                }
            )
            added.append(name)
        return added

    async def write(self, batch: Batch) -> None:
        if self.rows and not batch.refusals:
            await insert_rows(batch.conn, external_ids_t, self.rows)


def _points(points: Iterable[Any]) -> tuple[list[str], list[str]]:
    phones, emails = [], []
    for point in points:
        (phones if point.kind == "phone" else emails).append(point.normalized)
    return phones, emails
