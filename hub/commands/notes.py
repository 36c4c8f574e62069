"""`hub notes`: notes on deals."""

from __future__ import annotations

import click

from hub.commands.common import _settings, acting_as, as_option, change_or_exit, offline_hub


@click.group()
def notes() -> None:
    """Notes on deals."""


@notes.command("add")
@click.argument("deal_id", type=int)
@click.argument("text")
@as_option
@click.pass_context
def notes_add(ctx: click.Context, deal_id: int, text: str, as_user: str | None) -> None:
    """Add note TEXT to deal DEAL_ID."""
    from hub.deals.changes import AddNote

    async def go() -> int | None:
        async with offline_hub(_settings(ctx)) as hub:
            note = AddNote(deal=deal_id, body=text)
            await hub.deals.apply([note], await acting_as(hub, as_user))
            return note.id

    note_id = change_or_exit(go())
    click.echo(f"note {note_id} added to deal {deal_id}")
