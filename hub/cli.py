"""The ``hub`` command: run the daemon, check the config, look into the store."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import click
import orjson
from sqlalchemy import func, select

from hub.config import ConfigError, Settings, default_config_path, load_settings
from hub.logging import configure_logging

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


@click.group()
@click.option(
    "--config",
    "config",
    type=click.Path(path_type=Path),
    default=None,
    help="Configuration file (default: $HUB_CONFIG, ./config.toml, ./config.example.toml).",
)
@click.pass_context
def main(ctx: click.Context, config: Path | None) -> None:
    """crm-hub: lead channels in, clean deals out."""
    ctx.ensure_object(dict)
    ctx.obj["config"] = config or default_config_path()


@main.command()
@click.option("--host", default=None, help="Address to listen on (default: hub.host).")
@click.option("--port", type=int, default=None, help="Port to listen on (default: hub.port).")
@click.pass_context
def run(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Run the daemon until SIGTERM or Ctrl-C."""
    from aiohttp import web

    from hub.app import build_app
    from hub.context import Hub

    settings = _settings(ctx)
    configure_logging(settings.log.level, settings.log.format)
    try:
        hub = Hub(settings)
    except ConfigError as error:
        click.echo(f"invalid configuration ({ctx.obj['config']}):\n{error}", err=True)
        sys.exit(2)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - optional speed-up
        uvloop = None
    import structlog

    address = (host or settings.hub.host, port or settings.hub.port)
    structlog.get_logger("hub").info(
        "hub_listening", url=f"http://{address[0]}:{address[1]}", config=str(ctx.obj["config"])
    )
    web.run_app(
        build_app(hub),
        host=address[0],
        port=address[1],
        shutdown_timeout=settings.hub.shutdown_timeout.total_seconds(),
        access_log=None,
        print=None,
        loop=uvloop.new_event_loop() if uvloop else None,
        handle_signals=True,
    )


@main.group()
def config() -> None:
    """Check the configuration."""


@config.command("check")
@click.argument("file", type=click.Path(path_type=Path), required=False)
@click.pass_context
def config_check(ctx: click.Context, file: Path | None) -> None:
    """Validate FILE (default: the file `hub run` would use) with every plugin's section."""
    from hub.plugins import PluginHost

    path = file or ctx.obj["config"]
    try:
        settings = load_settings(path)
        PluginHost(settings).configure(None)
    except ConfigError as error:
        click.echo(f"invalid configuration ({path}):\n{error}", err=True)
        sys.exit(2)
    click.echo(f"{path}: ok ({len(settings.pipelines)} pipelines, {len(settings.users)} users)")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def plugins(ctx: click.Context, as_json: bool) -> None:
    """List installed plugins, where each comes from, and its state.

    With the daemon running on this config, shows the live states from its
    /healthz; otherwise what the configuration enables.
    """
    from hub.plugins import PluginHost

    settings = _settings(ctx)
    summary = _live_plugins(settings)
    if summary is None:
        host = PluginHost(settings)
        try:
            host.configure(None)
        except ConfigError as error:
            click.echo(f"invalid configuration:\n{error}", err=True)
            sys.exit(2)
        summary = [
            {**r, "state": "enabled (daemon not running)" if r["enabled"] else r["state"]}
            for r in host.summary()
        ]
    if as_json:
        click.echo(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode())
        return
    _table(
        ["name", "origin", "enabled", "state", "error"],
        [
            [p["name"], p["origin"], "yes" if p["enabled"] else "no", p["state"], p["error"]]
            for p in summary
        ],
    )


def _live_plugins(settings: Settings) -> list[dict[str, Any]] | None:
    import urllib.request

    host = settings.hub.host if settings.hub.host not in ("0.0.0.0", "::") else "127.0.0.1"
    try:
        with urllib.request.urlopen(
            f"http://{host}:{settings.hub.port}/healthz", timeout=1
        ) as response:
            return orjson.loads(response.read())["plugins"]
    except Exception:
        return None


@main.group()
def db() -> None:
    """The store's schema."""


