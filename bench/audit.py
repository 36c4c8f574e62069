"""How long the hygiene audits take over a large store, and what the stage rules cost a move.

    .venv/bin/python -m bench.audit [--deals 100000] [--moves 300] [--runs 3] [--indexes]

Builds a SQLite store of ``--deals`` open and closed deals with three tasks each (some
overdue, some done), a contact with a phone each (some without a segment) and calls,
then times ``hub rules audit``: the first run (every finding new: violations and events
written) and then ``--runs`` more (steady state: nothing new; the median is reported).
Goal: under 2 s, floor 10 s. The baseline, measured in the same run, is reading every
open deal and open task once: the least any audit of them must do; the ratio against
it is what to compare across machines. ``--indexes`` first adds the indexes proposed
for the audits (``INDEXES``; a migration's job in the hub, prototyped here).

Then it times single guarded stage moves through the writer, with the built-in stage
rules on and, as the baseline in the same run, with no guard: p50/p99 per move.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hub.audit import run_audits  # noqa: E402
from hub.config import load_settings  # noqa: E402
from hub.context import Hub  # noqa: E402
from hub.deals import SYSTEM  # noqa: E402
from hub.deals.changes import MoveStage  # noqa: E402
from hub.plugins import PluginHost  # noqa: E402
from plugins.webforms import WebForms  # noqa: E402
from rules.audits import HygieneAudits  # noqa: E402
from rules.stage_rules import StageRules  # noqa: E402


def settings_for(path: Path, plugins: dict[str, dict[str, object]]) -> object:
    settings = load_settings(ROOT / "config.example.toml")
    settings.store.url = f"sqlite+aiosqlite:///{path}"
    settings.rules.audit_every = timedelta(0)
    settings.plugins = {"webforms": settings.plugins["webforms"], **plugins}
    return settings


def hub_with(path: Path, **plugins: type) -> Hub:
    settings = settings_for(path, {name: {} for name in plugins})
    host = PluginHost(settings, load_entry_points=False, extra={"webforms": WebForms, **plugins})
    return Hub(settings, plugins=host, start_workers=False)  # type: ignore[arg-type]


# Proposed for a migration: the report by owner counts open violations from an index
# (not every violation ever resolved), and "no open task" looks up open tasks only.
INDEXES = (
    "CREATE INDEX ix_violations_open_owner ON violations (owner_id, rule) "
    "WHERE resolved_at IS NULL",
    "CREATE INDEX ix_tasks_open_deal ON tasks (deal_id) WHERE done_at IS NULL",
)


def add_indexes(path: Path) -> float:
    started = time.perf_counter()
    db = sqlite3.connect(path)
    for statement in INDEXES:
        db.execute(statement)
    db.execute("ANALYZE")
    db.commit()
    db.close()
    return time.perf_counter() - started


def fill(path: Path, deals: int, seed: int = 7) -> None:
    """Write the store directly (a benchmark's data, not a user's)."""
    rng = random.Random(seed)
    db = sqlite3.connect(path)
    now = datetime.now(UTC).replace(tzinfo=None)
    stages = dict(db.execute("SELECT key, id FROM stages WHERE pipeline_id = 1"))
    users = [r[0] for r in db.execute("SELECT id FROM users WHERE role = 'manager'")]
    open_stages = ["new", "qualified", "proposal", "objections", "contract"]
    contacts, points, deal_rows, tasks, calls = [], [], [], [], []
    task_id = 0
    for i in range(1, deals + 1):
        owner = rng.choice(users)
        entered = now - timedelta(hours=rng.uniform(1, 24 * 20))
        segment = None if rng.random() < 0.1 else "Розница"
        contacts.append((i, f"Клиент {i}", owner, segment, "{}", now, now))
        points.append((i, "phone", f"+7912{i:07d}", f"+7912{i:07d}", now))
        status = rng.choices(["open", "won", "lost"], [0.7, 0.15, 0.15])[0]
        stage = rng.choice(open_stages) if status == "open" else status
        deal_rows.append(
            (
                i,
                f"Сделка {i}",
                1,
                stages[stage],
                i,
                owner,
                100000,
                segment,
                status,
                "{}",
                now,
                now,
                entered,
            )
        )
        for _ in range(3):
            task_id += 1
            due = now + timedelta(hours=rng.uniform(-72, 72))
            done = due if rng.random() < 0.6 else None
            tasks.append((task_id, "Позвонить", "call", i, i, owner, due, done, now))
        if rng.random() < 0.5:
            calls.append(
                ("call", "out", i, i, "Звонок", "{}", now - timedelta(hours=rng.uniform(0, 48)))
            )
    db.executemany(
        "INSERT INTO contacts (id, name, owner_id, segment, custom, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        contacts,
    )
    db.executemany(
        "INSERT INTO contact_points (contact_id, kind, value, normalized, created_at) "
        "VALUES (?, ?, ?, ?, ?)",
        points,
    )
    db.executemany(
        "INSERT INTO deals (id, title, pipeline_id, stage_id, contact_id, owner_id, amount, "
        "segment, status, custom, created_at, updated_at, stage_entered_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        deal_rows,
    )
    db.executemany(
        "INSERT INTO tasks (id, title, kind, deal_id, contact_id, owner_id, due_at, done_at, "
        "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        tasks,
    )
    db.executemany(
        "INSERT INTO activities (kind, direction, deal_id, contact_id, summary, payload, "
        "occurred_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        calls,
    )
    db.commit()
    db.execute("ANALYZE")
    db.close()


async def audit(path: Path, runs: int) -> tuple[float, list[float], int, float]:
    """(first run, steady runs, violations, baseline), each (wall, CPU) seconds."""
    hub = hub_with(path, hygiene_audits=HygieneAudits)
    await hub.start()
    try:
        cpu = time.process_time()  # this process's, SQLite's thread included: steadier
        first = await run_audits(hub)
        first_cpu = time.process_time() - cpu
        steady, steady_cpu = [], []
        for _ in range(runs):
            cpu = time.process_time()
            report = await run_audits(hub)
            steady_cpu.append(time.process_time() - cpu)
            steady.append(report.seconds)
        return (
            (first.seconds, first_cpu),
            (steady, steady_cpu),
            first.open,
            await baseline(hub, runs),
        )
    finally:
        await hub.stop()


async def baseline(hub: Hub, runs: int) -> float:
    """Reading every open deal and open task once, as the audits' connection reads (median)."""
    from sqlalchemy import select

    from hub.store.models import Deal, Task

    took, cpu = [], []
    for _ in range(runs):
        started, cpu_started = time.perf_counter(), time.process_time()
        async with hub.store.read() as conn:
            await conn.execute(
                select(Deal.id, Deal.owner_id, Deal.stage_id).where(Deal.status == "open")
            )
            await conn.execute(
                select(Task.id, Task.owner_id, Task.due_at).where(Task.done_at.is_(None))
            )
        took.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
    return statistics.median(took), statistics.median(cpu)


