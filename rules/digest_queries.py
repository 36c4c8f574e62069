"""What the daily digests and the escalations say, found in SQL for everyone at once.

Each function is a handful of grouped queries over the whole team (never a query per
manager): a window function keeps the first ``limit`` rows of each owner, and a count
over the same window says how many there are in all. The results are plain dicts and
lists, JSON as the notification outbox stores them (amounts as text, times in ISO).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, func, literal, or_, select
from sqlalchemy.sql import ColumnElement

from hub import lights
from hub.deals import StoreReader
from hub.store.models import Deal, Stage, StageChange, Task, User, Violation
from hub.store.ops import Catalog
from hub.worktime import Team

# A deal without a currency is in the money filter's default one.
DEFAULT_CURRENCY = "RUB"
# The overdue tasks have a section of their own in a manager's digest; their violations
# would only repeat it.
NOT_IN_MANAGER_VIOLATIONS = ("overdue_task",)
# How each audit's violation is named in a digest (a company's own rules show as named).
RULE_NAMES = {
    "no_task": "нет открытой задачи",
    "overdue_task": "просроченные задачи",
    "stage_expired": "засиделась на этапе",
    "cadence_broken": "нет контакта с клиентом",
    "deal_no_segment": "сделка без сегмента",
    "contact_no_segment": "клиент без сегмента",
    "no_points": "клиент без телефона и email",
    "skipped_stage": "перескочила этапы",
}


@dataclass(frozen=True, slots=True)
class Window:
    """The moment a digest describes and the local day it is for."""

    now: datetime
    zone: ZoneInfo

    @property
    def day_end(self) -> datetime:
        local = self.now.astimezone(self.zone)
        start = local.replace(hour=0, minute=0, second=0, microsecond=0)
        return (start + timedelta(days=1)).astimezone(self.now.tzinfo)


def age(delta: timedelta) -> str:
    """How long, as a manager reads it: "40 мин.", "5 ч.", "3 дн. 4 ч."."""
    minutes = max(0, int(delta.total_seconds() // 60))
    if minutes < 60:
        return f"{minutes} мин."
    hours = minutes // 60
    if hours < 24:
        return f"{hours} ч."
    days, hours = divmod(hours, 24)
    return f"{days} дн. {hours} ч." if hours else f"{days} дн."


def rule_name(rule: str) -> str:
    return RULE_NAMES.get(rule, rule)


def _money(amount: Any, currency: str | None) -> dict[str, Any]:
    amount = str(amount) if amount is not None else None
    return {"amount": amount, "currency": currency or DEFAULT_CURRENCY}


def _amounts(rows: Iterable[tuple[str | None, Any]]) -> list[dict[str, Any]]:
    """Sums per currency, largest first: one line per currency, never a sum across them."""
    totals: dict[str, Decimal] = {}
    for currency, amount in rows:
        if amount is None:
            continue
        key = currency or DEFAULT_CURRENCY
        totals[key] = totals.get(key, Decimal(0)) + Decimal(str(amount))
    ranked = sorted(totals.items(), key=lambda item: -item[1])
    return [{"amount": str(total), "currency": currency} for currency, total in ranked]


def _ranked(owner: Any, order: Any) -> tuple[ColumnElement[int], ColumnElement[int]]:
    """The row's place among its owner's rows, and how many the owner has."""
    return (
        func.row_number().over(partition_by=owner, order_by=order).label("place"),
        func.count().over(partition_by=owner).label("total"),
    )


def _deal_of_violation() -> ColumnElement[Any]:
    """The deal a violation is about: the deal itself, a task's deal, a stage change's."""
    task_deal = select(Task.deal_id).where(Task.id == Violation.subject_id).scalar_subquery()
    change_deal = (
        select(StageChange.deal_id).where(StageChange.id == Violation.subject_id).scalar_subquery()
    )
    return case(
        (Violation.subject == "deal", Violation.subject_id),
        (Violation.subject == "task", task_deal),
        (Violation.subject == "stage_change", change_deal),
        else_=None,
    )


class Section(dict[str, Any]):
    """A digest's list for one person: its first ``rows`` and how many there are in all."""

    @classmethod
    def empty(cls) -> Section:
        return cls(rows=[], total=0)

    def add(self, item: dict[str, Any], total: int) -> None:
        self["rows"].append(item)
        self["total"] = total


# -- a manager's day ----------------------------------------------------------------------


