"""The built-in hygiene audits: what a head of sales checks card by card, found in SQL.

- ``no_task``: an open deal without an open task;
- ``overdue_task``: an open task past its due time;
- ``stage_expired``: a deal in its stage past the stage's time limit;
- ``cadence_broken``: no call, email or meeting within the stage's cadence;
- ``deal_no_segment`` / ``contact_no_segment``: a deal or a client without a segment;
- ``no_points``: a client with neither a phone nor an email;
- ``skipped_stage``: stage history that jumped over stages (imported or overridden data
  aside: a jump the pipeline allows, or one skipped with a reason, is not reported).

Each audit is one query over the whole store, never a loop over records in Python,
handed to the hub as a SELECT (:class:`hub.audit.Found`): the store compares it with
the open violations, so only what changed comes back (:mod:`hub.audit`). Contact
cadence counts the owner's working time (:mod:`hub.worktime`), not the clock.
"""

from __future__ import annotations

import tomllib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict
from sqlalchemy import and_, exists, func, or_, select, true

from hub import lights
from hub.audit import Finding, Found
from hub.deals import StoreReader
from hub.hookspecs import hookimpl
from hub.store.models import Contact, ContactPoint, Deal, Stage, StageChange, Task
from hub.worktime import Team

TEXTS = tomllib.loads((Path(__file__).with_name("templates") / "audits.toml").read_text())
RULES = (
    "no_task",
    "overdue_task",
    "stage_expired",
    "cadence_broken",
    "deal_no_segment",
    "contact_no_segment",
    "no_points",
    "skipped_stage",
)

Find = Callable[[StoreReader, datetime, Any], Awaitable[list[Finding] | Found]]


@dataclass(frozen=True, slots=True)
class Audit:
    name: str
    severity: str
    find: Find


class HygieneAudits:
    enabled_by_default = True

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

        skip: list[str] = []  # audits not to run, by name

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or self.Config()
        unknown = set(self.config.skip) - set(RULES)
        if unknown:
            raise ValueError(f"skip: no audit {', '.join(sorted(unknown))}")

    @hookimpl
    def hub_audits(self) -> list[Audit]:
        every = [
            Audit("no_task", "red", _no_task),
            Audit("overdue_task", "red", _overdue_task),
            Audit("stage_expired", "red", _stage_expired),
            Audit("cadence_broken", "red", _cadence_broken),
            Audit("deal_no_segment", "yellow", _deal_no_segment),
            Audit("contact_no_segment", "yellow", _contact_no_segment),
            Audit("no_points", "yellow", _no_points),
            Audit("skipped_stage", "yellow", _skipped_stage),
        ]
        return [a for a in every if a.name not in self.config.skip]


def _deals(rule: str, condition: Any, hub: Any, **values: Any) -> Found:
    """The open deals where ``condition`` holds; the text depends on the stage only."""
    details: dict[int, str] = {}

    def detail(row: Any) -> str:
        stage_id = row[2]
        if stage_id not in details:
            stage = hub.catalog.stages_by_id.get(stage_id) if hub.catalog else None
            details[stage_id] = TEXTS[rule].format(
                stage=stage.name if stage else "?",
                limit=lights.duration(stage.time_limit if stage else None),
                within=lights.duration(stage.contact_within if stage else None),
                **values,
            )
        return details[stage_id]

    statement = select(Deal.id, Deal.owner_id, Deal.stage_id).where(
        Deal.status == "open", condition
    )
    return Found("deal", statement, detail)


async def _no_task(store: StoreReader, now: datetime, hub: Any) -> Found:
    open_task = exists().where(Task.deal_id == Deal.id, Task.done_at.is_(None))
    return _deals("no_task", ~open_task, hub)


async def _overdue_task(store: StoreReader, now: datetime, hub: Any) -> Found:
    zone = ZoneInfo(hub.settings.hub.timezone)
    text = TEXTS["overdue_task"]

    def detail(row: Any) -> str:
        local = row.due_at.astimezone(zone)
        # f-string fields, not strftime: tens of thousands of overdue tasks in a dirty store
        when = f"{local.day:02}.{local.month:02}.{local.year} {local.hour:02}:{local.minute:02}"
        return text.format(title=row.title, due=when)

    statement = select(Task.id, Task.owner_id, Task.title, Task.due_at).where(
        Task.done_at.is_(None), Task.due_at < now
    )
    return Found("task", statement, detail, run_once=False)


async def _stage_expired(store: StoreReader, now: datetime, hub: Any) -> Found:
    found = lights.conditions(hub.catalog, now, hub.settings.hub.timezone)
    return _deals("stage_expired", found["expired"], hub)


async def _cadence_broken(store: StoreReader, now: datetime, hub: Any) -> Found:
    team = Team.of_catalog(hub.settings, hub.catalog)
    return _deals("cadence_broken", lights.cadence_broken(hub.catalog, team, now), hub)


async def _deal_no_segment(store: StoreReader, now: datetime, hub: Any) -> Found:
    blank = or_(Deal.segment.is_(None), Deal.segment == "")
    return _deals("deal_no_segment", blank, hub)


async def _contact_no_segment(store: StoreReader, now: datetime, hub: Any) -> Found:
    text = TEXTS["contact_no_segment"]
    statement = select(Contact.id, Contact.owner_id).where(
        or_(Contact.segment.is_(None), Contact.segment == "")
    )
    return Found("contact", statement, lambda row: text)


async def _no_points(store: StoreReader, now: datetime, hub: Any) -> Found:
    text = TEXTS["no_points"]
    statement = select(Contact.id, Contact.owner_id).where(
        ~exists().where(ContactPoint.contact_id == Contact.id)
    )
    return Found("contact", statement, lambda row: text)


async def _skipped_stage(store: StoreReader, now: datetime, hub: Any) -> Found:
    source = Stage.__table__.alias("source")
    target = Stage.__table__.alias("target")
    # Open stages between the two, in the same pipeline: what the move jumped over.
    between = (
        select(func.count())
        .select_from(Stage)
        .where(
            Stage.pipeline_id == source.c.pipeline_id,
            Stage.kind == "open",
            Stage.position > source.c.position,
            Stage.position < target.c.position,
        )
        .scalar_subquery()
    )
    # Jumps the pipeline allows ([pipelines.<key>] jumps) are not reported.
    allowed = [
        and_(Deal.pipeline_id == pipeline.id, source.c.key == jump, target.c.key.in_(to))
        for pipeline in (hub.catalog.pipelines.values() if hub.catalog else [])
        if (configured := hub.settings.pipelines.get(pipeline.key)) is not None
        for jump, to in configured.jumps.items()
        if to
    ]
    statement = (
        select(
            StageChange.id,
            Deal.owner_id,
            source.c.name.label("source"),
            target.c.name.label("target"),
        )
        .join(source, source.c.id == StageChange.from_stage_id)
        .join(target, target.c.id == StageChange.to_stage_id)
        .join(Deal, Deal.id == StageChange.deal_id)
        .where(
            StageChange.override.is_(None),
            target.c.kind != "lost",
            target.c.position > source.c.position,
            between > 0,
            ~or_(*allowed) if allowed else true(),
        )
    )
    text = TEXTS["skipped_stage"]
    return Found(
        "stage_change", statement, lambda row: text.format(source=row.source, target=row.target)
    )
