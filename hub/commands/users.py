"""`hub users`: The sales team."""

from __future__ import annotations

from typing import Any

import click
from sqlalchemy import func, select

from hub.commands.common import (
    _run,
    _settings,
    _table,
    _with_store,
)


@click.group()
def users() -> None:
    """The sales team (configured under [[users]])."""


@users.command("list")
@click.pass_context
def users_list(ctx: click.Context) -> None:
    """Users with role, active flag, extension and open deals."""
    from hub.store.models import Deal, User

    settings = _settings(ctx)

    async def go(store: Any) -> list[list[Any]]:
        open_deals = (
            select(func.count())
            .where(Deal.owner_id == User.id, Deal.status == "open")
            .scalar_subquery()
        )
        async with store.read() as conn:
            rows = await conn.execute(
                select(
                    User.id,
                    User.email,
                    User.name,
                    User.role,
                    User.active,
                    User.extension,
                    open_deals,
                ).order_by(User.id)
            )
            return [list(r) for r in rows]

    rows = _run(_with_store(settings, go))
    _table(
        ["id", "email", "name", "role", "active", "ext", "open deals"],
        [[*r[:4], "yes" if r[4] else "no", *r[5:]] for r in rows],
    )
