"""`hub notifications`: the notification outbox: what was sent, what failed, what waits."""

from __future__ import annotations

import sys
from typing import Any

import click

from hub.commands.common import _local, _run, _settings, _table, _with_store


@click.group()
def notifications() -> None:
    """Notifications queued by the rules: sent, waiting, failed, held for review."""


@notifications.command("list")
@click.option("--failed", is_flag=True, help="Only those that failed or wait for review.")
@click.option(
    "--state",
    type=click.Choice(["queued", "sending", "sent", "failed", "review"]),
    multiple=True,
    help="Only these states (repeatable).",
)
@click.option("--limit", type=int, default=50, show_default=True)
@click.pass_context
def notifications_list(
    ctx: click.Context, failed: bool, state: tuple[str, ...], limit: int
) -> None:
    """Notifications, newest first, with the last error of those not sent."""
    from hub.notify import outbox

    settings = _settings(ctx)
    show = _local(settings)
    states = ("failed", "review") if failed else state

    async def go(store: Any) -> tuple[list[dict[str, Any]], dict[str, int]]:
        return await outbox.listing(store, states=states, limit=limit), await outbox.counts(store)

    rows, counts = _run(_with_store(settings, go))
    _table(
        ["id", "state", "via", "to", "template", "deal", "tries", "queued", "sent", "error"],
        [
            [
                r["id"],
                r["state"],
                r["notifier"],
                r["address"],
                r["template"] or r["event_type"],
                r["deal_id"],
                r["attempts"],
                show(r["created_at"]),
                show(r["sent_at"]) if r["sent_at"] else "",
                r["last_error"] or "",
            ]
            for r in rows
        ],
    )
    summary = ", ".join(f"{name}: {n}" for name, n in sorted(counts.items()))
    click.echo(summary or "no notifications")


@notifications.command("retry")
@click.argument("ids", type=int, nargs=-1, required=True)
@click.pass_context
def notifications_retry(ctx: click.Context, ids: tuple[int, ...]) -> None:
    """Send failed or held (review) notifications IDS again; the running daemon sends them."""
    from hub.notify import outbox
    from hub.store.types import utcnow

    settings = _settings(ctx)

    async def go(store: Any) -> dict[int, str | None]:
        return {i: await outbox.retry(store, i, now=utcnow()) for i in ids}

    before = _run(_with_store(settings, go))
    requeued = [i for i, state in before.items() if state in ("failed", "review")]
    if requeued:
        click.echo(f"queued again: {', '.join(map(str, requeued))}")
    problems = 0
    for i, state in before.items():
        if state is None:
            click.echo(f"{i}: no such notification", err=True)
            problems += 1
        elif state not in ("failed", "review"):
            click.echo(f"{i}: {state}, left as it is", err=True)
            problems += 1
    if problems:
        sys.exit(1)


@notifications.command("destinations")
@click.pass_context
def notifications_destinations(ctx: click.Context) -> None:
    """Each chat, mailbox and webhook endpoint: last delivery, what waits or failed since,
    the last error (a webhook endpoint disabled after days of failures says so there)."""
    from hub.notify import outbox

    settings = _settings(ctx)
    show = _local(settings)
    rows = _run(_with_store(settings, outbox.destinations))
    _table(
        ["via", "to", "last sent", "waiting", "failed", "review", "oldest unsent", "last error"],
        [
            [
                r["notifier"],
                r["address"],
                show(r["last_sent"]) if r["last_sent"] else "never",
                r["queued"],
                r["failed"],
                r["review"],
                show(r["oldest_unsent"]) if r["oldest_unsent"] else "",
                r["last_error"] or "",
            ]
            for r in rows
        ],
    )
