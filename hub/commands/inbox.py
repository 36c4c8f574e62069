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
@click.option("--channel", default=None, help="Only this channel's events (email_inbound).")
@click.option("--skipped", is_flag=True, help="Only events filed as not a lead, with why.")
@click.option("--limit", type=int, default=50, show_default=True)
@click.pass_context
def inbox_list(
    ctx: click.Context,
    dead: bool,
    status: str | None,
    channel: str | None,
    skipped: bool,
    limit: int,
) -> None:
    """Inbound events, newest first: what each became (a new deal, a reply, skipped as an
    auto-reply...), or their error if they failed."""
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
        if channel:
            stmt = stmt.where(t.c.channel == channel)
        if skipped:
            stmt = stmt.where(t.c.result["skipped"].as_string().is_not(None))
        async with store.read() as conn:
            return [list(r) for r in await conn.execute(stmt)]

    rows = _run(_with_store(settings, go))
    _table(
        ["id", "channel", "status", "attempts", "received", "outcome", "deal", "error"],
        [
            [r[0], r[1], r[2], r[3], show(r[4]), _outcome(r[6]), (r[6] or {}).get("deal_id"), r[5]]
            for r in rows
        ],
    )


def _outcome(result: dict[str, Any] | None) -> str:
    """What the event became: the lead's decision, a channel's filing, or why it was skipped."""
    if not result:
        return ""
    if result.get("skipped"):
        return f"skipped: {result['skipped']}"
    return str(result.get("decision") or result.get("filed") or result.get("call") or "")


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
