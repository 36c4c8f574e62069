"""The built-in hygiene audits: what a head of sales checks card by card, found in SQL.

- ``no_task``: an open deal without an open task;
- ``overdue_task``: an open task past its due time;
- ``stage_expired``: a deal in its stage past the stage's time limit;
- ``cadence_broken``: no call, email or meeting within the stage's cadence;
- ``deal_no_segment`` / ``contact_no_segment``: a deal or a client without a segment;
- ``no_points``: a client with neither a phone nor an email;
- ``skipped_stage``: stage history that jumped over stages (imported or overridden data
  aside: a jump the pipeline allows, or one skipped with a reason, is not reported).

Each audit is one or two queries over the whole store, never a loop over records
in Python; the hub keeps what they find as violations (:mod:`hub.audit`).
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
from sqlalchemy import exists, func, or_, select

from hub import lights
from hub.audit import Finding
from hub.deals import StoreReader
from hub.hookspecs import hookimpl
from hub.store.models import Contact, ContactPoint, Deal, Stage, StageChange, Task

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

Find = Callable[[StoreReader, datetime, Any], Awaitable[list[Finding]]]


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


def _open_deals() -> Any:
    return select(Deal.id, Deal.owner_id, Deal.stage_id).where(Deal.status == "open")


async def _deals(
    store: StoreReader, rule: str, severity: str, condition: Any, hub: Any, **values: Any
) -> list[Finding]:
    rows = await store.execute(_open_deals().where(condition))
    details: dict[int, str] = {}  # the text depends on the stage only: made once per stage
    out = []
    for deal_id, owner_id, stage_id in rows:
        detail = details.get(stage_id)
        if detail is None:
            stage = hub.catalog.stages_by_id.get(stage_id) if hub.catalog else None
            detail = details[stage_id] = TEXTS[rule].format(
                stage=stage.name if stage else "?",
                limit=lights.duration(stage.time_limit if stage else None),
                within=lights.duration(stage.contact_within if stage else None),
                **values,
            )
        out.append(Finding(rule, "deal", deal_id, owner_id, detail, severity))
    return out


async def _no_task(store: StoreReader, now: datetime, hub: Any) -> list[Finding]:
    open_task = exists().where(Task.deal_id == Deal.id, Task.done_at.is_(None))
    return await _deals(store, "no_task", "red", ~open_task, hub)


async def _overdue_task(store: StoreReader, now: datetime, hub: Any) -> list[Finding]:
    zone = ZoneInfo(hub.settings.hub.timezone)
    rows = await store.execute(
        select(Task.id, Task.owner_id, Task.title, Task.due_at).where(
            Task.done_at.is_(None), Task.due_at < now
        )
    )
    text = TEXTS["overdue_task"]
    out = []
    for task_id, owner_id, title, due in rows:
        local = due.astimezone(zone)
        # f-string fields, not strftime: tens of thousands of overdue tasks in a dirty store
        when = f"{local.day:02}.{local.month:02}.{local.year} {local.hour:02}:{local.minute:02}"
        out.append(
            Finding("overdue_task", "task", task_id, owner_id, text.format(title=title, due=when))
        )
    return out


async def _stage_expired(store: StoreReader, now: datetime, hub: Any) -> list[Finding]:
    found = lights.conditions(hub.catalog, now, hub.settings.hub.timezone)
    return await _deals(store, "stage_expired", "red", found["expired"], hub)


async def _cadence_broken(store: StoreReader, now: datetime, hub: Any) -> list[Finding]:
    found = lights.conditions(hub.catalog, now, hub.settings.hub.timezone)
    return await _deals(store, "cadence_broken", "red", found["cadence"], hub)


async def _deal_no_segment(store: StoreReader, now: datetime, hub: Any) -> list[Finding]:
    blank = or_(Deal.segment.is_(None), Deal.segment == "")
    return await _deals(store, "deal_no_segment", "yellow", blank, hub)


async def _contact_no_segment(store: StoreReader, now: datetime, hub: Any) -> list[Finding]:
    rows = await store.execute(
        select(Contact.id, Contact.owner_id).where(
            or_(Contact.segment.is_(None), Contact.segment == "")
        )
    )
    text = TEXTS["contact_no_segment"]
    return [Finding("contact_no_segment", "contact", i, o, text, "yellow") for i, o in rows]


async def _no_points(store: StoreReader, now: datetime, hub: Any) -> list[Finding]:
    rows = await store.execute(
        select(Contact.id, Contact.owner_id).where(
            ~exists().where(ContactPoint.contact_id == Contact.id)
        )
    )
    text = TEXTS["no_points"]
    return [Finding("no_points", "contact", i, o, text, "yellow") for i, o in rows]


async def _skipped_stage(store: StoreReader, now: datetime, hub: Any) -> list[Finding]:
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
    rows = await store.execute(
        select(
            StageChange.id,
            Deal.owner_id,
            Deal.pipeline_id,
            source.c.key,
            source.c.name,
            target.c.key,
            target.c.name,
        )
        .join(source, source.c.id == StageChange.from_stage_id)
        .join(target, target.c.id == StageChange.to_stage_id)
        .join(Deal, Deal.id == StageChange.deal_id)
        .where(
            StageChange.override.is_(None),
            target.c.kind != "lost",
            target.c.position > source.c.position,
            between > 0,
        )
    )
    pipelines = {p.id: p.key for p in hub.catalog.pipelines.values()} if hub.catalog else {}
    out = []
    for change_id, owner_id, pipeline_id, from_key, from_name, to_key, to_name in rows:
        configured = hub.settings.pipelines.get(pipelines.get(pipeline_id, ""))
        if configured is not None and to_key in configured.jumps.get(from_key, []):
            continue
        detail = TEXTS["skipped_stage"].format(source=from_name, target=to_name)
        out.append(Finding("skipped_stage", "stage_change", change_id, owner_id, detail, "yellow"))
    return out