async def moves(path: Path, n: int, guarded: bool) -> list[float]:
    hub = hub_with(path, **({"stage_rules": StageRules} if guarded else {}))
    await hub.start()
    try:
        async with hub.store.read() as conn:
            from sqlalchemy import text

            ids = [
                r[0]
                for r in await conn.execute(
                    text(
                        "SELECT d.id FROM deals d JOIN stages s ON s.id = d.stage_id "
                        "WHERE d.status = 'open' AND s.key = 'objections' LIMIT :n"
                    ),
                    {"n": n},
                )
            ]
        took = []
        for deal_id in ids:
            for stage in ("proposal", "objections"):  # back (allowed) and forward again
                started = time.perf_counter()
                await hub.deals.apply([MoveStage(deal=deal_id, stage=stage)], SYSTEM)
                took.append(time.perf_counter() - started)
        return took
    finally:
        await hub.stop()


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] * 1000


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deals", type=int, default=100_000)
    parser.add_argument("--no-moves", action="store_true", help="time the audits only")
    parser.add_argument("--moves", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3, help="steady-state audit runs")
    parser.add_argument("--indexes", action="store_true", help="add the proposed indexes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "hub.db"
        setup = hub_with(path)
        await setup.start()
        await setup.stop()
        started = time.perf_counter()
        fill(path, args.deals)
        print(
            f"store: {args.deals} deals, {3 * args.deals} tasks, {args.deals} contacts "
            f"({time.perf_counter() - started:.1f} s to build)"
        )
        if args.indexes:
            print(f"proposed indexes added ({add_indexes(path):.1f} s): {len(INDEXES)}")
        (first, first_cpu), (steady, steady_cpu), found, base = await audit(path, args.runs)
        second, second_cpu = statistics.median(steady), statistics.median(steady_cpu)
        print(
            f"baseline, open deals and tasks read once:  {base[0]:.2f} s "
            f"(CPU {base[1]:.2f} s; median of {args.runs})"
        )
        print(
            f"hub rules audit, first run (all new):      {first:.2f} s (CPU {first_cpu:.2f} s), "
            f"{found} violations; ratio {first / base[0]:.1f} (CPU {first_cpu / base[1]:.1f})"
        )
        print(
            f"hub rules audit, steady state (median):    {second:.2f} s (CPU {second_cpu:.2f} s; "
            f"goal < 2 s); ratio {second / base[0]:.1f} (CPU {second_cpu / base[1]:.1f}); "
            f"runs {', '.join(f'{t:.2f}' for t in steady)}"
        )
        if args.no_moves:
            return
        bare = await moves(path, args.moves, guarded=False)
        guarded = await moves(path, args.moves, guarded=True)
        print(
            f"stage move through the writer, no guard (baseline): p50 {pct(bare, 50):.2f} ms, "
            f"p99 {pct(bare, 99):.2f} ms ({len(bare)} moves)"
        )
        print(
            f"stage move with the built-in stage rules:          p50 {pct(guarded, 50):.2f} ms, "
            f"p99 {pct(guarded, 99):.2f} ms; ratio p50 {pct(guarded, 50) / pct(bare, 50):.2f}"
        )


if __name__ == "__main__":
    asyncio.run(main())