@db.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Apply migrations (also done at every start-up)."""
    from hub.store import Store

    settings = _settings(ctx)

    async def go() -> str | None:
        store = Store(settings.store_url)
        try:
            await store.upgrade()
            return await store.current_revision()
        finally:
            await store.close()

    click.echo(f"store at revision {_run(go())}")


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


@main.group()
def deals() -> None:
    """Deals in the store."""


@deals.command("list")
@click.option("--status", type=click.Choice(["open", "won", "lost"]), default=None)
@click.option("--owner", default=None, help="Owner's email.")
@click.option("--limit", type=int, default=50, show_default=True)
@click.pass_context
def deals_list(ctx: click.Context, status: str | None, owner: str | None, limit: int) -> None:
    """The newest deals with stage, owner, contact phone and open tasks."""
    from hub.store.models import Contact, ContactPoint, Deal, Stage, Task, User

    settings = _settings(ctx)
    show = _local(settings)

    async def go(store: Any) -> list[list[Any]]:
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
        async with store.read() as conn:
            return [list(r) for r in await conn.execute(stmt)]

    rows = _run(_with_store(settings, go))
    _table(
        [
            "id",
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
        [[*r[:10], show(r[10])] for r in rows],
    )


@main.group()
def tasks() -> None:
    """Tasks: what each manager must do, and what is overdue."""


@tasks.command("list")
@click.option("--owner", default=None, help="Owner's email.")
@click.option("--overdue", is_flag=True, help="Only open tasks past their due time.")
@click.option("--all", "show_all", is_flag=True, help="Done tasks too.")
@click.option("--limit", type=int, default=50, show_default=True)
@click.pass_context
def tasks_list(
    ctx: click.Context, owner: str | None, overdue: bool, show_all: bool, limit: int
) -> None:
    """Open tasks by due time, soonest first, with their deal and owner."""
    from hub.store.models import Deal, Task, User
    from hub.store.types import utcnow

    settings = _settings(ctx)
    show = _local(settings)

    async def go(store: Any) -> list[list[Any]]:
        stmt = (
            select(Task.id, Task.title, Task.due_at, Task.done_at, User.email, Deal.id, Deal.title)
            .outerjoin(User, User.id == Task.owner_id)
            .outerjoin(Deal, Deal.id == Task.deal_id)
            .order_by(Task.due_at, Task.id)
            .limit(limit)
        )
        if not show_all:
            stmt = stmt.where(Task.done_at.is_(None))
        if overdue:
            stmt = stmt.where(Task.done_at.is_(None), Task.due_at < utcnow())
        if owner:
            stmt = stmt.where(User.email == owner.lower())
        async with store.read() as conn:
            return [list(r) for r in await conn.execute(stmt)]

    now = datetime.now(ZoneInfo("UTC"))
    rows = _run(_with_store(settings, go))
    _table(
        ["id", "task", "due", "state", "owner", "deal", "deal title"],
        [
            [
                r[0],
                r[1],
                show(r[2]),
                "done" if r[3] else ("OVERDUE" if r[2] < now else "open"),
                r[4],
                r[5],
                r[6],
            ]
            for r in rows
        ],
    )


@main.group()
def inbox() -> None:
    """Accepted inbound events: pending, done, dead, spam."""


@inbox.command("list")
@click.option("--dead", is_flag=True, help="Only events that failed every attempt.")
@click.option("--status", type=click.Choice(["pending", "done", "dead", "spam"]), default=None)
@click.option("--limit", type=int, default=50, show_default=True)
@click.pass_context
def inbox_list(ctx: click.Context, dead: bool, status: str | None, limit: int) -> None:
    """Inbound events, newest first, with their error if they failed."""
    from hub.store.models import InboxEvent

    settings = _settings(ctx)
    show = _local(settings)
    status = "dead" if dead else status

    async def go(store: Any) -> list[list[Any]]:
        t = InboxEvent.__table__
        stmt = (
            select(
                t.c.id,
                t.c.channel,
                t.c.status,
                t.c.attempts,
                t.c.received_at,
                t.c.last_error,
                t.c.result,
            )
            .order_by(t.c.id.desc())
            .limit(limit)
        )
        if status:
            stmt = stmt.where(t.c.status == status)
        async with store.read() as conn:
            return [list(r) for r in await conn.execute(stmt)]

    rows = _run(_with_store(settings, go))
    _table(
        ["id", "channel", "status", "attempts", "received", "deal", "error"],
        [[r[0], r[1], r[2], r[3], show(r[4]), (r[6] or {}).get("deal_id"), r[5]] for r in rows],
    )


@inbox.command("replay")
@click.argument("ids", type=int, nargs=-1, required=True)
@click.pass_context
def inbox_replay(ctx: click.Context, ids: tuple[int, ...]) -> None:
    """Queue dead (or spam) events IDS again; the running daemon picks them up."""
    from hub.intake import replay

    settings = _settings(ctx)
    done = _run(_with_store(settings, lambda store: replay(store, ids)))
    missing = sorted(set(ids) - set(done))
    if done:
        click.echo(f"requeued: {', '.join(map(str, done))}")
    if missing:
        click.echo(f"not dead or spam, left alone: {', '.join(map(str, missing))}", err=True)
        sys.exit(1)


@main.group()
def users() -> None:
    """The sales team (configured under [[users]])."""


@users.command("list")
@click.pass_context
def users_list(ctx: click.Context) -> None:
    """Users with role, active flag, extension and open deals."""
    from hub.store.models import Deal, User
    from hub.store.ops import sync_config

    settings = _settings(ctx)

    async def go(store: Any) -> list[list[Any]]:
        async with store.write() as conn:
            await sync_config(conn, settings)
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


@main.group()
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
        points = (
            select(
                func.group_concat(ContactPoint.value, ", ")
                if store.is_sqlite
                else func.string_agg(ContactPoint.value, ", ")
            )
            .where(ContactPoint.contact_id == Contact.id)
            .scalar_subquery()
        )
        open_deals = (
            select(func.count())
            .where(Deal.contact_id == Contact.id, Deal.status == "open")
            .scalar_subquery()
        )
        stmt = (
            select(
                Contact.id,
                Contact.name,
                points,
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
            return [list(r) for r in await conn.execute(stmt)]

    rows = _run(_with_store(settings, go))
    _table(["id", "name", "phones and emails", "owner", "open deals", "city", "segment"], rows)


@contacts.command("merge")
@click.argument("keep", type=int)
@click.argument("other", type=int)
@click.pass_context
def contacts_merge(ctx: click.Context, keep: int, other: int) -> None:
    """Merge contact OTHER into KEEP: its deals, tasks, notes, history, phones and emails move.

    KEEP's filled fields win, OTHER's fill its blanks. Undo with `hub contacts unmerge ID`.
    """
    from hub.merge import MergeError, merge_contacts

    settings = _settings(ctx)
    try:
        merge_id = _run(_with_store(settings, lambda store: merge_contacts(store, keep, other)))
    except MergeError as error:
        click.echo(f"cannot merge: {error}", err=True)
        sys.exit(1)
    click.echo(
        f"merged contact {other} into {keep} (merge {merge_id}; undo: "
        f"hub contacts unmerge {merge_id})"
    )


@contacts.command("unmerge")
@click.argument("merge_id", type=int)
@click.pass_context
def contacts_unmerge(ctx: click.Context, merge_id: int) -> None:
    """Undo merge MERGE_ID: the other contact comes back with what it had."""
    from hub.merge import MergeError, unmerge

    settings = _settings(ctx)
    try:
        result = _run(_with_store(settings, lambda store: unmerge(store, merge_id)))
    except MergeError as error:
        click.echo(f"cannot unmerge: {error}", err=True)
        sys.exit(1)
    click.echo(f"restored {result['kind']} {result['other_id']} beside {result['keep_id']}")


@main.group()
def companies() -> None:
    """Companies: merge duplicates (undo with `hub contacts unmerge ID`)."""


@companies.command("merge")
@click.argument("keep", type=int)
@click.argument("other", type=int)
@click.pass_context
def companies_merge(ctx: click.Context, keep: int, other: int) -> None:
    """Merge company OTHER into KEEP: its contacts and deals move to KEEP."""
    from hub.merge import MergeError, merge_companies

    settings = _settings(ctx)
    try:
        merge_id = _run(_with_store(settings, lambda store: merge_companies(store, keep, other)))
    except MergeError as error:
        click.echo(f"cannot merge: {error}", err=True)
        sys.exit(1)
    click.echo(
        f"merged company {other} into {keep} (merge {merge_id}; undo: "
        f"hub contacts unmerge {merge_id})"
    )


@main.group("import")
def import_() -> None:
    """Bring data in from files."""


@import_.command("contacts")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--map",
    "mapping",
    default=None,
    help="Columns as 'Header=field,...' (fields: name, first_name, last_name, "
    "middle_name, phone, email, company, city, segment, external_id, owner, "
    "ignore). Default: guessed from the headers, Russian or English.",
)
@click.pass_context
def import_contacts_cmd(ctx: click.Context, file: Path, mapping: str | None) -> None:
    """Import contacts from a CSV or XLSX FILE, matching each row against the store."""
    from hub.importer import ImportFailed, import_contacts, parse_mapping, read_rows
    from hub.leads import LeadPipeline
    from hub.store.ops import bump_counter, sync_config

    settings = _settings(ctx)

    async def go(store: Any) -> Any:
        async with store.write() as conn:
            catalog = await sync_config(conn, settings)
        pipeline = LeadPipeline(catalog, settings, bump_counter, _plugin_matchers(settings))
        explicit = parse_mapping(mapping, read_rows(file)[0]) if mapping else None
        return await import_contacts(store, pipeline, file, explicit)

    try:
        report = _run(_with_store(settings, go))
    except ImportFailed as error:
        click.echo(f"cannot import: {error}", err=True)
        sys.exit(2)
    columns = ", ".join(f"{h} → {f}" for h, f in report.mapping.items())
    click.echo(f"columns: {columns}")
    click.echo(
        f"created {report.created}, merged {report.merged}, flagged {report.flagged}, "
        f"rejected {len(report.rejected)}"
    )
    for number, reason in report.rejected:
        click.echo(f"  row {number}: {reason}")


@main.group()
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

    async def go(store: Any) -> tuple[list[Any], int]:
        pairs, compared = await scan(store, settings, _plugin_matchers(settings))
        await save_for_review(store, pairs)
        return pairs, compared

    pairs, compared = _run(_with_store(settings, go))
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
                d.c.contact_id, a.c.name, d.c.other_id, b.c.name, d.c.score, d.c.origin, d.c.reasons
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
        ["contact", "name", "maybe same as", "name", "score", "from", "why"],
        [[r[0], r[1], r[2], r[3], f"{r[4]:.2f}", r[5], " + ".join(r[6]["reasons"])] for r in rows],
    )


if __name__ == "__main__":  # pragma: no cover
    main()
