"""`hub companies`: Companies: list, find twins, merge."""

from __future__ import annotations

from typing import Any

import click
from sqlalchemy import func, select

from hub.commands.common import (
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
def companies() -> None:
    """Companies: merge duplicates (undo with `hub contacts unmerge ID`)."""


@companies.command("list")
@click.option("--find", default=None, help="A tax id (ИНН) or a name in any spelling.")
@click.option("--limit", type=int, default=50, show_default=True)
@click.pass_context
def companies_list(ctx: click.Context, find: str | None, limit: int) -> None:
    """Companies, newest first, with their tax id, contacts and open deals."""
    from hub.api.records import company_search
    from hub.store.models import Company, Contact, Deal

    settings = _settings(ctx)

    async def go(store: Any) -> list[list[Any]]:
        people = select(func.count()).where(Contact.company_id == Company.id).scalar_subquery()
        deals = (
            select(func.count())
            .where(Deal.company_id == Company.id, Deal.status == "open")
            .scalar_subquery()
        )
        stmt = (
            select(Company.id, Company.name, Company.tax_id, Company.city, people, deals)
            .order_by(Company.id.desc())
            .limit(limit)
        )
        if find:
            stmt = stmt.where(company_search(find))
        async with store.read() as conn:
            return [list(r) for r in await conn.execute(stmt)]

    rows = _run(_with_store(settings, go))
    _table(["id", "name", "tax id", "city", "contacts", "open deals"], rows)


@companies.command("duplicates")
@click.pass_context
def companies_duplicates(ctx: click.Context) -> None:
    """Companies the store holds twice: the same tax id, or the same name with a phone or
    email their contacts share. Nothing is changed: merge with `hub companies merge`."""
    from hub.company_duplicates import company_twins

    settings = _settings(ctx)

    async def go(store: Any) -> list[Any]:
        async with store.read() as conn:
            return await company_twins(conn)

    twins = _run(_with_store(settings, go))
    _table(
        ["keep", "name", "merge in", "name", "why"],
        [[t.keep, t.keep_name, t.other, t.other_name, t.describe()] for t in twins],
    )
    if twins:
        click.echo(f"{len(twins)} pairs; merge one with: hub companies merge KEEP OTHER")


@companies.command("merge")
@click.argument("keep", type=int)
@click.argument("other", type=int)
@as_option
@click.pass_context
def companies_merge(ctx: click.Context, keep: int, other: int, as_user: str | None) -> None:
    """Merge company OTHER into KEEP: its contacts and deals move to KEEP."""
    from hub.deals.changes import MergeCompanies

    async def go() -> int | None:
        async with offline_hub(_settings(ctx)) as hub:
            change = MergeCompanies(keep=keep, other=other)
            await hub.deals.apply([change], await acting_as(hub, as_user))
            return change.id

    merge_id = change_or_exit(go())
    click.echo(
        f"merged company {other} into {keep} (merge {merge_id}; undo: "
        f"hub contacts unmerge {merge_id})"
    )
