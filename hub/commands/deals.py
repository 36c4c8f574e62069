"""`hub deals`: Deals: list, show, move through the pipeline, close."""

from __future__ import annotations

import dataclasses
import hashlib
import sys
from typing import Any

import click
import orjson
from sqlalchemy import func, select

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


@click.group()
def deals() -> None:
    """Deals in the store."""


@deals.command("list")
@click.option("--status", type=click.Choice(["open", "won", "lost"]), default=None)
@click.option("--owner", default=None, help="Owner's email.")
@click.option(
    "--light",
    type=click.Choice(["red", "yellow", "green"]),
    default=None,
    help="Open deals of a colour.",
)
@click.option("--limit", type=int, default=50, show_default=True)
@click.pass_context
def deals_list(
    ctx: click.Context, status: str | None, owner: str | None, light: str | None, limit: int
) -> None:
    """The newest deals with their traffic light, stage, owner, phone and open tasks."""
    from hub import lights
    from hub.store.models import Contact, ContactPoint, Deal, Stage, Task, User
    from hub.store.ops import load_catalog
    from hub.store.types import utcnow
    from hub.worktime import Team

    settings = _settings(ctx)
    show = _local(settings)

    async def go(store: Any) -> list[list[Any]]:
        async with store.read() as conn:
            catalog = await load_catalog(conn, settings)
        now = utcnow()
        open_tasks = (
            select(func.count())
            .where(Task.deal_id == Deal.id, Task.done_at.is_(None))
            .scalar_subquery()
        )
        first_phone = (
            select(ContactPoint.normalized)
            .where(ContactPoint.contact_id == Deal.contact_id, ContactPoint.kind == "phone")
            .order_by(ContactPoint.id)
            .limit(1)
            .scalar_subquery()
        )
        first_email = (
            select(ContactPoint.normalized)
            .where(ContactPoint.contact_id == Deal.contact_id, ContactPoint.kind == "email")
            .order_by(ContactPoint.id)
            .limit(1)
            .scalar_subquery()
        )
        stmt = (
            select(
                Deal.id,
                Deal.title,
                Stage.name,
                Deal.status,
                User.email,
                Contact.name,
                first_phone,
                first_email,
                open_tasks,
                Deal.source,
                Deal.created_at,
            )
            .join(Stage, Stage.id == Deal.stage_id)
            .outerjoin(User, User.id == Deal.owner_id)
            .outerjoin(Contact, Contact.id == Deal.contact_id)
            .order_by(Deal.id.desc())
            .limit(limit)
        )
        if status:
            stmt = stmt.where(Deal.status == status)
        if owner:
            stmt = stmt.where(User.email == owner.lower())
        if light:
            found = lights.conditions(
                catalog, now, settings.hub.timezone, Team.of_catalog(settings, catalog)
            )
            stmt = stmt.where(lights.where_colour(light, found))
        async with store.read() as conn:
            rows = [list(r) for r in await conn.execute(stmt)]
            colours = await lights.lights(
                conn,
                [r[0] for r in rows],
                catalog,
                now,
                settings.hub.timezone,
                Team.of_catalog(settings, catalog),
            )
        for row in rows:
            shown = colours.get(row[0])
            row.insert(
                1,
                f"{shown.colour}: {'; '.join(shown.reasons)}"
                if shown and shown.reasons
                else (shown.colour if shown else "-"),
            )
        return rows

    rows = _run(_with_store(settings, go))
    _table(
        [
            "id",
            "light",
            "title",
            "stage",
            "status",
            "owner",
            "contact",
            "phone",
            "email",
            "open tasks",
            "source",
            "created",
        ],
        [[*r[:11], show(r[11])] for r in rows],
    )


def _deal_action(ctx: click.Context, as_user: str | None, change: Any, done: str) -> None:
    async def go() -> None:
        async with offline_hub(_settings(ctx)) as hub:
            await hub.deals.apply([change], await acting_as(hub, as_user))

    change_or_exit(go())
    click.echo(done)


@deals.command("move")
@click.argument("deal_id", type=int)
@click.argument("stage")
@click.option("--override", default=None, metavar="REASON", help="Skip a rule, saying why.")
@as_option
@click.pass_context
def deals_move(
    ctx: click.Context, deal_id: int, stage: str, override: str | None, as_user: str | None
) -> None:
    """Move deal DEAL_ID to STAGE (the stage's key, as in the config)."""
    from hub.deals.changes import MoveStage

    change = MoveStage(deal=deal_id, stage=stage, override=override)
    _deal_action(ctx, as_user, change, f"deal {deal_id} moved to {stage}")


