"""The writer's part for the rules' findings: violations opened and resolved."""

from __future__ import annotations

from sqlalchemy import bindparam, insert, update

from hub.deals import changes as ch
from hub.deals import events as ev
from hub.deals.batch import Batch
from hub.store.models import Violation
from hub.store.ops import allocate_ids

violations_t = Violation.__table__


async def open_violations(batch: Batch, run: list[ch.OpenViolation]) -> None:
    ids = await allocate_ids(batch.conn, violations_t, len(run))
    rows = []
    for change, violation_id in zip(run, ids, strict=True):
        change.id = violation_id
        rows.append(
            {
                "id": violation_id,
                "rule": change.rule,
                "subject": change.subject,
                "subject_id": change.subject_id,
                "owner_id": change.owner_id,
                "severity": change.severity,
                "detail": change.detail[:500],
                "first_seen": batch.now,
                "resolved_at": None,
            }
        )
        batch.events.append(_event(change, violation_id))
    await batch.conn.execute(insert(violations_t), rows)


def _event(change: ch.OpenViolation, violation_id: int) -> ev.Event:
    # The two findings plugins most often act on have events of their own kind.
    if change.rule == "overdue_task":
        return ev.TaskOverdue(
            subject_id=change.subject_id,
            violation_id=violation_id,
            owner_id=change.owner_id,
            detail=change.detail,
        )
    if change.rule == "stage_expired":
        return ev.DealStale(
            subject_id=change.subject_id,
            violation_id=violation_id,
            owner_id=change.owner_id,
            detail=change.detail,
        )
    return ev.RuleViolated(
        subject_id=violation_id,
        rule=change.rule,
        on=change.subject,
        on_id=change.subject_id,
        owner_id=change.owner_id,
        severity=change.severity,
        detail=change.detail,
    )


async def resolve_violations(batch: Batch, run: list[ch.ResolveViolation]) -> None:
    await batch.conn.execute(
        update(violations_t)
        .where(violations_t.c.id == bindparam("violation_id"), violations_t.c.resolved_at.is_(None))
        .values(resolved_at=batch.now),
        [{"violation_id": c.violation_id} for c in run],
    )
    for change in run:
        batch.events.append(
            ev.RuleResolved(
                subject_id=change.violation_id,
                rule=change.rule,
                on=change.subject,
                on_id=change.subject_id,
            )
        )
