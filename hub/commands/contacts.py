"""`hub contacts`: Contacts: list, show, merge, unmerge."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Any

import click
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
def contacts() -> None:
    """Contacts: merge duplicates, undo a merge."""


@contacts.command("list")
@click.option("--find", default=None, help="A phone in any format, an email, or part of a name.")
@click.option("--limit", type=int, default=50, show_default=True)
@click.pass_context
def contacts_list(ctx: click.Context, find: str | None, limit: int) -> None:
    """Contacts, newest first, with their phones, emails, owner and open deals."""
    from hub.domain.normalize import InvalidPoint, normalize_email, normalize_phone
    from hub.store.models import Contact, ContactPoint, Deal, User

    settings = _settings(ctx)

    async def go(store: Any) -> list[list[Any]]:
        open_deals = (
            select(func.count())
            .where(Deal.contact_id == Contact.id, Deal.status == "open")
            .scalar_subquery()
        )
        stmt = (
            select(
                Contact.id,
                Contact.name,
                Contact.id,
                User.email,
                open_deals,
                Contact.city,
                Contact.segment,
            )
            .outerjoin(User, User.id == Contact.owner_id)
            .order_by(Contact.id.desc())
            .limit(limit)
        )
        if find:
            keys = []
            for normalize in (
                lambda v: normalize_phone(v, settings.hub.default_region),
                normalize_email,
            ):
                try:
                    keys.append(normalize(find))
                except InvalidPoint:
                    continue
            holders = select(ContactPoint.contact_id).where(ContactPoint.normalized.in_(keys))
            stmt = stmt.where(Contact.id.in_(holders) | Contact.name.ilike(f"%{find}%"))
        async with store.read() as conn:
            rows = [list(r) for r in await conn.execute(stmt)]
            found = await conn.execute(
                select(ContactPoint.contact_id, ContactPoint.value, ContactPoint.normalized)
                .where(ContactPoint.contact_id.in_([r[0] for r in rows]))
                .order_by(ContactPoint.id)
            )
            shown: dict[int, list[str]] = {}
            for contact_id, value, normalized in found:
                # As the client entered it, with the normalized form where it differs.
                text = value if value == normalized else f"{value} ({normalized})"
                shown.setdefault(contact_id, []).append(text)
        for row in rows:
            row[2] = ", ".join(shown.get(row[0], []))
        return rows

    rows = _run(_with_store(settings, go))
    _table(["id", "name", "phones and emails", "owner", "open deals", "city", "segment"], rows)


# What a legacy base says of a person besides phones and emails (imported into ``custom``).
IDENTIFYING_FIELDS = (
    ("дата рождения", "birth_date"),
    ("адрес", "address"),
    ("индекс", "postcode"),
    ("ИНН", "personal_tax_id"),
    ("СНИЛС", "snils"),
)


@contacts.command("show")
@click.argument("contact_id", type=int)
@click.pass_context
def contacts_show(ctx: click.Context, contact_id: int) -> None:
    """One contact: phones, emails, ids in other systems, consent, deals, campaigns."""
    from hub.api.records import contact_card
    from hub.domain.person_ids import format_snils

    settings = _settings(ctx)

    async def go(store: Any) -> dict[str, Any] | None:
        async with store.read() as conn:
            return await contact_card(conn, contact_id, None)

    card = _run(_with_store(settings, go))
    if card is None:
        click.echo(f"no contact {contact_id}", err=True)
        sys.exit(1)
    local = _local(settings)

    def at(text: str | None) -> str:
        return local(datetime.fromisoformat(text)) if text else ""

    click.echo(f"contact {card['id']}: {card['name'] or '(без имени)'}")
    for label, key in (("город", "city"), ("сегмент", "segment")):
        if card[key]:
            click.echo(f"  {label}: {card[key]}")
    custom = card["custom"] or {}
    for label, key in IDENTIFYING_FIELDS:
        if custom.get(key):
            value = format_snils(custom[key]) if key == "snils" else custom[key]
            if key == "birth_date":
                value = ".".join(reversed(value.split("-")))  # 1985-03-12 → 12.03.1985
            click.echo(f"  {label}: {value}")
    for label, kind in (("телефоны", "phones"), ("email", "emails")):
        if card[kind]:
            click.echo(f"  {label}: " + ", ".join(p["value"] for p in card[kind]))
    if card["external_ids"]:
        click.echo("  во внешних системах: " + ", ".join(i["ref"] for i in card["external_ids"]))
    for consent in card["consents"]:
        word = "согласие" if consent["granted"] else "отказ"
        when = at(consent["recorded_at"])
        click.echo(f"  {consent['channel']}: {word} ({consent['source']}, {when})")
    if card["deals"]:
        _table(
            ["deal", "title", "stage", "status", "amount"],
            [[d["id"], d["title"], d["stage_name"], d["status"], d["amount"] or ""]
             for d in card["deals"]],
        )  # fmt: skip
    for message in card["campaigns"]:
        when = at(message["sent_at"]) or message["skip_reason"] or ""
        what = f"«{message['name']}» ({message['channel']})"
        click.echo(f"  рассылка {what}: {message['state']} {when}")


@contacts.command("merge")
@click.argument("keep", type=int)
@click.argument("other", type=int)
@as_option
@click.pass_context
def contacts_merge(ctx: click.Context, keep: int, other: int, as_user: str | None) -> None:
    """Merge contact OTHER into KEEP: its deals, tasks, notes, history, phones and emails move.

    KEEP's filled fields win, OTHER's fill its blanks. Undo with `hub contacts unmerge ID`.
    """
    from hub.deals.changes import MergeContacts

    async def go() -> int | None:
        async with offline_hub(_settings(ctx)) as hub:
            change = MergeContacts(keep=keep, other=other)
            await hub.deals.apply([change], await acting_as(hub, as_user))
            return change.id

    merge_id = change_or_exit(go())
    click.echo(
        f"merged contact {other} into {keep} (merge {merge_id}; undo: "
        f"hub contacts unmerge {merge_id})"
    )


@contacts.command("unmerge")
@click.argument("merge_id", type=int)
@as_option
@click.pass_context
def contacts_unmerge(ctx: click.Context, merge_id: int, as_user: str | None) -> None:
    """Undo merge MERGE_ID: the other contact (or company) comes back with what it had."""
    from hub.deals.changes import Unmerge

    async def go() -> dict[str, Any]:
        async with offline_hub(_settings(ctx)) as hub:
            change = Unmerge(merge_id=merge_id)
            await hub.deals.apply([change], await acting_as(hub, as_user))
            return change.restored

    result = change_or_exit(go())
    click.echo(f"restored {result['kind']} {result['other_id']} beside {result['keep_id']}")
