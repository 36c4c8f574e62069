"""Running the audits: what the store breaks now, kept as violations until it clears.

Audits come from plugins (``hub_audits``; the built-in ones are in
``rules/audits.py``). Each finds, with SQL, what breaks its rule now; a finding
not yet open becomes a violation (with its event: ``task.overdue``,
``deal.stale``, ``rule.violated``), an open violation no longer found is
resolved (``rule.resolved``). Both go through the writer as the actor
``rule:audit``, so a finding is reported once and its age is known.

An audit may hand back its findings as a list, or as the SELECT that finds them
(:class:`Found`): then the store itself compares them with the open violations,
and only what changed comes back to Python, so a run that changes nothing costs
the audits' queries and little more.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Row, Select, and_, exists, func, null, select, text, union_all
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.deals import Actor, StoreReader
from hub.deals.changes import Change, OpenViolation, ResolveViolation
from hub.store.models import User, Violation
from hub.store.types import utcnow

if TYPE_CHECKING:
    from hub.context import Hub

AUDITOR = Actor.rule("audit")
CHUNK = 5000  # ids per statement when re-checking before the write
WRITE_LOCK = 0x4855425F41554454  # one audit writes at a time (PostgreSQL advisory lock)
violations = Violation.__table__


@dataclass(frozen=True, slots=True)
class Finding:
    """One record breaking one rule, and whose it is."""

    rule: str
    subject: str  # deal | task | contact | stage_change
    subject_id: int
    owner_id: int | None
    detail: str
    severity: str = "red"


@dataclass(frozen=True, slots=True)
class Found:
    """What an audit finds, as one SELECT: the subject's id and its owner's id first, then
    whatever ``detail`` needs to word a new violation (called for new ones only)."""

    subject: str
    statement: Select[Any]
    detail: Callable[[Row[Any]], str]
    # True: the query runs once and its rows are kept for both comparisons (a costly
    # query); False: it runs twice, the second time for ids alone (a cheap query with
    # wide rows, whose ids an index covers).
    run_once: bool = True


@dataclass(slots=True)
class AuditReport:
    opened: int = 0
    resolved: int = 0
    open: int = 0
    seconds: float = 0.0
    # owner's email (or "—") → rule → open violations
    by_owner: dict[str, Counter[str]] = field(default_factory=dict)


@dataclass(slots=True)
class _Diff:
    opening: list[OpenViolation] = field(default_factory=list)
    resolving: list[ResolveViolation] = field(default_factory=list)


async def run_audits(hub: Hub, now: datetime | None = None) -> AuditReport:
    now = now or utcnow()
    started = time.perf_counter()
    audits = [a for found in hub.plugins.pm.hook.hub_audits(hub=hub.view) for a in found or []]
    diff = _Diff()
    listed: dict[tuple[str, str, int], Finding] = {}
    listing: set[str] = set()  # the rules whose findings came as a list
    async with hub.store.read() as conn:  # one snapshot for every audit
        seen = await _mark(conn)
        reader = StoreReader(conn)
        for audit in audits:
            found = await audit.find(reader, now, hub.view)
            if isinstance(found, Found):
                await _compare(conn, audit.name, audit.severity, found, diff)
                continue
            listing.add(audit.name)
            for f in found:
                listing.add(f.rule)
                listed.setdefault((f.rule, f.subject, f.subject_id), f)
        if listing:
            await _compare_listed(conn, listing, listed, diff)
    report = AuditReport()
    async with hub.store.write() as conn:
        if conn.dialect.name == "postgresql":  # SQLite's writes queue on one lock already
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": WRITE_LOCK})
        if await _mark(conn) != seen:  # another run wrote since the snapshot: not twice
            diff.opening = await _still_new(conn, diff.opening)
            diff.resolving = await _still_open(conn, diff.resolving)
        changes: list[Change] = [*diff.opening]
        report.opened = len(changes)
        changes += diff.resolving
        report.resolved = len(changes) - report.opened
        if changes:
            await hub.deals.apply_in(conn, changes, AUDITOR, now)
    rules = listing | {a.name for a in audits}
    report.by_owner = await _by_owner(hub)
    report.open = sum(
        count
        for found in report.by_owner.values()
        for rule, count in found.items()
        if rule in rules
    )
    report.seconds = time.perf_counter() - started
    return report


async def _compare(
    conn: AsyncConnection, rule: str, severity: str, found: Found, diff: _Diff
) -> None:
    """New findings and cleared violations of one audit, compared in the store in one
    statement: the findings without an open violation, and the open violations whose
    subject the audit no longer finds."""
    if found.run_once:
        rows = found.statement.cte(f"found_{rule}").prefix_with("MATERIALIZED")
        statement, ids = select(*rows.c), select(next(iter(rows.c)))
    else:
        statement = found.statement
        ids = statement.with_only_columns(statement.selected_columns[0])
    subject_id, *rest = statement.selected_columns
    is_open = and_(
        violations.c.resolved_at.is_(None),
        violations.c.rule == rule,
        violations.c.subject == found.subject,
    )
    # The audit's own columns first, so ``detail`` reads the row as it wrote it.
    new = statement.add_columns(null().label("open_violation")).where(
        ~exists().where(is_open, violations.c.subject_id == subject_id)
    )
    gone = select(
        violations.c.subject_id, *(null().label(c.name) for c in rest), violations.c.id
    ).where(is_open, violations.c.subject_id.not_in(ids))
    seen: set[int] = set()
    for row in await conn.execute(union_all(new, gone)):
        found_id, violation_id = row[0], row[-1]
        if violation_id is not None:
            diff.resolving.append(
                ResolveViolation(
                    violation_id=violation_id, rule=rule, subject=found.subject, subject_id=found_id
                )
            )
        elif found_id not in seen:
            seen.add(found_id)
            diff.opening.append(
                OpenViolation(
                    rule=rule,
                    subject=found.subject,
                    subject_id=found_id,
                    owner_id=row[1],
                    severity=severity,
                    detail=found.detail(row),
                )
            )


async def _compare_listed(
    conn: AsyncConnection, rules: set[str], listed: dict[tuple[str, str, int], Finding], diff: _Diff
) -> None:
    """The same for audits that hand back lists: their open violations are compared here."""
    current = await conn.execute(
        select(
            violations.c.id, violations.c.rule, violations.c.subject, violations.c.subject_id
        ).where(violations.c.resolved_at.is_(None), violations.c.rule.in_(sorted(rules)))
    )
    known = {(rule, subject, subject_id): i for i, rule, subject, subject_id in current}
    diff.opening += [
        OpenViolation(
            rule=f.rule,
            subject=f.subject,
            subject_id=f.subject_id,
            owner_id=f.owner_id,
            severity=f.severity,
            detail=f.detail,
        )
        for key, f in listed.items()
        if key not in known
    ]
    diff.resolving += [
        ResolveViolation(violation_id=i, rule=key[0], subject=key[1], subject_id=key[2])
        for key, i in known.items()
        if key not in listed
    ]


async def _mark(conn: AsyncConnection) -> tuple[Any, ...]:
    """What changes whenever a violation is opened or resolved (only audits do either)."""
    row = await conn.execute(
        select(
            func.max(violations.c.id),
            select(func.count())
            .select_from(violations)
            .where(violations.c.resolved_at.is_(None))
            .scalar_subquery(),
        )
    )
    return tuple(row.one())


async def _still_new(conn: AsyncConnection, opening: list[OpenViolation]) -> list[OpenViolation]:
    taken: set[tuple[str, str, int]] = set()
    groups: dict[tuple[str, str], list[int]] = {}
    for change in opening:
        groups.setdefault((change.rule, change.subject), []).append(change.subject_id)
    for (rule, subject), ids in groups.items():
        for chunk in _chunks(ids):
            rows = await conn.execute(
                select(violations.c.subject_id).where(
                    violations.c.resolved_at.is_(None),
                    violations.c.rule == rule,
                    violations.c.subject == subject,
                    violations.c.subject_id.in_(chunk),
                )
            )
            taken.update((rule, subject, subject_id) for (subject_id,) in rows)
    return [c for c in opening if (c.rule, c.subject, c.subject_id) not in taken]


async def _still_open(
    conn: AsyncConnection, resolving: list[ResolveViolation]
) -> list[ResolveViolation]:
    open_ids: set[int] = set()
    for chunk in _chunks([c.violation_id for c in resolving]):
        rows = await conn.execute(
            select(violations.c.id).where(
                violations.c.id.in_(chunk), violations.c.resolved_at.is_(None)
            )
        )
        open_ids.update(i for (i,) in rows)
    return [c for c in resolving if c.violation_id in open_ids]


def _chunks(ids: Sequence[int]) -> Iterable[Sequence[int]]:
    return (ids[i : i + CHUNK] for i in range(0, len(ids), CHUNK))


async def _by_owner(hub: Hub) -> dict[str, Counter[str]]:
    # Counted per owner id first (an index-only scan where the store has one), named after.
    counts = (
        select(violations.c.owner_id, violations.c.rule, func.count().label("open"))
        .where(violations.c.resolved_at.is_(None))
        .group_by(violations.c.owner_id, violations.c.rule)
        .subquery()
    )
    async with hub.store.read() as conn:
        rows = await conn.execute(
            select(User.email, counts.c.rule, counts.c.open).select_from(
                counts.outerjoin(User, User.id == counts.c.owner_id)
            )
        )
        out: dict[str, Counter[str]] = {}
        for email, rule, count in rows:
            out.setdefault(email or "—", Counter())[rule] += count
    return out


def describe(report: AuditReport) -> list[str]:
    """The report as a head of sales reads it: by manager, worst first."""
    lines = [
        f"{report.open} open violations ({report.opened} new, {report.resolved} resolved) "
        f"in {report.seconds:.2f} s"
    ]
    ranked: list[tuple[str, Any]] = sorted(
        report.by_owner.items(), key=lambda item: -sum(item[1].values())
    )
    for owner, rules in ranked:
        parts = ", ".join(f"{rule} {count}" for rule, count in rules.most_common())
        lines.append(f"  {owner}: {sum(rules.values())} — {parts}")
    return lines
