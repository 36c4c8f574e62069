"""Running the audits: what the store breaks now, kept as violations until it clears.

Audits come from plugins (``hub_audits``; the built-in ones are in
``rules/audits.py``). Each finds, with SQL, what breaks its rule now; a finding
not yet open becomes a violation (with its event: ``task.overdue``,
``deal.stale``, ``rule.violated``), an open violation no longer found is
resolved (``rule.resolved``). Both go through the writer as the actor
``rule:audit``, so a finding is reported once and its age is known.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from hub.deals import Actor, StoreReader
from hub.deals.changes import Change, OpenViolation, ResolveViolation
from hub.store.models import User, Violation
from hub.store.types import utcnow

if TYPE_CHECKING:
    from hub.context import Hub

AUDITOR = Actor.rule("audit")


@dataclass(frozen=True, slots=True)
class Finding:
    """One record breaking one rule, and whose it is."""

    rule: str
    subject: str  # deal | task | contact | stage_change
    subject_id: int
    owner_id: int | None
    detail: str
    severity: str = "red"


@dataclass(slots=True)
class AuditReport:
    opened: int = 0
    resolved: int = 0
    open: int = 0
    seconds: float = 0.0
    # owner's email (or "—") → rule → open violations
    by_owner: dict[str, Counter[str]] = field(default_factory=dict)


async def run_audits(hub: Hub, now: datetime | None = None) -> AuditReport:
    now = now or utcnow()
    started = time.perf_counter()
    audits = [a for found in hub.plugins.pm.hook.hub_audits(hub=hub.view) for a in found or []]
    findings: dict[tuple[str, str, int], Finding] = {}
    async with hub.store.read() as conn:
        reader = StoreReader(conn)
        for audit in audits:
            for finding in await audit.find(reader, now, hub.view):
                findings.setdefault((finding.rule, finding.subject, finding.subject_id), finding)
    rules = {a.name for a in audits}
    report = AuditReport()
    violations = Violation.__table__
    async with hub.store.write() as conn:
        current = await conn.execute(
            select(
                violations.c.id, violations.c.rule, violations.c.subject, violations.c.subject_id
            ).where(violations.c.resolved_at.is_(None))
        )
        known: dict[tuple[str, str, int], int] = {
            (rule, subject, subject_id): violation_id
            for violation_id, rule, subject, subject_id in current
        }
        changes: list[Change] = [
            OpenViolation(
                rule=f.rule,
                subject=f.subject,
                subject_id=f.subject_id,
                owner_id=f.owner_id,
                severity=f.severity,
                detail=f.detail,
            )
            for key, f in findings.items()
            if key not in known
        ]
        report.opened = len(changes)
        for key, violation_id in known.items():
            if key not in findings and key[0] in rules:
                changes.append(
                    ResolveViolation(
                        violation_id=violation_id, rule=key[0], subject=key[1], subject_id=key[2]
                    )
                )
        report.resolved = len(changes) - report.opened
        if changes:
            await hub.deals.apply_in(conn, changes, AUDITOR, now)
    report.open = len(findings)
    report.by_owner = await _by_owner(hub)
    report.seconds = time.perf_counter() - started
    return report


async def _by_owner(hub: Hub) -> dict[str, Counter[str]]:
    violations = Violation.__table__
    async with hub.store.read() as conn:
        rows = await conn.execute(
            select(User.email, violations.c.rule, func.count())
            .select_from(violations)
            .outerjoin(User, User.id == violations.c.owner_id)
            .where(violations.c.resolved_at.is_(None))
            .group_by(User.email, violations.c.rule)
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