async def manager_days(
    store: StoreReader,
    catalog: Catalog,
    owners: Collection[int],
    window: Window,
    limit: int,
    link: Any,
    team: Team | None = None,
) -> dict[int, dict[str, Section]]:
    """For each of ``owners``: red deals with their reasons, overdue tasks, open violations
    (oldest first) and tasks due later today in ``window.zone``; four queries in all."""
    out = {
        owner: {name: Section.empty() for name in ("red_deals", "overdue", "violations", "today")}
        for owner in owners
    }
    if not owners:
        return out
    now = window.now
    stage_names = {s.id: s.name for s in catalog.stages_by_id.values()}

    # Red deals, with each reason of the light (hub/lights.py), longest in their stage first.
    found = lights.conditions(catalog, now, window.zone.key, team)
    red = or_(*(found[name] for name in lights.RED))
    # The window runs over ids alone; the details and reasons only for the rows kept.
    place, total = _ranked(Deal.owner_id, (Deal.stage_entered_at, Deal.id))
    ranked = (
        select(Deal.id, place, total)
        .where(Deal.status == "open", Deal.owner_id.in_(owners), red)
        .subquery()
    )
    rows = await store.execute(
        select(
            Deal.id,
            Deal.owner_id,
            Deal.title,
            Deal.amount,
            Deal.currency,
            Deal.stage_id,
            *(found[name].label(name) for name in lights.RED),
            ranked.c.total,
        )
        .join(ranked, ranked.c.id == Deal.id)
        .where(ranked.c.place <= limit)
        .order_by(Deal.owner_id, ranked.c.place)
    )
    for row in rows:
        stage = catalog.stages_by_id.get(row.stage_id)
        values = {
            "stage": stage.name if stage else "?",
            "within": lights.duration(stage.contact_within if stage else None),
        }
        reasons = [lights.TEXTS[name].format(**values) for name in lights.RED if row._mapping[name]]
        out[row.owner_id]["red_deals"].add(
            {
                "id": row.id,
                "title": row.title,
                **_money(row.amount, row.currency),
                "stage": stage_names.get(row.stage_id, "?"),
                "reasons": reasons,
                "link": link(row.id),
            },
            row.total,
        )

    # Open tasks overdue (the longest overdue first) and due later today.
    for section, condition, order in (
        ("overdue", Task.due_at < now, (Task.due_at, Task.id)),
        ("today", and_(Task.due_at >= now, Task.due_at < window.day_end), (Task.due_at, Task.id)),
    ):
        place, total = _ranked(Task.owner_id, order)
        ranked = (
            select(Task.id, place, total)
            .where(Task.done_at.is_(None), Task.owner_id.in_(owners), condition)
            .subquery()
        )
        rows = await store.execute(
            select(
                Task.id,
                Task.owner_id,
                Task.title,
                Task.due_at,
                Task.deal_id,
                Deal.title.label("deal_title"),
                ranked.c.total,
            )
            .join(ranked, ranked.c.id == Task.id)
            .outerjoin(Deal, Deal.id == Task.deal_id)
            .where(ranked.c.place <= limit)
            .order_by(Task.owner_id, ranked.c.place)
        )
        for row in rows:
            out[row.owner_id][section].add(
                {
                    "id": row.id,
                    "title": row.title,
                    "due_at": row.due_at,
                    "overdue_for": age(now - row.due_at) if section == "overdue" else None,
                    "deal": {"id": row.deal_id, "title": row.deal_title} if row.deal_id else None,
                    "link": link(row.deal_id) if row.deal_id else None,
                },
                row.total,
            )

    # Open violations of theirs, oldest first.
    theirs = (Violation.owner_id.in_(owners), ~Violation.rule.in_(NOT_IN_MANAGER_VIOLATIONS))
    for item, owner, total in await _violations(store, now, limit, link, *theirs):
        out[owner]["violations"].add(item, total)
    return out


async def _violations(
    store: StoreReader, now: datetime, limit: int, link: Any, *where: Any
) -> list[tuple[dict[str, Any], int | None, int]]:
    """Open violations matching ``where``, the ``limit`` oldest of each owner."""
    place, total = _ranked(Violation.owner_id, (Violation.first_seen, Violation.id))
    ranked = (
        select(Violation.id, place, total).where(Violation.resolved_at.is_(None), *where).subquery()
    )
    deal_id = _deal_of_violation()
    rows = await store.execute(
        select(
            Violation.id,
            Violation.owner_id,
            Violation.rule,
            Violation.severity,
            Violation.detail,
            Violation.first_seen,
            deal_id.label("deal_id"),
            Deal.title.label("deal_title"),
            ranked.c.total,
        )
        .join(ranked, ranked.c.id == Violation.id)
        .outerjoin(Deal, Deal.id == deal_id)
        .where(ranked.c.place <= limit)
        .order_by(Violation.owner_id, ranked.c.place)
    )
    return [
        (
            {
                "id": row.id,
                "rule": row.rule,
                "rule_name": rule_name(row.rule),
                "severity": row.severity,
                "detail": row.detail,
                "first_seen": row.first_seen,
                "age": age(now - row.first_seen),
                "deal": {"id": row.deal_id, "title": row.deal_title} if row.deal_id else None,
                "link": link(row.deal_id) if row.deal_id else None,
            },
            row.owner_id,
            row.total,
        )
        for row in rows
    ]


