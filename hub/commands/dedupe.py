"""`hub dedupe`: Duplicate contacts: scan, list, dismiss."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from sqlalchemy import select

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
from hub.deals import Actor


@click.group()
def dedupe() -> None:
    """Duplicate contacts: find them, review them."""


@dedupe.command("scan")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Also write one CSV row per pair: id_a,id_b,score,reasons.",
)
@click.pass_context
def dedupe_scan(ctx: click.Context, out: Path | None) -> None:
    """Compare contacts sharing a phone or email; list likely duplicates for review."""
    import time

    from hub.dedupe import save_for_review, scan, write_csv

    settings = _settings(ctx)
    started = time.perf_counter()

    async def go() -> tuple[list[Any], int]:
        async with offline_hub(settings) as hub:
            pairs, compared = await scan(hub.store, settings, hub.matchers())
            await save_for_review(hub.deals, pairs, Actor("cli", "dedupe scan"))
            return pairs, compared

    pairs, compared = _run(go())
    if out is not None:
        write_csv(pairs, out)
    likely = sum(1 for p in pairs if p.score >= settings.matching.join)
    click.echo(
        f"compared {compared} pairs sharing a phone or email in "
        f"{time.perf_counter() - started:.1f} s: {len(pairs)} for review "
        f"({likely} at or above join {settings.matching.join})"
        + (f", written to {out}" if out else "")
    )


@dedupe.command("list")
@click.option("--limit", type=int, default=50, show_default=True)
@click.pass_context
def dedupe_list(ctx: click.Context, limit: int) -> None:
    """Open possible duplicates, from intake and scans, best first."""
    from hub.store.models import Contact, DuplicateCandidate

    settings = _settings(ctx)

    async def go(store: Any) -> list[list[Any]]:
        a = Contact.__table__.alias("a")
        b = Contact.__table__.alias("b")
        d = DuplicateCandidate.__table__
        stmt = (
            select(
                d.c.id,
                d.c.contact_id,
                a.c.name,
                d.c.other_id,
                b.c.name,
                d.c.score,
                d.c.origin,
                d.c.reasons,
            )
            .join(a, a.c.id == d.c.contact_id)
            .join(b, b.c.id == d.c.other_id)
            .where(d.c.status == "open")
            .order_by(d.c.score.desc(), d.c.id)
            .limit(limit)
        )
        async with store.read() as conn:
            return [list(r) for r in await conn.execute(stmt)]

    rows = _run(_with_store(settings, go))
    _table(
        ["pair", "contact", "name", "maybe same as", "name", "score", "from", "why"],
        [[*r[:5], f"{r[5]:.2f}", r[6], " + ".join(r[7]["reasons"])] for r in rows],
    )


@dedupe.command("dismiss")
@click.argument("pair_id", type=int)
@as_option
@click.pass_context
def dedupe_dismiss(ctx: click.Context, pair_id: int, as_user: str | None) -> None:
    """Mark review pair PAIR_ID as two different clients; it leaves the review list."""
    from hub.deals.changes import DismissDuplicate

    async def go() -> None:
        async with offline_hub(_settings(ctx)) as hub:
            await hub.deals.apply(
                [DismissDuplicate(pair_id=pair_id)], await acting_as(hub, as_user)
            )

    change_or_exit(go())
    click.echo(f"pair {pair_id} dismissed: not a duplicate")
