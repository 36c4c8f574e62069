"""Caller-card benchmark: how fast the hub says who is calling, with a million contacts.

    .venv/bin/python bench/caller_card.py [--store sqlite|postgresql|both]
        [--contacts N] [--lookups N] [--seconds S] [--rate R] [--connections C]
        [--known SHARE]

A fresh store is migrated, given its users and pipelines as the hub does at
start-up, and seeded straight through the driver (``executemany`` in large
transactions on SQLite, ``COPY`` on PostgreSQL; the writer is not what is
measured here) with ``--contacts`` contacts, each with a phone point (+7 900
and its index in seven digits, entered in one of four local formats), a third
of them with an open deal, its open task and two activities, a sixth with a
lost deal too, every second one in a company; then ``ANALYZE``.

*Handler*: the plugin's lookup itself, in this process on a started hub (heap
frozen as ``hub run`` freezes it): the number normalized and its caller card
read (contact, owner, company, open deals with their light, open tasks, last
three activities) for ``--lookups`` random numbers, ``--known`` of them a
contact's, in random formats; and the routing lookup for a quarter as many.

*HTTP*: ``GET /api/v1/caller-card`` under ``--connections`` keep-alive
connections paced by ``bench/caller_card.lua`` to about ``--rate`` lookups/s
(Debian's wrk has no ``-R``), first against a bare aiohttp handler (reads the
query, answers a small JSON), then against the hub's application as ``hub run``
builds it (uvloop, heap frozen), in processes of their own; the achieved rate,
p50/p99 and their ratio to the bare handler's are printed.

Goals (issue 10): handler p99 under 2 ms, HTTP p99 under 20 ms. PostgreSQL
databases the benchmark creates are dropped at the end, on failure and on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import json
import multiprocessing as mp
import os
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.intake import (  # noqa: E402  (the same process and database plumbing)
    PG_URL,
    BenchError,
    PgDatabases,
    _children,
    _die_with_parent,
    _end_children,
    _sigterm,
    free_port,
    wait_port,
)

LUA = Path(__file__).resolve().parent / "caller_card.lua"
CARD_PATH = "/api/v1/caller-card"
TOKEN = "bench-head-token-0123456789abcdef"
ROUTE_TOKEN = "bench-route-token-0123456789abcdef"
MANAGERS = 10
BATCH = 50_000
FORMATS = (
    lambda p, d: f"8 ({p}) {d[:3]}-{d[3:5]}-{d[5:]}",
    lambda p, d: f"+7 {p} {d[:3]} {d[3:5]} {d[5:]}",
    lambda p, d: f"{p}{d}",
    lambda p, d: f"+7{p}{d}",
)


def settings_data(url: str) -> dict[str, Any]:
    return {
        "hub": {"timezone": "Europe/Moscow", "default_region": "RU"},
        "store": {"url": url, "pool_size": 20},
        "log": {"level": "warning", "format": "json"},
        "users": [
            {
                "email": f"manager{n}@example.com",
                "name": f"Менеджер {n}",
                "role": "manager",
                "extension": str(101 + n),
            }
            for n in range(MANAGERS)
        ],
        "pipelines": {
            "sales": {
                "name": "Продажи",
                "default": True,
                "stages": [
                    {"key": "new", "name": "Новая сделка", "contact_within": "1d"},
                    {"key": "proposal", "name": "Направить КП", "contact_within": "2d"},
                    {"key": "contract", "name": "Договор", "time_limit": "14d"},
                    {"key": "won", "name": "Выиграли", "kind": "won"},
                    {"key": "lost", "name": "Проиграли", "kind": "lost"},
                ],
            }
        },
        "api": {"tokens": {"bench": {"token": TOKEN, "role": "head"}}},
        "intake": {"process": False},
        "plugins": {"telephony": {"route_token": ROUTE_TOKEN}},
    }


def make_hub(url: str) -> Any:
    from hub.config import Settings
    from hub.context import Hub
    from hub.plugins import PluginHost
    from plugins.telephony import Telephony

    settings = Settings(**settings_data(url))
    host = PluginHost(settings, load_entry_points=False, extra={"telephony": Telephony})
    return Hub(settings, plugins=host, start_workers=False)


def phone(prefix: str, index: int, style: int) -> str:
    return FORMATS[style % len(FORMATS)](prefix, f"{index:07d}")


# -- seeding ----------------------------------------------------------------------------------


async def prepare(url: str) -> Any:
    """Migrate and sync the configuration as the hub's start-up does; the catalog."""
    from hub.config import Settings
    from hub.store import Store
    from hub.store.ops import sync_config

    store = Store(url)
    try:
        await store.upgrade()
        async with store.write() as conn:
            return await sync_config(conn, Settings(**settings_data(url)))
    finally:
        await store.close()