# -- the head of sales' morning ---------------------------------------------------------


async def violations_by_manager(
    store: StoreReader, now: datetime, limit: int, link: Any
) -> list[dict[str, Any]]:
    """Open violations per owner: how many, of which rules, since when, and the oldest few;
    the owner with the oldest violation first."""
    rows = await store.execute(
        select(
            Violation.owner_id,
            Violation.rule,
            func.count().label("count"),
            func.min(Violation.first_seen).label("oldest"),
        )
        .where(Violation.resolved_at.is_(None))
        .group_by(Violation.owner_id, Violation.rule)
    )
    owners: dict[int | None, dict[str, Any]] = {}
    for owner_id, rule, count, oldest in rows:
        entry = owners.setdefault(
            owner_id, {"owner_id": owner_id, "count": 0, "rules": [], "oldest": oldest}
        )
        entry["count"] += count
        entry["rules"].append({"rule": rule, "name": rule_name(rule), "count": count})
        entry["oldest"] = min(entry["oldest"], oldest)
    if not owners:
        return []
    names = dict(
        (
            await store.execute(
                select(User.id, User.name).where(User.id.in_([o for o in owners if o is not None]))
            )
        ).all()
    )
    for item, owner_id, _ in await _violations(store, now, limit, link):
        if owner_id in owners:  # opened between the two queries: counted tomorrow
            owners[owner_id].setdefault("rows", []).append(item)
    out = []
    for owner_id, entry in owners.items():
        entry["name"] = names.get(owner_id) if owner_id is not None else None
        entry["rules"].sort(key=lambda r: (-r["count"], r["rule"]))
        entry["age"] = age(now - entry["oldest"])
        entry.setdefault("rows", [])
        out.append(entry)
    out.sort(key=lambda e: (e["oldest"], -e["count"]))
    return out


async def funnel(store: StoreReader, catalog: Catalog) -> list[dict[str, Any]]:
    """Open deals per pipeline and stage, in the pipeline's order: how many and for how much."""
    rows = await store.execute(
        select(Deal.stage_id, Deal.currency, func.count(), func.sum(Deal.amount))
        .where(Deal.status == "open")
        .group_by(Deal.stage_id, Deal.currency)
    )
    counts: dict[int, int] = {}
    sums: dict[int, list[tuple[str | None, Any]]] = {}
    for stage_id, currency, count, amount in rows:
        counts[stage_id] = counts.get(stage_id, 0) + count
        sums.setdefault(stage_id, []).append((currency, amount))
    out = []
    for pipeline in sorted(catalog.pipelines.values(), key=lambda p: p.id):
        stages = sorted(
            (s for s in pipeline.stages.values() if s.kind == "open"), key=lambda s: s.position
        )
        rows_ = [
            {
                "stage": s.name,
                "count": counts.get(s.id, 0),
                "amounts": _amounts(sums.get(s.id, [])),
            }
            for s in stages
        ]
        out.append(
            {
                "pipeline": pipeline.name,
                "stages": rows_,
                "count": sum(r["count"] for r in rows_),
                "amounts": _amounts(pair for s in stages for pair in sums.get(s.id, [])),
            }
        )
    return out


