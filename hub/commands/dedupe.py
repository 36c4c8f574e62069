"""`hub dedupe`: Duplicate contacts: scan, list, show, dismiss; the match model: train, show."""

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
    help="Also write one CSV row per pair: id_a,id_b,score,reasons,cluster.",
)
@click.pass_context
def dedupe_scan(ctx: click.Context, out: Path | None) -> None:
    """Compare contacts sharing a phone, email, name key, birth date or address; list likely
    duplicates for review, linked into clusters; and companies held twice (the same tax id,
    or the same name with a phone or email their contacts share)."""
    import time

    from hub.company_duplicates import company_twins
    from hub.dedupe import save_for_review, scan, write_csv

    settings = _settings(ctx)
    started = time.perf_counter()

    async def go() -> tuple[list[Any], int, list[Any]]:
        async with offline_hub(settings) as hub:
            pairs, compared = await scan(hub.store, settings, hub.matchers())
            await save_for_review(hub.deals, pairs, Actor("cli", "dedupe scan"))
            async with hub.store.read() as conn:
                firms = await company_twins(conn)
            return pairs, compared, firms

    pairs, compared, firms = _run(go())
    if out is not None:
        write_csv(pairs, out)
    likely = sum(1 for p in pairs if p.score >= settings.matching.join)
    clusters: dict[int, set[int]] = {}
    for p in pairs:
        if p.cluster is not None:
            clusters.setdefault(p.cluster, set()).update((p.a, p.b))
    apart = sum(1 for p in pairs if p.kept_apart)
    click.echo(
        f"compared {compared} pairs sharing a phone, email, name key, birth date or address in "
        f"{time.perf_counter() - started:.1f} s: {len(pairs)} for review "
        f"({likely} at or above join {settings.matching.join})"
        + (f", written to {out}" if out else "")
    )
    click.echo(
        f"{len(clusters)} clusters proposed as merges "
        f"({sum(len(c) for c in clusters.values())} contacts); "
        f"{apart} strong pairs kept apart: a record of one side differs from the other"
    )
    if firms:
        click.echo(f"{len(firms)} companies held twice (merge: hub companies merge KEEP OTHER):")
        _table(
            ["keep", "name", "merge in", "name", "why"],
            [[t.keep, t.keep_name, t.other, t.other_name, t.describe()] for t in firms],
        )
    else:
        click.echo("no company held twice")


@dedupe.command("train")
@click.option("--iterations", type=int, default=50, show_default=True, help="EM iterations.")
@click.pass_context
def dedupe_train(ctx: click.Context, iterations: int) -> None:
    """Learn the match model from the store (u from random pairs and counts, m by EM over
    candidate pairs) and write it to matching.model."""
    from hub.dedupe import train
    from hub.domain.weights import model_path

    settings = _settings(ctx)
    path = model_path(settings)
    if path is None:
        raise click.UsageError("matching.model is relative and there is no config file")

    async def go() -> Any:
        async with offline_hub(settings) as hub:
            return await train(hub.store, settings, iterations=iterations)

    result = _run(go())
    result.model.save(path)
    click.echo(
        f"model version {result.model.version} written to {path}: {result.model.contacts} "
        f"contacts, {result.pairs} candidate pairs ({result.dismissed} dismissed), "
        f"{result.random_pairs} random pairs; {result.share:.1%} of candidate pairs look "
        f"like one person; {result.model.iterations} EM iterations in {result.seconds:.1f} s"
    )
    if result.kept:
        click.echo(
            "m kept at the defaults (EM did not tell people apart on them here): "
            + ", ".join(result.kept)
        )


@dedupe.command("model")
@click.pass_context
def dedupe_model(ctx: click.Context) -> None:
    """Print the match model: per field and level, m, u and the match weight in bits."""
    from hub.dedupe import describe_model
    from hub.domain.weights import load_model, model_path

    settings = _settings(ctx)
    path = model_path(settings)
    model = load_model(path)
    for line in describe_model(model):
        click.echo(line)
    if path is not None:
        click.echo(f"file {path}" + ("" if path.exists() else " (not written yet)"))
    _table(["field", "level", "reason", "m", "u", "weight", "frequencies"], model.table())
    click.echo(
        f"join at match probability {settings.matching.join}, "
        f"review from {settings.matching.review}"
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
        [[*r[:5], f"{r[5]:.2f}", r[6], ", ".join(r[7]["reasons"])] for r in rows],
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


@dedupe.command("show")
@click.argument("pair_id", type=int)
@click.pass_context
def dedupe_show(ctx: click.Context, pair_id: int) -> None:
    """Review pair PAIR_ID: both records field by field, and the partial weights (in bits)
    that made its score, strongest first; then how to merge or dismiss it."""
    import sys

    from hub.api.review import PairGone, pair_review

    settings = _settings(ctx)

    async def go(store: Any) -> dict[str, Any] | None:
        async with store.read() as conn:
            return await pair_review(conn, pair_id)

    try:
        review = _run(_with_store(settings, go))
    except PairGone as gone:
        click.echo(f"{gone}: the pair is stale (run `hub dedupe scan`)", err=True)
        sys.exit(1)
    if review is None:
        click.echo(f"no duplicate pair {pair_id}", err=True)
        sys.exit(1)
    a, b = review["contacts"]
    click.echo(
        f"pair {pair_id}: contact {a['id']} ~ contact {b['id']}, match probability "
        f"{review['score']:.2f} ({review['origin']}, {review['status']})"
    )
    _table(
        ["field", f"contact {a['id']}", f"contact {b['id']}", ""],
        [
            [row["label"], _shown(row["a"]), _shown(row["b"]), row["verdict"]]
            for row in review["side_by_side"]
        ],
    )
    click.echo("why:")
    weighed = sorted(
        review["weights"], key=lambda w: -abs(w["bits"]) if w["bits"] is not None else 0
    )
    for weight in weighed:
        bits = "" if weight["bits"] is None else f"{weight['bits']:+.1f}".replace("-", "−")
        click.echo(f"  {bits:>6}  {weight['reason']}")
    if review["status"] == "open":
        keep, other = sorted((a["id"], b["id"]))
        click.echo(
            f"one person: hub contacts merge {keep} {other}; "
            f"two people: hub dedupe dismiss {pair_id}"
        )


def _shown(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "-"
    return str(value)
