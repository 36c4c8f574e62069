"""`hub tasks`: Tasks: list, add, complete."""

from __future__ import annotations

from typing import Any

import click
from sqlalchemy import select

from hub.commands.common import (
    _local,
    _run,
    _settings,
    _table,
    _with_store,
    acting_as,
    as_option,
    change_or_exit,
    offline_hub,
)
from hub.store.types import utcnow


@click.group()
def tasks() -> None:
    """Tasks: what each manager must do, and what is overdue."""


@tasks.command("list")
@click.option("--owner", default=None, help="Owner's email.")
@click.option("--overdue", is_flag=True, help="Only open tasks past their due time.")
@click.option("--all", "show_all", is_flag=True, help="Done tasks too.")
@click.option("--limit", type=int, default=50, show_default=True)
@click.pass_context
def tasks_list(
    ctx: click.Context, owner: str | None, overdue: bool, show_all: bool, limit: int
) -> None:
    """Open tasks by due time, soonest first, with their deal and owner."""
    from hub.store.models import Deal, Task, User

    settings = _settings(ctx)
    show = _local(settings)

    async def go(store: Any) -> list[list[Any]]:
        stmt = (
            select(Task.id, Task.title, Task.due_at, Task.done_at, User.email, Deal.id, Deal.title)
            .outerjoin(User, User.id == Task.owner_id)
            .outerjoin(Deal, Deal.id == Task.deal_id)
            .order_by(Task.due_at, Task.id)
            .limit(limit)
        )
        if not show_all:
            stmt = stmt.where(Task.done_at.is_(None))
        if overdue:
            stmt = stmt.where(Task.done_at.is_(None), Task.due_at < utcnow())
        if owner:
            stmt = stmt.where(User.email == owner.lower())
        async with store.read() as conn:
            return [list(r) for r in await conn.execute(stmt)]

    now = utcnow()
    rows = _run(_with_store(settings, go))
    _table(
        ["id", "task", "due", "state", "owner", "deal", "deal title"],
        [
            [
                r[0],
                r[1],
                show(r[2]),
                "done" if r[3] else ("OVERDUE" if r[2] < now else "open"),
                r[4],
                r[5],
                r[6],
            ]
            for r in rows
        ],
    )


def _due(text: str, zone: Any) -> Any:
    """``+2h``, ``+1d`` (from now) or a date and time in the user's zone."""
    from datetime import datetime

    from hub.config import parse_duration

    if text.startswith("+"):
        try:
            return utcnow() + parse_duration(text[1:])
        except ValueError:
            raise click.BadParameter(
                f"{text!r}: say +30m, +2h or +1d", param_hint="--due"
            ) from None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r}: say 2026-12-01 15:00, or +2h", param_hint="--due"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=zone)


@tasks.command("add")
@click.argument("deal_id", type=int)
@click.argument("text")
@click.option("--due", required=True, help="When: +2h, +1d, or '2026-12-01 15:00' (your time).")
@click.option("--owner", default=None, help="Whose task (default: the deal's owner).")
@as_option
@click.pass_context
def tasks_add(
    ctx: click.Context,
    deal_id: int,
    text: str,
    due: str,
    owner: str | None,
    as_user: str | None,
) -> None:
    """Add a task TEXT to deal DEAL_ID."""
    from zoneinfo import ZoneInfo

    from hub.deals.changes import UNSET, AddTask
    from hub.store.models import User

    settings = _settings(ctx)

    async def go() -> int | None:
        async with offline_hub(settings) as hub:
            actor = await acting_as(hub, as_user)
            zone_name = settings.hub.timezone
            configured = next((u for u in settings.users if u.email == actor.name), None)
            if configured is not None and configured.timezone:
                zone_name = configured.timezone
            owner_id: Any = UNSET
            if owner is not None:
                async with hub.store.read() as conn:
                    owner_id = (
                        await conn.execute(select(User.id).where(User.email == owner.lower()))
                    ).scalar_one_or_none()
                if owner_id is None:
                    raise click.BadParameter(f"no user {owner}", param_hint="--owner")
            task = AddTask(
                title=text, due_at=_due(due, ZoneInfo(zone_name)), deal=deal_id, owner_id=owner_id
            )
            await hub.deals.apply([task], actor)
            return task.id

    task_id = change_or_exit(go())
    click.echo(f"task {task_id} added to deal {deal_id}")


@tasks.command("done")
@click.argument("task_id", type=int)
@click.option("--result", default=None, help="What came of it.")
@as_option
@click.pass_context
def tasks_done(ctx: click.Context, task_id: int, result: str | None, as_user: str | None) -> None:
    """Complete task TASK_ID."""
    from hub.deals.changes import CompleteTask

    async def go() -> None:
        async with offline_hub(_settings(ctx)) as hub:
            await hub.deals.apply(
                [CompleteTask(task=task_id, result=result)], await acting_as(hub, as_user)
            )

    change_or_exit(go())
    click.echo(f"task {task_id} done")
