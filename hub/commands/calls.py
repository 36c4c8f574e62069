"""`hub calls`: the calls the telephony channels filed, newest first."""

from __future__ import annotations

from typing import Any

import click
from sqlalchemy import select

from hub.commands.common import _local, _run, _settings, _table, _with_store

DIRECTIONS = {"in": "входящий", "out": "исходящий"}


@click.group()
def calls() -> None:
    """Calls: who called, who answered, how long, which were missed."""


@calls.command("list")
@click.option("--missed", is_flag=True, help="Only calls nobody answered.")
@click.option("--owner", default=None, help="Only calls of this manager's clients (email).")
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def calls_list(
    ctx: click.Context, missed: bool, owner: str | None, limit: int, as_json: bool
) -> None:
    """Recent calls with the client, their deal and whether a call back is still open.

    Every finished call a PBX reported (the generic webhook, Zadarma, Mango Office,
    Asterisk) is kept as a ``call`` activity; this lists them newest first. A recorded
    call shows the hub's link to listen to it (a bearer token opens it; it fetches a
    fresh link from the provider each time)."""
    from hub.store.models import Activity, Contact, Task, User

    settings = _settings(ctx)
    show = _local(settings)

    async def go(store: Any) -> list[Any]:
        callback_open = (
            select(Task.id)
            .where(
                Task.contact_id == Activity.contact_id,
                Task.kind == "callback",
                Task.done_at.is_(None),
            )
            .limit(1)
            .correlate(Activity)
            .scalar_subquery()
        )
        stmt = (
            select(
                Activity.id,
                Activity.occurred_at,
                Activity.direction,
                Activity.payload,
                Activity.deal_id,
                Contact.id.label("contact_id"),
                Contact.name,
                User.email.label("owner"),
                callback_open.label("callback"),
            )
            .outerjoin(Contact, Contact.id == Activity.contact_id)
            .outerjoin(User, User.id == Contact.owner_id)
            .where(Activity.kind == "call")
            .order_by(Activity.occurred_at.desc(), Activity.id.desc())
            .limit(limit)
        )
        if missed:
            stmt = stmt.where(Activity.payload["result"].as_string() == "missed")
        if owner:
            stmt = stmt.where(User.email == owner.lower())
        async with store.read() as conn:
            return list(await conn.execute(stmt))

    rows = _run(_with_store(settings, go))
    found = [_call(row, settings.campaigns.public_url) for row in rows]
    if as_json:
        click.echo(_dumps(found))
        return
    _table(
        [
            "when",
            "direction",
            "number",
            "result",
            "talked",
            "who",
            "client",
            "deal",
            "call back",
            "recording",
        ],
        [
            [
                show(row.occurred_at),
                DIRECTIONS.get(call["direction"], call["direction"]),
                call["number"],
                call["result"] if not call["reason"] else f"{call['result']} ({call['reason']})",
                _seconds(call["duration"]),
                call["answered_by"] or call["extension"] or "",
                call["client"] or ("—" if call["contact_id"] is None else f"#{call['contact_id']}"),
                call["deal_id"] or "",
                f"open #{call['callback_task']}" if call["callback_task"] else "",
                call["recording_url"] or "",
            ]
            for row, call in zip(rows, found, strict=True)
        ],
    )


def _call(row: Any, hub_url: str) -> dict[str, Any]:
    call = (row.payload or {}).get("call", {})
    link = call.get("recording_url")
    if isinstance(link, str) and link.startswith("/"):
        link = hub_url + link  # the hub's own lasting link, as a manager opens it
    return {
        "activity_id": row.id,
        "occurred_at": row.occurred_at.isoformat(),
        "direction": row.direction,
        "result": (row.payload or {}).get("result"),
        "number": call.get("number"),
        "line": call.get("line"),
        "extension": call.get("extension"),
        "answered_by": call.get("answered_by"),
        "duration": call.get("duration"),
        "reason": call.get("reason"),
        "recording_url": link,
        "recordings": call.get("recordings") or [],
        "provider": call.get("provider"),
        "call_id": call.get("call_id"),
        "contact_id": row.contact_id,
        "client": row.name,
        "owner": row.owner,
        "deal_id": row.deal_id,
        "callback_task": row.callback,
    }


def _seconds(value: int | None) -> str:
    if not value:
        return ""
    minutes, seconds = divmod(int(value), 60)
    return f"{minutes}:{seconds:02d}"


def _dumps(value: Any) -> str:
    import orjson

    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
