"""The traffic light of an open deal: red, yellow or green, with the reasons.

Red: an overdue task, no open task, the stage's time limit passed, or no call,
email or meeting within the stage's contact cadence. Yellow: a task due today
(in the hub's time zone) or the stage's time limit ending within a day.
Green: nothing of that. Every condition is an SQL expression, so a list can be
filtered by colour in the store (``?light=red``) and a page of deals gets its
colours in one query.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, and_, exists, false, or_, select, true
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.store.models import Activity, Deal, Task
from hub.store.ops import Catalog
from hub.worktime import Team

TEXTS = tomllib.loads((Path(__file__).with_name("templates") / "lights.toml").read_text())
CONTACTS = ("call", "email", "meeting", "sms", "chat")  # what keeps a cadence
SOON = timedelta(days=1)
RED = ("overdue", "no_task", "expired", "cadence")
YELLOW = ("due_today", "expires_soon")


@dataclass(frozen=True, slots=True)
class Light:
    colour: str  # red | yellow | green
    reasons: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {"colour": self.colour, "reasons": self.reasons}


def conditions(
    catalog: Catalog, now: datetime, zone: str, team: Team | None = None
) -> dict[str, ColumnElement[bool]]:
    """Each condition of the light, as an SQL expression over ``deals``; the contact cadence
    in each owner's working time (``team``; without it, on the clock)."""
    open_task = and_(Task.deal_id == Deal.id, Task.done_at.is_(None))
    local = now.astimezone(ZoneInfo(zone))
    end_of_day = local.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    expired, soon = [], []
    for stage in catalog.stages_by_id.values():
        if stage.kind != "open":
            continue
        here = Deal.stage_id == stage.id
        if stage.time_limit:
            expired.append(and_(here, Deal.stage_entered_at < now - stage.time_limit))
            soon.append(
                and_(
                    here,
                    Deal.stage_entered_at >= now - stage.time_limit,
                    Deal.stage_entered_at < now - stage.time_limit + SOON,
                )
            )
    return {
        "overdue": exists().where(open_task, Task.due_at < now),
        "no_task": ~exists().where(open_task),
        "expired": or_(*expired) if expired else false(),
        "cadence": cadence_broken(catalog, team or Team.clock(), now),
        "due_today": exists().where(open_task, Task.due_at >= now, Task.due_at < end_of_day),
        "expires_soon": or_(*soon) if soon else false(),
    }


def cadence_broken(catalog: Any, team: Team, now: datetime) -> ColumnElement[bool]:
    """Open deals with no call, email or meeting within their stage's cadence, counted in
    the owner's working time: a deal last called on Friday evening keeps a one-day cadence
    over the weekend.

    Working time passed since an instant only shrinks as the instant moves on, so each
    owner's schedule has one cut-off per stage (:meth:`WorkingTime.since`): a deal is
    broken when it entered its stage, and was last contacted, before its cut-off. The
    whole check stays one SQL condition, with a branch per distinct schedule.
    """
    schedules = team.schedules()
    someone = [owner_id for owners in schedules.values() for owner_id in owners]
    by_default = or_(Deal.owner_id.is_(None), Deal.owner_id.not_in(someone)) if someone else true()
    branches = []
    for stage in catalog.stages_by_id.values() if catalog else []:
        if stage.kind != "open" or not stage.contact_within:
            continue
        who = [(team.default, by_default)]
        who += [(hours, Deal.owner_id.in_(owners)) for hours, owners in schedules.items()]
        for hours, owners in who:
            since = hours.since(now, stage.contact_within)
            contacted = exists().where(
                Activity.deal_id == Deal.id,
                Activity.kind.in_(CONTACTS),
                Activity.occurred_at >= since,
            )
            branches.append(
                and_(Deal.stage_id == stage.id, owners, Deal.stage_entered_at < since, ~contacted)
            )
    return or_(*branches) if branches else false()


def where_colour(colour: str, found: dict[str, ColumnElement[bool]]) -> ColumnElement[bool]:
    """The open deals of ``colour``."""
    red = or_(*(found[name] for name in RED))
    yellow = or_(*(found[name] for name in YELLOW))
    is_open = Deal.status == "open"
    if colour == "red":
        return and_(is_open, red)
    if colour == "yellow":
        return and_(is_open, ~red, yellow)
    return and_(is_open, ~red, ~yellow)


async def lights(
    conn: AsyncConnection,
    deal_ids: list[int],
    catalog: Catalog,
    now: datetime,
    zone: str,
    team: Team | None = None,
) -> dict[int, Light]:
    """The light of each open deal among ``deal_ids`` (closed deals have none)."""
    if not deal_ids:
        return {}
    found = conditions(catalog, now, zone, team)
    names = list(found)
    rows = await conn.execute(
        select(Deal.id, Deal.stage_id, *(found[n].label(n) for n in names)).where(
            Deal.id.in_(deal_ids), Deal.status == "open"
        )
    )
    out: dict[int, Light] = {}
    for row in rows:
        out[row.id] = light_of(dict(zip(names, row[2:], strict=True)), catalog, row.stage_id)
    return out


def light_of(flags: dict[str, bool], catalog: Catalog, stage_id: int) -> Light:
    """The colour and the reasons, worded, from the conditions that hold for a deal."""
    stage = catalog.stages_by_id.get(stage_id)
    values = {
        "stage": stage.name if stage else "?",
        "within": duration(stage.contact_within if stage else None),
    }
    red = [TEXTS[n].format(**values) for n in RED if flags[n]]
    yellow = [TEXTS[n].format(**values) for n in YELLOW if flags[n]]
    return Light("red" if red else "yellow" if yellow else "green", red or yellow)


def duration(value: timedelta | None) -> str:
    if value is None:
        return ""
    hours = int(value.total_seconds() // 3600)
    if hours and hours % 24 == 0:
        days = hours // 24
        return f"{days} дн."
    return f"{hours} ч."