async def conversions(
    store: StoreReader, catalog: Catalog, since: datetime, now: datetime
) -> list[dict[str, Any]]:
    """Of the deals that entered each open stage since ``since``, how many went on to the next
    stage or beyond (a jump the pipeline allows counts; being lost does not), by now."""
    entered = StageChange.__table__.alias("entered")
    later = StageChange.__table__.alias("later")
    here = Stage.__table__.alias("here")
    there = Stage.__table__.alias("there")
    went_on = (
        select(literal(1))
        .select_from(later.join(there, there.c.id == later.c.to_stage_id))
        .where(
            later.c.deal_id == entered.c.deal_id,
            later.c.changed_at >= entered.c.changed_at,
            later.c.changed_at <= now,
            there.c.pipeline_id == here.c.pipeline_id,
            there.c.position > here.c.position,
            there.c.kind != "lost",
        )
        .exists()
    )
    per_deal = (
        select(
            entered.c.deal_id,
            entered.c.to_stage_id.label("stage_id"),
            func.max(case((went_on, 1), else_=0)).label("went_on"),
        )
        .select_from(entered.join(here, here.c.id == entered.c.to_stage_id))
        .where(entered.c.changed_at >= since, entered.c.changed_at <= now, here.c.kind == "open")
        .group_by(entered.c.deal_id, entered.c.to_stage_id)
        .subquery()
    )
    rows = await store.execute(
        select(per_deal.c.stage_id, func.count(), func.sum(per_deal.c.went_on)).group_by(
            per_deal.c.stage_id
        )
    )
    counted = {stage_id: (entered_n, int(went or 0)) for stage_id, entered_n, went in rows}
    out = []
    for pipeline in sorted(catalog.pipelines.values(), key=lambda p: p.id):
        ordered = sorted(pipeline.stages.values(), key=lambda s: s.position)
        opened = [s for s in ordered if s.kind == "open"]
        won = next((s for s in ordered if s.kind == "won"), None)
        steps = []
        for index, stage in enumerate(opened):
            following = opened[index + 1] if index + 1 < len(opened) else won
            if following is None:
                continue
            entered_n, went = counted.get(stage.id, (0, 0))
            steps.append(
                {
                    "source": stage.name,
                    "target": following.name,
                    "entered": entered_n,
                    "reached": went,
                    "percent": round(100 * went / entered_n) if entered_n else None,
                }
            )
        out.append({"pipeline": pipeline.name, "steps": steps})
    return out


async def closed(store: StoreReader, since: datetime, now: datetime) -> dict[str, Any]:
    """Deals won and lost since ``since``: won count and amount; lost by reason, with the
    competitors they went to, the most frequent reason first."""
    recent = and_(Deal.closed_at >= since, Deal.closed_at <= now)
    won = (
        await store.execute(
            select(Deal.currency, func.count(), func.sum(Deal.amount))
            .where(Deal.status == "won", recent)
            .group_by(Deal.currency)
        )
    ).all()
    rows = await store.execute(
        select(
            Deal.loss_reason, Deal.competitor, Deal.currency, func.count(), func.sum(Deal.amount)
        )
        .where(Deal.status == "lost", recent)
        .group_by(Deal.loss_reason, Deal.competitor, Deal.currency)
    )
    reasons: dict[str | None, dict[str, Any]] = {}
    sums: dict[str | None, list[tuple[str | None, Any]]] = {}
    for reason, competitor, currency, count, amount in rows:
        entry = reasons.setdefault(reason, {"reason": reason, "count": 0, "competitors": {}})
        entry["count"] += count
        if competitor:
            entry["competitors"][competitor] = entry["competitors"].get(competitor, 0) + count
        sums.setdefault(reason, []).append((currency, amount))
    lost = []
    for reason, entry in reasons.items():
        competitors = sorted(entry["competitors"].items(), key=lambda c: (-c[1], c[0]))
        lost.append(
            {
                "reason": reason,
                "count": entry["count"],
                "amounts": _amounts(sums[reason]),
                "competitors": [{"name": n, "count": c} for n, c in competitors],
            }
        )
    lost.sort(key=lambda e: (-e["count"], e["reason"] or ""))
    return {
        "won": {
            "count": sum(count for _, count, _ in won),
            "amounts": _amounts((currency, amount) for currency, _, amount in won),
        },
        "lost": lost,
        "lost_count": sum(e["count"] for e in lost),
        "lost_amounts": _amounts(pair for pairs in sums.values() for pair in pairs),
    }


# -- escalation ---------------------------------------------------------------------------


async def crossed(
    store: StoreReader,
    severities: Collection[str],
    after: timedelta,
    since: datetime | None,
    now: datetime,
) -> list[dict[str, Any]]:
    """Open violations of ``severities`` that turned ``after`` old in (``since``, ``now``]:
    the ones an escalation run has to tell about, each with its deal and owner."""
    threshold = now - after
    where = [
        Violation.resolved_at.is_(None),
        Violation.severity.in_(list(severities)),
        Violation.first_seen <= threshold,
    ]
    if since is not None:
        where.append(Violation.first_seen > since - after)
    inner = (
        select(
            Violation.id,
            Violation.rule,
            Violation.severity,
            Violation.detail,
            Violation.first_seen,
            Violation.owner_id,
            _deal_of_violation().label("deal_id"),
        )
        .where(*where)
        .subquery()
    )
    rows = await store.execute(
        select(
            inner,
            Deal.title.label("deal_title"),
            Deal.amount,
            Deal.currency,
            Deal.stage_id,
            User.name.label("owner_name"),
        )
        .outerjoin(Deal, Deal.id == inner.c.deal_id)
        .outerjoin(User, User.id == inner.c.owner_id)
        .order_by(inner.c.first_seen, inner.c.id)
    )
    return [dict(row._mapping) for row in rows]