@deals.command("set")
@click.argument("deal_id", type=int)
@click.option("--title", default=None)
@click.option("--amount", default=None, help="e.g. 150000 or '150 000,50'.")
@click.option("--currency", default=None, help="Three letters: RUB, USD...")
@click.option("--segment", default=None)
@click.option("--field", "fields", multiple=True, metavar="NAME=VALUE", help="A custom field.")
@as_option
@click.pass_context
def deals_set(
    ctx: click.Context,
    deal_id: int,
    title: str | None,
    amount: str | None,
    currency: str | None,
    segment: str | None,
    fields: tuple[str, ...],
    as_user: str | None,
) -> None:
    """Fill in deal DEAL_ID's card: title, amount, currency, segment, custom fields."""
    from hub.deals.changes import SetDealFields

    change = SetDealFields(deal=deal_id)
    if title is not None:
        change.title = title
    if amount is not None:
        change.amount = _amount(amount)
    if currency is not None:
        change.currency = currency.upper()
    if segment is not None:
        change.segment = segment
    custom = {}
    for pair in fields:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"{pair!r}: write NAME=VALUE", param_hint="--field")
        custom[name.strip()] = value.strip() or None
    if custom:
        change.custom = custom
    _deal_action(ctx, as_user, change, f"deal {deal_id} updated")


def _amount(text: str) -> Any:
    from decimal import Decimal, InvalidOperation

    try:
        return Decimal(text.replace(",", ".").replace(" ", ""))
    except InvalidOperation:
        raise click.BadParameter(f"{text!r} is not an amount", param_hint="--amount") from None


@deals.command("won")
@click.argument("deal_id", type=int)
@click.option("--amount", default=None, help="The final amount.")
@click.option("--override", default=None, metavar="REASON", help="Skip a rule, saying why.")
@as_option
@click.pass_context
def deals_won(
    ctx: click.Context,
    deal_id: int,
    amount: str | None,
    override: str | None,
    as_user: str | None,
) -> None:
    """Close deal DEAL_ID as won."""
    from hub.deals.changes import UNSET, CloseWon

    change = CloseWon(deal=deal_id, amount=_amount(amount) if amount else UNSET, override=override)
    _deal_action(ctx, as_user, change, f"deal {deal_id} won")


@deals.command("lost")
@click.argument("deal_id", type=int)
@click.option("--reason", required=True, help="Why it was lost (one of the configured reasons).")
@click.option("--competitor", default=None, help="Who won it instead.")
@as_option
@click.pass_context
def deals_lost(
    ctx: click.Context, deal_id: int, reason: str, competitor: str | None, as_user: str | None
) -> None:
    """Close deal DEAL_ID as lost, with the reason and the competitor."""
    from hub.deals.changes import CloseLost

    change = CloseLost(deal=deal_id, reason=reason, competitor=competitor)
    _deal_action(ctx, as_user, change, f"deal {deal_id} lost: {reason}")


@deals.command("reopen")
@click.argument("deal_id", type=int)
@click.option("--stage", default=None, help="Stage to reopen at (default: the first).")
@as_option
@click.pass_context
def deals_reopen(ctx: click.Context, deal_id: int, stage: str | None, as_user: str | None) -> None:
    """Reopen won or lost deal DEAL_ID."""
    from hub.deals.changes import Reopen

    _deal_action(ctx, as_user, Reopen(deal=deal_id, stage=stage), f"deal {deal_id} reopened")