def rows(n: int, catalog: Any) -> dict[str, Iterator[tuple[Any, ...]]]:
    """Each table's rows for ``n`` contacts, as generators in column order (see COLUMNS)."""
    now = datetime.now(UTC).replace(microsecond=0)
    users = sorted(catalog.user_ids.values())
    sales = catalog.pipelines["sales"]
    open_stages = [s.id for s in sales.stages.values() if s.kind == "open"]
    lost = sales.stages["lost"].id
    companies = max(1, n // 10)
    rng = random.Random(7)

    def owner(i: int) -> int:
        return users[i % len(users)]

    def company_rows() -> Iterator[tuple[Any, ...]]:
        for c in range(1, companies + 1):
            yield (c, f"ООО «Компания {c}»", f"kompaniya {c}", owner(c), now, now)

    def contact_rows() -> Iterator[tuple[Any, ...]]:
        for i in range(n):
            company = i // 2 % companies + 1 if i % 2 == 0 else None
            created = now - timedelta(days=i % 900)
            yield (i + 1, f"Клиент {i}", company, owner(i), "Пермь", "b2b", "{}", created, created)

    def point_rows() -> Iterator[tuple[Any, ...]]:
        for i in range(n):
            yield (i + 1, i + 1, "phone", phone("900", i, i), f"+7900{i:07d}", now)

    def deal_rows() -> Iterator[tuple[Any, ...]]:
        deal = 0
        for i in range(0, n, 3):
            deal += 1
            entered = now - timedelta(hours=rng.randrange(1, 24 * 20))
            stage = open_stages[i % len(open_stages)]
            yield (
                deal, f"Сделка {i}", sales.id, stage, i + 1, owner(i), Decimal(1000 + i % 9000),
                "RUB", "open", "{}", entered, entered, entered, None,
            )  # fmt: skip
            if i % 6 == 0:
                deal += 1
                yield (
                    deal, f"Прошлая сделка {i}", sales.id, lost, i + 1, owner(i), None,
                    None, "lost", "{}", entered, entered, entered, entered,
                )  # fmt: skip

    def deal_ids() -> Iterator[tuple[int, int]]:
        """(open deal id, contact index), in the order deal_rows numbers them."""
        deal = 0
        for i in range(0, n, 3):
            deal += 1
            yield deal, i
            if i % 6 == 0:
                deal += 1

    def task_rows() -> Iterator[tuple[Any, ...]]:
        task = 0
        for deal, i in deal_ids():
            task += 1
            due = now + timedelta(hours=rng.randrange(-48, 120))
            yield (task, "Перезвонить", "call", deal, i + 1, owner(i), due, None, now)
            if i % 9 == 0:
                task += 1
                yield (task, "Отправить КП", "email", deal, i + 1, owner(i), due, now, now)

    def activity_rows() -> Iterator[tuple[Any, ...]]:
        activity = 0
        for deal, i in deal_ids():
            for back in (1, 5):
                activity += 1
                at = now - timedelta(days=back, minutes=i % 600)
                yield (activity, "call", "in", deal, i + 1, f"Звонок {back}", "{}", at)

    return {
        "companies": company_rows(),
        "contacts": contact_rows(),
        "contact_points": point_rows(),
        "deals": deal_rows(),
        "tasks": task_rows(),
        "activities": activity_rows(),
    }


COLUMNS = {
    "companies": ("id", "name", "name_key", "owner_id", "created_at", "updated_at"),
    "contacts": (
        "id",
        "name",
        "company_id",
        "owner_id",
        "city",
        "segment",
        "custom",
        "created_at",
        "updated_at",
    ),
    "contact_points": ("id", "contact_id", "kind", "value", "normalized", "created_at"),
    "deals": (
        "id",
        "title",
        "pipeline_id",
        "stage_id",
        "contact_id",
        "owner_id",
        "amount",
        "currency",
        "status",
        "custom",
        "created_at",
        "updated_at",
        "stage_entered_at",
        "closed_at",
    ),
    "tasks": (
        "id",
        "title",
        "kind",
        "deal_id",
        "contact_id",
        "owner_id",
        "due_at",
        "done_at",
        "created_at",
    ),
    "activities": (
        "id",
        "kind",
        "direction",
        "deal_id",
        "contact_id",
        "summary",
        "payload",
        "occurred_at",
    ),
}


def _chunks(items: Iterator[tuple[Any, ...]], size: int) -> Iterator[list[tuple[Any, ...]]]:
    chunk: list[tuple[Any, ...]] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@functools.lru_cache(maxsize=1 << 16)
def _sqlite_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _sqlite_value(value: Any) -> Any:
    """As SQLAlchemy stores it on SQLite: naive UTC text, numerics as floats."""
    if isinstance(value, datetime):
        return _sqlite_time(value)
    if isinstance(value, Decimal):
        return float(value)
    return value


def seed_sqlite(path: Path, n: int, catalog: Any) -> dict[str, int]:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA synchronous=OFF")
    counts = {}
    try:
        for table, generated in rows(n, catalog).items():
            columns = COLUMNS[table]
            sql = (
                f"INSERT INTO {table} ({', '.join(columns)}) "
                f"VALUES ({', '.join('?' * len(columns))})"
            )
            count = 0
            db.execute("BEGIN")
            for chunk in _chunks(generated, BATCH):
                db.executemany(sql, [tuple(map(_sqlite_value, row)) for row in chunk])
                count += len(chunk)
            db.execute("COMMIT")
            counts[table] = count
        db.execute("ANALYZE")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()
    return counts


def _pg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def seed_postgresql(url: str, n: int, catalog: Any) -> dict[str, int]:
    import asyncpg

    conn = await asyncpg.connect(_pg_dsn(url))
    counts = {}
    try:
        for table, generated in rows(n, catalog).items():
            count = 0
            async with conn.transaction():
                for chunk in _chunks(generated, BATCH * 4):
                    await conn.copy_records_to_table(table, records=chunk, columns=COLUMNS[table])
                    count += len(chunk)
            await conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT max(id) FROM {table}))"
            )
            counts[table] = count
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return counts


