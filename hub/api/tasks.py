"""``/api/v1/tasks``: what each manager must do; adding, completing, rescheduling."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.api import records
from hub.api.common import Problem, body, int_param, page, path_id, principal, scope, write
from hub.api.people import owner_id_of, user_zone
from hub.deals import changes as ch
from hub.store.models import Task
from hub.store.types import utcnow

routes = web.RouteTableDef()


class TaskIn(BaseModel):
    """A task on a deal (or a contact); a due time without a zone is the user's local time."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    title: str = Field(min_length=1, max_length=300)
    due_at: datetime
    deal_id: int | None = Field(default=None, ge=1, le=2**63 - 1)
    contact_id: int | None = Field(default=None, ge=1, le=2**63 - 1)
    kind: str = Field(default="call", max_length=20)
    owner: str | None = Field(default=None, description="Owner's email; head and admin only.")


class TaskDone(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    result: str | None = Field(default=None, max_length=5000)


class TaskPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    title: str | None = Field(default=None, min_length=1, max_length=300)
    due_at: datetime | None = None
    owner: str | None = Field(default=None, description="Owner's email; head and admin only.")


async def _aware(request: web.Request, value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=await user_zone(request))


def _show(task_id: int | ch.AddTask, status: int = 200) -> Any:
    async def respond(conn: AsyncConnection) -> tuple[int, Any]:
        found = ch.ref_id(task_id)
        row = (await conn.execute(select(Task.__table__).where(Task.id == found))).mappings().one()
        return status, records.task(row)

    return respond


@routes.get("/api/v1/tasks")
async def list_tasks(request: web.Request) -> web.Response:
    """Tasks, newest first; ``?open=true``, ``?overdue=true``, ``?deal_id=``."""
    stmt = select(Task.__table__)
    owner = scope(request)
    if owner is not None:
        stmt = stmt.where(Task.owner_id == owner)
    q = request.query
    if q.get("open") in ("1", "true", "yes"):
        stmt = stmt.where(Task.done_at.is_(None))
    if q.get("overdue") in ("1", "true", "yes"):
        stmt = stmt.where(and_(Task.done_at.is_(None), Task.due_at < utcnow()))
    if q.get("deal_id"):
        stmt = stmt.where(Task.deal_id == int_param(request, "deal_id"))
    return await page(request, stmt, Task.id, records.task)


@routes.post("/api/v1/tasks")
async def add_task(request: web.Request) -> web.Response:
    given: TaskIn = await body(request, TaskIn)
    if given.deal_id is None and given.contact_id is None:
        raise Problem(422, "a task belongs to a deal or a contact", reasons=[{"field": "deal_id"}])
    owner: int | ch._Unset | None = ch.UNSET
    if given.owner is not None or principal(request).limited:
        owner = await owner_id_of(request, given.owner)
    task = ch.AddTask(
        title=given.title,
        due_at=await _aware(request, given.due_at),
        deal=given.deal_id,
        contact=given.contact_id,
        owner_id=owner,
        task_kind=given.kind,
    )
    return await write(request, [task], _show(task, 201))


@routes.post("/api/v1/tasks/{id}/complete")
async def complete_task(request: web.Request) -> web.Response:
    task_id = path_id(request)
    given: TaskDone = await body(request, TaskDone)
    return await write(
        request, [ch.CompleteTask(task=task_id, result=given.result)], _show(task_id)
    )


@routes.patch("/api/v1/tasks/{id}")
async def patch_task(request: web.Request) -> web.Response:
    """Move a task's due time, rename it, or (head and admin) give it to someone else."""
    task_id = path_id(request)
    given: TaskPatch = await body(request, TaskPatch)
    sent = given.model_fields_set
    change = ch.RescheduleTask(task=task_id)
    if "due_at" in sent:
        if given.due_at is None:
            raise Problem(422, "a task needs a due time", reasons=[{"field": "due_at"}])
        change.due_at = await _aware(request, given.due_at)
    if "title" in sent and given.title is not None:
        change.title = given.title
    if "owner" in sent:
        if principal(request).limited:
            raise Problem(
                422, "a manager cannot give a task to someone else", reasons=[{"field": "owner"}]
            )
        change.owner_id = await owner_id_of(request, given.owner)
    return await write(request, [change], _show(task_id))