@deals.command("show")
@click.argument("deal_id", type=int)
@as_option
@click.pass_context
def deals_show(ctx: click.Context, deal_id: int, as_user: str | None) -> None:
    """Deal DEAL_ID's card: contact, stage history, tasks, notes, activities, events."""
    from datetime import datetime

    from hub.api.records import contact_card, deal_card

    settings = _settings(ctx)
    show = _local(settings)

    async def go() -> tuple[Any, Any]:
        async with offline_hub(settings) as hub:
            actor = await acting_as(hub, as_user)
            owner = actor.user_id if actor.limited_to_own else None
            async with hub.store.read() as conn:
                card = await deal_card(conn, deal_id, owner)
                person = (
                    await contact_card(conn, card["contact_id"], None)
                    if card and card["contact_id"]
                    else None
                )
            return card, person

    card, person = _run(go())
    if card is None:
        click.echo(f"no deal {deal_id}", err=True)
        sys.exit(1)

    def at(value: str | None) -> str:
        return show(datetime.fromisoformat(value)) if value else "-"

    click.echo(f"deal {card['id']}: {card['title']}")
    click.echo(
        f"  {card['pipeline']} / {card['stage_name']} ({card['status']}), "
        f"owner {card['owner'] or '-'}, amount {card['amount'] or '-'} {card['currency'] or ''}"
    )
    if card["loss_reason"]:
        click.echo(f"  lost: {card['loss_reason']}; competitor {card['competitor'] or '-'}")
    if person is not None:
        click.echo(f"  contact {person['id']}: {person['name'] or '-'}")
        for point in person["phones"] + person["emails"]:
            shown = point["value"]
            if point["normalized"] != shown:
                shown += f"  ({point['normalized']})"
            click.echo(f"    {shown}")
    click.echo("stage history:")
    for step in card["stage_history"]:
        skipped = f"  (правило обойдено: {step['override']})" if step["override"] else ""
        click.echo(
            f"  {at(step['at'])}  {step['from'] or '-'} → {step['stage']}  {step['by'] or ''}"
            + skipped
        )
    click.echo("tasks:")
    for task in card["tasks"]:
        state = f"done {at(task['done_at'])}" if task["done_at"] else f"due {at(task['due_at'])}"
        result = f" — {task['result']}" if task["result"] else ""
        click.echo(f"  #{task['id']} {task['title']} ({state}){result}")
    click.echo("notes:")
    for note in card["notes"]:
        click.echo(f"  {at(note['created_at'])}  {note['author'] or '-'}: {note['text']}")
    click.echo("activities:")
    for activity in card["activities"]:
        result = activity["payload"].get("result")
        click.echo(
            f"  {at(activity['occurred_at'])}  {activity['kind']} {activity['direction']}: "
            f"{activity['summary']}" + (f" — {result}" if result else "")
        )
    click.echo("events:")
    for event in card["events"]:
        actor = event["payload"].get("actor", {})
        click.echo(f"  {at(event['occurred_at'])}  {event['type']}  by {actor.get('name', '-')}")


# -- mail from a deal ------------------------------------------------------------------------
#
# The core does not know the mail channel. A notifier (``hub_notifiers``) that sends letters a
# person writes on a deal says so with ``deal_letters = "email"`` (the kind of activity it
# records) and ``async draft(conn, deal_id, {"subject", "text", "to"}, viewer)``, which checks
# the body as its HTTP route does and returns the letter as changes for the writer (the
# activity with its Message-ID and the outbox row), plus ``to``, ``message_id`` and ``key``
# (the outbox row's). The command writes those changes through the writer, as the route does;
# the hub's sender delivers the row once.

LETTER = "email"
_FIELDS = {"subject": "--subject", "text": "--text", "to": "--to"}


@dataclasses.dataclass(frozen=True, slots=True)
class _Queued:
    """A letter in the outbox: where to, its Message-ID, the outbox row's key."""

    to: str
    message_id: str
    key: str
    again: bool = False  # queued by an earlier run with the same --key


class _NoMailer(Exception):
    """No enabled plugin sends letters from deals."""


