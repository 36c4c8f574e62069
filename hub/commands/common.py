"""What every ``hub`` command shares: settings, the store, the writer, tables, times."""

from __future__ import annotations

import asyncio
import getpass
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo

import click
from sqlalchemy import select

from hub.config import ConfigError, Settings, load_settings
from hub.deals import Actor, NotFound, Refused

if TYPE_CHECKING:
    from hub.context import Hub

T = TypeVar("T")


def _run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def _settings(ctx: click.Context) -> Settings:
    path = ctx.obj["config"]
    try:
        return load_settings(path)
    except ConfigError as error:
        click.echo(f"invalid configuration ({path}):\n{error}", err=True)
        sys.exit(2)


def _local(settings: Settings) -> Callable[[datetime | None], str]:
    zone = ZoneInfo(settings.hub.timezone)

    def show(value: datetime | None) -> str:
        return value.astimezone(zone).strftime("%Y-%m-%d %H:%M") if value else "-"

    return show


def _table(headers: list[str], rows: list[list[Any]]) -> None:
    cells = [[("" if c is None else str(c)) for c in row] for row in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)
    ]
    click.echo("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)))
    for row in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _plugin_matchers(settings: Settings) -> list[Any]:
    """The matchers enabled plugins add, so offline commands judge as the daemon does."""
    from hub.context import Hub

    return Hub(settings, start_workers=False).matchers()


async def _with_store(settings: Settings, work: Callable[[Any], Coroutine[Any, Any, T]]) -> T:
    from hub.store import Store

    store = Store(settings.store_url)
    try:
        await store.upgrade()
        return await work(store)
    finally:
        await store.close()


@asynccontextmanager
async def offline_hub(settings: Settings) -> AsyncIterator[Hub]:
    """The hub without its daemon: the store, the catalog and the writer (with the
    enabled plugins' guards), for commands that change the store."""
    from hub.context import Hub
    from hub.store.ops import load_catalog, sync_config

    hub = Hub(settings, start_workers=False)
    try:
        await hub.store.upgrade()
        async with hub.store.read() as conn:
            hub.catalog = await load_catalog(conn, settings)
        if set(settings.pipelines) - set(hub.catalog.pipelines):
            # The daemon never ran on this store: bring its pipelines and users in.
            async with hub.store.write() as conn:
                hub.catalog = await sync_config(conn, settings)
        hub.gateways = hub._collect_gateways()
        await hub.campaigns.load_key()
        yield hub
    finally:
        await hub.store.close()


async def acting_as(hub: Hub, email: str | None) -> Actor:
    """The user a command acts for (``--as EMAIL``), or the person at the terminal."""
    from hub.store.models import User

    if email is None:
        return Actor("cli", getpass.getuser())
    async with hub.store.read() as conn:
        row = (
            await conn.execute(
                select(User.id, User.email, User.role, User.active).where(
                    User.email == email.strip().lower()
                )
            )
        ).first()
    if row is None or not row.active:
        raise click.UsageError(f"no active user {email} (see `hub users list`)")
    return Actor.user(row.id, row.email, row.role)


def change_or_exit(work: Coroutine[Any, Any, T]) -> T:
    """Run a change; a refusal or a missing record is a message and exit code 1."""
    try:
        return _run(work)
    except Refused as refused:
        click.echo("refused:", err=True)
        for refusal in refused.refusals:
            click.echo(f"  - {refusal.reason}", err=True)
        sys.exit(1)
    except NotFound as missing:
        click.echo(f"{missing}", err=True)
        sys.exit(1)


as_option = click.option(
    "--as", "as_user", default=None, metavar="EMAIL", help="Act as this user (their role applies)."
)