# -- the handler, in process --------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def asked_numbers(count: int, n: int, known: float, seed: int) -> list[tuple[str, bool]]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        is_known = rng.random() < known
        out.append(
            (phone("900" if is_known else "901", rng.randrange(n), rng.randrange(4)), is_known)
        )
    return out


async def time_handler(url: str, n: int, lookups: int, known: float) -> dict[str, Any]:
    from sqlalchemy import select

    from hub.logging import configure_logging

    configure_logging("warning", "json")
    hub = make_hub(url)
    await hub.start()
    gc.collect()
    gc.freeze()  # as hub run does once started
    plugin = hub.plugins.records["telephony"].instance
    try:
        for raw, _ in asked_numbers(500, n, known, seed=1):  # warm caches and the pool
            await plugin.card(plugin.normalize(raw), None)
        card_ms: list[float] = []
        found = 0
        cpu = time.process_time()
        for raw, is_known in asked_numbers(lookups, n, known, seed=2):
            started = time.perf_counter()
            card = await plugin.card(plugin.normalize(raw), None)
            card_ms.append((time.perf_counter() - started) * 1000)
            if card["known"] != is_known:
                raise BenchError(f"{raw}: known {card['known']}, expected {is_known}")
            found += card["known"]
        cpu_us = (time.process_time() - cpu) / lookups * 1e6
        floor_ms: list[float] = []  # the store's cheapest read: a connection and SELECT 1
        for _ in range(max(1, lookups // 4)):
            started = time.perf_counter()
            async with hub.view.read() as reader:
                await reader.execute(select(1))
            floor_ms.append((time.perf_counter() - started) * 1000)
        route_ms: list[float] = []
        for raw, is_known in asked_numbers(max(1, lookups // 4), n, known, seed=3):
            started = time.perf_counter()
            answer = await plugin.router.route(plugin.normalize(raw))
            route_ms.append((time.perf_counter() - started) * 1000)
            if answer["known"] != is_known or answer.get("reason") == "deadline":
                raise BenchError(f"{raw}: route {answer}, expected known {is_known}")
    finally:
        await hub.stop()
        gc.unfreeze()
    return {
        "card": card_ms,
        "route": route_ms,
        "floor": floor_ms,
        "found": found,
        "cpu_us": cpu_us,
    }


# -- HTTP ---------------------------------------------------------------------------------


def _uvloop() -> Any:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:
        return None


def _bare_server(port: int) -> None:
    _die_with_parent()
    from aiohttp import web

    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"known": False, "phone": request.query.get("phone", "")})

    app = web.Application()
    app.router.add_get(CARD_PATH, handler)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, loop=_uvloop())


def _hub_server(url: str, port: int) -> None:
    """The hub's application as ``hub run`` builds and serves it, the telephony plugin on."""
    _die_with_parent()
    from aiohttp import web

    from hub.app import build_app
    from hub.logging import configure_logging

    configure_logging("warning", "json")
    app = build_app(make_hub(url), freeze_heap=True)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, loop=_uvloop())