@deals.command("email")
@click.argument("deal_id", type=int)
@click.option("--subject", required=True, help="The letter's subject, one line.")
@click.option("--text", default=None, help="The letter's text (else --text-file or stdin).")
@click.option(
    "--text-file",
    type=click.File("r", encoding="utf-8"),
    default=None,
    metavar="FILE",
    help="Read the text from FILE ('-': stdin).",
)
@click.option(
    "--to", default=None, metavar="ADDRESS", help="Write here, not to the contact's email."
)
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=None,
    metavar="SECONDS",
    help="Wait this long for the running daemon to send it, and say how it went.",
)
@click.option(
    "--key",
    default=None,
    metavar="KEY",
    help="Send once per KEY: run again with it (a script's retry), the letter is not sent again.",
)
@as_option
@click.pass_context
def deals_email(
    ctx: click.Context,
    deal_id: int,
    subject: str,
    text: str | None,
    text_file: Any,
    to: str | None,
    wait: float | None,
    key: str | None,
    as_user: str | None,
) -> None:
    """Write to deal DEAL_ID's contact, as POST /api/v1/deals/{id}/emails does.

    The letter is recorded on the deal as an outgoing email with its Message-ID (the
    client's reply comes back to the deal) and queued in the notification outbox, in one
    transaction; the running daemon sends it once (a send cut off by a crash is held for
    review, never repeated). Exits 1 for a deal that does not exist (or, with --as a
    manager, is not theirs), a contact without an email and no --to, or when sending mail
    is not configured; with --wait, also when the letter failed or is not sent in time.
    With --key, a second run with the same key and letter says it was queued already and
    sends nothing (as the API's Idempotency-Key; the same key with another letter exits 1).
    """
    from pydantic import ValidationError

    from hub.deals import NotFound, Refused
    from hub.store.requests import MAX_KEY, Answer, KeyReused, answered, remember

    if text is not None and text_file is not None:
        raise click.UsageError("give the text once: --text or --text-file")
    if text is None:
        stream = text_file or click.open_file("-", encoding="utf-8")
        if text_file is None and stream.isatty():
            raise click.UsageError("the letter's text: --text, --text-file FILE or on stdin")
        text = stream.read()
    settings = _settings(ctx)
    fields = {"subject": subject, "text": text, "to": to}

    async def go() -> tuple[Any, dict[str, Any] | None]:
        async with offline_hub(settings) as hub:
            actor = await acting_as(hub, as_user)
            mailers = [
                n
                for n in hub._collect_notifiers().values()
                if getattr(n, "deal_letters", None) == LETTER
            ]
            if not mailers:
                raise _NoMailer
            viewer = actor.user_id if actor.limited_to_own else None
            async with hub.store.read() as conn:
                letter = await mailers[0].draft(conn, deal_id, fields, viewer)
            queued = _Queued(letter.to, letter.message_id, letter.key)
            principal = f"cli:{actor.name}"
            async with hub.store.write() as conn:
                seen = await answered(conn, principal, key, fingerprint) if key else None
                if seen is not None:
                    queued = _Queued(**orjson.loads(seen.body), again=True)
                else:
                    await hub.deals.apply_in(conn, letter.changes, actor)
                    if key:
                        body = orjson.dumps(
                            {"to": queued.to, "message_id": queued.message_id, "key": queued.key}
                        )
                        await remember(conn, principal, key, fingerprint, Answer(0, body.decode()))
            outcome = await _outcome(hub.store, queued.key, wait) if wait is not None else None
            return queued, outcome

    if key is not None and not 0 < len(key) <= MAX_KEY:
        raise click.BadParameter(f"1 to {MAX_KEY} characters", param_hint="--key")
    fingerprint = hashlib.sha256(
        orjson.dumps({"deal": deal_id, **fields, "as": as_user}, option=orjson.OPT_SORT_KEYS)
    ).hexdigest()
    try:
        letter, outcome = _run(go())
    except KeyReused:
        click.echo(f"--key {key} was used for another letter; nothing sent", err=True)
        sys.exit(1)
    except ValidationError as error:
        problem = error.errors()[0]
        where = str(problem["loc"][0]) if problem["loc"] else ""
        raise click.BadParameter(
            problem["msg"].removeprefix("Value error, "), param_hint=_FIELDS.get(where, where)
        ) from None
    except NotFound:
        click.echo(f"no deal {deal_id}", err=True)
        sys.exit(1)
    except Refused as refused:
        for refusal in refused.refusals:
            if refusal.change is None and refusal.field == "to":
                click.echo(
                    f"deal {deal_id}: the contact has no email; give one with --to", err=True
                )
            else:
                click.echo(f"refused: {refusal.reason}", err=True)
        sys.exit(1)
    except _NoMailer:
        click.echo(
            "sending mail is not configured: no enabled plugin sends letters from deals "
            "(the mail channel's SMTP account; see `hub plugins`)",
            err=True,
        )
        sys.exit(1)
    queued = "already queued (--key)" if letter.again else "queued"
    click.echo(f"deal {deal_id}: letter to {letter.to} {queued}, Message-ID <{letter.message_id}>")
    if outcome is None:
        click.echo("the running daemon sends it (`hub notifications list` shows how it went)")
        return
    state, error = outcome["state"], outcome["last_error"]
    if state == "sent":
        click.echo(f"sent to {letter.to}")
        return
    if state in ("failed", "review"):
        click.echo(f"not sent ({state}): {error or '-'}", err=True)
    else:
        click.echo(
            f"still {state} after {wait:g} s"
            + (f" ({error})" if error else "")
            + ": is the daemon running? (`hub notifications list`)",
            err=True,
        )
    sys.exit(1)


async def _outcome(store: Any, key: str, wait: float) -> dict[str, Any]:
    """The outbox row's state once it is sent, failed or held, or after ``wait`` seconds."""
    import asyncio

    from hub.store.models import Notification

    loop = asyncio.get_running_loop()
    until = loop.time() + wait
    while True:
        async with store.read() as conn:
            row = (
                await conn.execute(
                    select(Notification.state, Notification.last_error).where(
                        Notification.key == key
                    )
                )
            ).one()
        if row.state in ("sent", "failed", "review") or loop.time() >= until:
            return {"state": row.state, "last_error": row.last_error}
        await asyncio.sleep(min(0.5, max(0.0, until - loop.time())))
