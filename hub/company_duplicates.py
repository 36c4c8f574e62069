"""Companies the store holds twice: what `hub dedupe scan` proposes besides contacts.

Intake and import already find a company by its tax id or its name key (the name without
legal form, quotes and case, in Latin letters), so twins come from elsewhere: a legacy
base imported before the hub, records made through the API, a tax id learned after both
existed. Two companies are proposed as one when

- they have the same tax id (ИНН): one legal entity, whatever the names say; or
- they have the same name key and someone links them: a phone or an email held by a
  contact of each (the same office line, the same person entered twice). The same name
  alone is not enough: "Ромашка" in Самара and "Ромашка" in Перми are often two firms.

Companies whose tax ids differ are never proposed: two legal entities, as the merge
itself refuses (:mod:`hub.deals.merging`). Of each pair, the company with more contacts
and open deals (then the older) is proposed to keep; `hub companies merge KEEP OTHER`
merges, and `hub contacts unmerge ID` undoes it.

Only reads: the proposals are computed when asked for, and nothing is written.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.store.models import Company, Contact, ContactPoint, Deal

CHUNK = 500  # ids in one IN (...): well under every driver's limit on bound parameters


@dataclass(frozen=True, slots=True)
class CompanyTwins:
    """Two company records that look like one firm."""

    keep: int
    other: int
    keep_name: str
    other_name: str
    reason: str  # "tax_id" | "name_and_contact"
    evidence: str  # the tax id, or the point both companies' contacts hold

    def describe(self) -> str:
        if self.reason == "tax_id":
            return f"same tax id {self.evidence}"
        return f"same name, and a contact of each has {self.evidence}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "keep": {"id": self.keep, "name": self.keep_name},
            "other": {"id": self.other, "name": self.other_name},
            "reason": self.reason,
            "evidence": self.evidence,
            "why": self.describe(),
        }


@dataclass(slots=True)
class _Firm:
    id: int
    name: str
    name_key: str | None
    tax_id: str | None
    weight: int = 0  # contacts and open deals: which of two is the one people use


async def company_twins(conn: AsyncConnection) -> list[CompanyTwins]:
    """Every proposed pair, those by tax id first, then by name and a shared contact."""
    by_tax = await _groups(conn, Company.tax_id)
    by_name = await _groups(conn, Company.name_key)
    firms = {f.id: f for f in itertools.chain(*by_tax.values(), *by_name.values())}
    await _weigh(conn, firms)
    found: dict[tuple[int, int], CompanyTwins] = {}
    for tax_id, group in sorted(by_tax.items()):
        keep = _keeper(group)
        for other in group:
            if other.id != keep.id:
                found[_pair(keep, other)] = _twins(keep, other, "tax_id", tax_id)
    points = await _points(conn, [f.id for group in by_name.values() for f in group])
    for _, group in sorted(by_name.items()):
        for a, b in itertools.combinations(sorted(group, key=lambda f: f.id), 2):
            if _pair(a, b) in found or (a.tax_id and b.tax_id and a.tax_id != b.tax_id):
                continue
            shared = sorted(points.get(a.id, set()) & points.get(b.id, set()))
            if shared:
                keep, other = (a, b) if _keeper([a, b]) is a else (b, a)
                found[_pair(a, b)] = _twins(keep, other, "name_and_contact", shared[0])
    return list(found.values())


async def _groups(conn: AsyncConnection, column: Any) -> dict[str, list[_Firm]]:
    """Companies sharing a value of ``column`` with another company, by that value."""
    repeated = (
        select(column)
        .where(column.is_not(None), column != "")
        .group_by(column)
        .having(func.count() > 1)
    )
    rows = await conn.execute(
        select(Company.id, Company.name, Company.name_key, Company.tax_id, column.label("by"))
        .where(column.in_(repeated))
        .order_by(Company.id)
    )
    groups: dict[str, list[_Firm]] = defaultdict(list)
    for row in rows:
        groups[row.by].append(_Firm(row.id, row.name, row.name_key, row.tax_id))
    return groups


async def _weigh(conn: AsyncConnection, firms: dict[int, _Firm]) -> None:
    for ids in _chunks(firms):
        for model, where in ((Contact, ()), (Deal, (Deal.status == "open",))):
            counted = await conn.execute(
                select(model.company_id, func.count())
                .where(model.company_id.in_(ids), *where)
                .group_by(model.company_id)
            )
            for company_id, count in counted:
                firms[company_id].weight += count


async def _points(conn: AsyncConnection, ids: Iterable[int]) -> dict[int, set[str]]:
    """The phones and emails of each company's contacts."""
    held: dict[int, set[str]] = defaultdict(set)
    for chunk in _chunks(ids):
        rows = await conn.execute(
            select(Contact.company_id, ContactPoint.normalized)
            .join(ContactPoint, ContactPoint.contact_id == Contact.id)
            .where(Contact.company_id.in_(chunk), ContactPoint.kind.in_(("phone", "email")))
        )
        for company_id, normalized in rows:
            held[company_id].add(normalized)
    return held


def _keeper(group: list[_Firm]) -> _Firm:
    return min(group, key=lambda f: (-f.weight, f.id))


def _pair(a: _Firm, b: _Firm) -> tuple[int, int]:
    return (min(a.id, b.id), max(a.id, b.id))


def _twins(keep: _Firm, other: _Firm, reason: str, evidence: str) -> CompanyTwins:
    return CompanyTwins(keep.id, other.id, keep.name, other.name, reason, evidence)


def _chunks(ids: Iterable[int]) -> Iterable[list[int]]:
    ordered = sorted(set(ids))
    for start in range(0, len(ordered), CHUNK):
        yield ordered[start : start + CHUNK]
