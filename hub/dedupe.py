"""Finding duplicate contacts already in the store (after an import, say).

Blocking: contacts are compared when they share a normalized phone or email
(one grouped query over the contact-point index), or when their names share a
block key, a word's first five letters plus another word's initial, in Latin
letters (``Соколов Дмитрий`` and ``Dmitriy Sokolov`` meet under ``sokol|d``).
A phone, email or key held by more than ``MAX_GROUP`` contacts (a call
centre's number, a common name) yields no pairs. Each pair is scored by the
same matchers as incoming leads; pairs at or above ``matching.review`` go to
the review list: a scan never merges by itself.
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select

from hub.config import Settings
from hub.deals import Actor, DealWriter
from hub.deals.changes import FlagDuplicate
from hub.domain.matching import BUILTIN, Candidate, Incoming, Matcher, score
from hub.domain.normalize import Point
from hub.domain.similarity import name_tokens
from hub.store import Store
from hub.store.models import Contact, ContactPoint, DuplicateCandidate

MAX_GROUP = 50
CHUNK = 5000

points = ContactPoint.__table__
contacts = Contact.__table__
duplicates = DuplicateCandidate.__table__


def name_keys(name: str) -> set[str]:
    tokens = [t.rstrip(".") for t in name_tokens(name)]
    return {f"{a[:5]}|{b[0]}" for a, b in itertools.permutations(tokens, 2) if len(a) >= 3 and b}


@dataclass(frozen=True, slots=True)
class Pair:
    a: int
    b: int
    score: float
    reasons: tuple[str, ...]
    external_a: str | None = None
    external_b: str | None = None


@dataclass(slots=True)
class _Known:
    name: str | None
    company: str | None
    city: str | None
    external_id: str | None
    points: set[tuple[str, str]]


async def scan(
    store: Store, settings: Settings, matchers: Sequence[Matcher] = ()
) -> tuple[list[Pair], int]:
    """Score every pair of contacts sharing a point; returns the pairs worth review and
    the number of pairs compared."""
    matching = settings.matching
    generic = {m.lower() for m in matching.generic_mailboxes}
    async with store.read() as conn:
        shared = (
            select(points.c.kind, points.c.normalized)
            .group_by(points.c.kind, points.c.normalized)
            .having(func.count(func.distinct(points.c.contact_id)) >= 2)
            .subquery()
        )
        rows = await conn.execute(
            select(points.c.kind, points.c.normalized, points.c.contact_id)
            .join(
                shared,
                (shared.c.kind == points.c.kind) & (shared.c.normalized == points.c.normalized),
            )
            .order_by(points.c.kind, points.c.normalized, points.c.contact_id)
        )
        groups: dict[tuple[str, str], list[int]] = {}
        for kind, normalized, contact_id in rows:
            holders = groups.setdefault((kind, normalized), [])
            if contact_id not in holders:
                holders.append(contact_id)
        pairs = {
            pair
            for holders in groups.values()
            if len(holders) <= MAX_GROUP
            for pair in itertools.combinations(sorted(holders), 2)
        }
        blocks: dict[str, list[int]] = {}
        for cid, name in await conn.execute(
            select(contacts.c.id, contacts.c.name).where(contacts.c.name.is_not(None))
        ):
            for key in name_keys(name):
                blocks.setdefault(key, []).append(cid)
        pairs |= {
            pair
            for members in blocks.values()
            if 1 < len(members) <= MAX_GROUP
            for pair in itertools.combinations(sorted(set(members)), 2)
        }
        ids = sorted({i for pair in pairs for i in pair})
        known: dict[int, _Known] = {}
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            for cid, name, city, external_id, custom in await conn.execute(
                select(
                    contacts.c.id,
                    contacts.c.name,
                    contacts.c.city,
                    contacts.c.external_id,
                    contacts.c.custom,
                ).where(contacts.c.id.in_(chunk))
            ):
                known[cid] = _Known(name, (custom or {}).get("company"), city, external_id, set())
            for cid, kind, normalized in await conn.execute(
                select(points.c.contact_id, points.c.kind, points.c.normalized).where(
                    points.c.contact_id.in_(chunk)
                )
            ):
                known[cid].points.add((kind, normalized))

    def is_shared(key: tuple[str, str]) -> bool:
        # Two holders are the pair itself; a third makes the point common.
        if key[0] == "email" and key[1].split("@", 1)[0] in generic:
            return True
        return len(groups.get(key, ())) > 2

    all_matchers = [*BUILTIN, *matchers]
    found: list[Pair] = []
    for a, b in sorted(pairs):
        one, two = known[a], known[b]
        lead = Incoming(
            one.name,
            one.company,
            one.city,
            [Point(kind, norm, norm) for kind, norm in sorted(one.points)],
            {k for k in one.points if is_shared(k)},
        )
        result = score(
            lead, Candidate(b, two.name, two.company, two.city, None, two.points), all_matchers
        )
        if result.value >= matching.review:
            found.append(Pair(a, b, result.value, result.reasons, one.external_id, two.external_id))
    return found, len(pairs)


async def save_for_review(writer: DealWriter, pairs: Sequence[Pair], actor: Actor) -> int:
    """Add pairs to the review list (a pair already there is left as it is); returns how
    many were new."""
    if not pairs:
        return 0
    changes = [
        FlagDuplicate(contact=p.b, other=p.a, score=p.score, reasons=list(p.reasons), origin="scan")
        for p in pairs
    ]
    applied = await writer.apply(changes, actor)
    return len(applied.events)


def write_csv(pairs: Sequence[Pair], path: Path) -> None:
    """One row per pair: ``id_a,id_b,score,reasons``; external ids where the import gave them."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id_a", "id_b", "score", "reasons"])
        for p in pairs:
            writer.writerow(
                [p.external_a or p.a, p.external_b or p.b, f"{p.score:.3f}", " + ".join(p.reasons)]
            )