def wait_ready(port: int, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise BenchError(f"the hub on {port} was not ready in {timeout:.0f} s")


def load(args: argparse.Namespace, target: Any, target_args: tuple[Any, ...], hub: bool) -> dict:
    port = free_port()
    proc = mp.Process(target=target, args=(*target_args, port))
    proc.start()
    _children.append(proc)
    try:
        wait_port(port, proc)
        if hub:
            wait_ready(port)
        interval = round(args.connections / args.rate * 1000)
        command = [
            args.wrk, f"-t{args.threads}", f"-c{args.connections}", f"-d{int(args.seconds)}s",
            "--timeout", "10s", "-s", str(LUA), f"http://127.0.0.1:{port}", "--", CARD_PATH,
            str(args.contacts), str(interval), TOKEN, str(args.known),
        ]  # fmt: skip
        out = subprocess.run(command, capture_output=True, text=True, check=False)
        line = next((ln for ln in out.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
        if line is None:
            raise BenchError(f"wrk gave no summary (exit {out.returncode}): {out.stderr[-500:]}")
        data = json.loads(line.removeprefix("BENCH_JSON "))
        data["rate"] = data["requests"] / (data["duration_us"] / 1e6)
        data["errors"] = sum(
            data[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts")
        )
        return data
    finally:
        proc.terminate()
        proc.join(30)
        _children.remove(proc)


# -- one store ----------------------------------------------------------------------------


def run_store(kind: str, args: argparse.Namespace, databases: PgDatabases, tmp: Path) -> None:
    if kind == "sqlite":
        path = tmp / "hub.db"
        url = f"sqlite+aiosqlite:///{path}"
    else:
        name = databases.create()
        url = PG_URL.rsplit("/", 1)[0] + "/" + name
    started = time.perf_counter()
    catalog = asyncio.run(prepare(url))
    if kind == "sqlite":
        counts = seed_sqlite(path, args.contacts, catalog)
    else:
        counts = asyncio.run(seed_postgresql(url, args.contacts, catalog))
    seeded = time.perf_counter() - started
    size = f", {path.stat().st_size / 2**20:.0f} MB" if kind == "sqlite" else ""
    print(
        f"{kind}: seeded in {seeded:.1f} s{size}: "
        + ", ".join(f"{count} {table}" for table, count in counts.items()),
        flush=True,
    )
    timed = asyncio.run(time_handler(url, args.contacts, args.lookups, args.known))
    card, route = timed["card"], timed["route"]
    print(
        f"{kind:10} handler (normalize + card):  p50 {statistics.median(card):5.2f} ms  "
        f"p99 {percentile(card, 0.99):5.2f} ms  max {max(card):6.2f} ms  "
        f"({len(card)} lookups, {timed['found']} known; CPU {timed['cpu_us']:.0f} µs each, "
        f"store's thread included)  goal p99 < 2 ms",
        flush=True,
    )
    print(
        f"{kind:10} handler (route lookup):      p50 {statistics.median(route):5.2f} ms  "
        f"p99 {percentile(route, 0.99):5.2f} ms  max {max(route):6.2f} ms  ({len(route)} lookups)",
        flush=True,
    )
    floor = timed["floor"]
    print(
        f"{kind:10} store floor (read + SELECT 1):  p50 {statistics.median(floor):5.2f} ms  "
        f"p99 {percentile(floor, 0.99):5.2f} ms  ({len(floor)} reads through the hub's engine; "
        f"the card's three prepared statements use connections of their own)",
        flush=True,
    )
    bare = load(args, _bare_server, (), hub=False)
    served = load(args, _hub_server, (url,), hub=True)
    for label, data in (("bare aiohttp handler:", bare), ("hub caller card:", served)):
        print(
            f"{kind:10} HTTP {label:22}{data['rate']:5.0f} req/s  p50 {data['p50_us'] / 1000:5.2f}"
            f" ms  p99 {data['p99_us'] / 1000:6.2f} ms  max {data['max_us'] / 1000:6.1f} ms"
            f"  ({data['ok']} answered 200, {data['known']} known, {data['other']} other,"
            f" {data['errors']} socket errors)",
            flush=True,
        )
    print(
        f"{kind:10} HTTP ratio hub/bare: p50 {served['p50_us'] / max(bare['p50_us'], 1):.1f}x, "
        f"p99 {served['p99_us'] / max(bare['p99_us'], 1):.1f}x; rate "
        f"{served['rate'] / bare['rate']:.2f} of bare  goal p99 < 20 ms",
        flush=True,
    )
    if served["other"] or served["errors"]:
        raise BenchError(f"{kind}: {served['other']} non-200 answers, {served['errors']} errors")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=["sqlite", "postgresql", "both"], default="sqlite")
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=10_000, help="in-process card lookups")
    parser.add_argument("--known", type=float, default=0.8, help="share of known numbers")
    parser.add_argument("--seconds", type=float, default=15.0, help="HTTP load per server")
    parser.add_argument("--rate", type=float, default=500.0, help="target lookups/s over HTTP")
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    args = parser.parse_args()
    args.wrk = shutil.which("wrk")
    if args.wrk is None:
        sys.exit("wrk is not installed: apt-get install -y wrk")
    signal.signal(signal.SIGTERM, _sigterm)
    databases = PgDatabases()
    stores = ["sqlite", "postgresql"] if args.store == "both" else [args.store]
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True
    ).stdout.strip()
    print(
        f"# crm-hub caller-card benchmark ({commit}): {args.contacts} contacts; "
        f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; {args.lookups} in-process "
        f"lookups; wrk -t{args.threads} -c{args.connections} paced to ~{args.rate:.0f}/s for "
        f"{args.seconds:.0f} s; {args.known:.0%} known numbers",
        flush=True,
    )
    try:
        if "postgresql" in stores:
            PgDatabases.drop_orphans()
        for kind in stores:
            with tempfile.TemporaryDirectory(prefix="hub-bench-card-") as tmp:
                run_store(kind, args, databases, Path(tmp))
    finally:
        _end_children()
        databases.drop_all()


if __name__ == "__main__":
    main()
