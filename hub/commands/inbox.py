"""`hub inbox`: The intake's inbox: what channels handed in."""

from __future__ import annotations

import sys
from typing import Any

import click
from sqlalchemy import select

from hub.commands.common import (
    _local,
    _run,
    _settings,
    _table,
    _with_store,
)


@click.group()
def inbox() -> None:
    """Accepted inbound events: pending, done, dead, spam."""


@inbox.command("list")
@click.option("--dead", is_flag=True, help="Only events that failed every attempt.")
@click.option("--status", type=click.Choice(["pending", "done", "dead", "spam"]), default=None)
@click.option("--limit", type=int, default=50, show_default=True)
@click.pass_context
def inbox_list(ctx: click.Context, dead: bool, status: str | None, limit: int) -> None:
    """Inbound events, newest first, with their error if they failed."""
    from hub.store.models import InboxEvent

    settings = _settings(ctx)
    show = _local(settings)
    status = "dead" if dead else status

    async def go(store: Any) -> list[list[Any]]:
        t = InboxEvent.__table__
        stmt = (
            select(
                t.c.id,
                t.c.channel,
                t.c.status,
                t.c.attempts,
                t.c.received_at,
                t.c.last_error,
                t.c.result,
            )
            .order_by(t.c.id.desc())
            .limit(limit)
        )
        if status:
            stmt = stmt.where(t.c.status == status)
        async with store.read() as conn:
            return [list(r) for r in await conn.execute(stmt)]

    rows = _run(_with_store(settings, go))
    _table(
        ["id", "channel", "status", "attempts", "received", "deal", "error"],
        [[r[0], r[1], r[2], r[3], show(r[4]), (r[6] or {}).get("deal_id"), r[5]] for r in rows],
    )


@inbox.command("replay")
@click.argument("ids", type=int, nargs=-1, required=True)
@click.pass_context
def inbox_replay(ctx: click.Context, ids: tuple[int, ...]) -> None:
    """Queue dead (or spam) events IDS again; the running daemon picks them up."""
    from hub.intake import replay

    settings = _settings(ctx)
    done = _run(_with_store(settings, lambda store: replay(store, ids)))
    missing = sorted(set(ids) - set(done))
    if done:
        click.echo(f"requeued: {', '.join(map(str, done))}")
    if missing:
        click.echo(f"not dead or spam, left alone: {', '.join(map(str, missing))}", err=True)
        sys.exit(1)
