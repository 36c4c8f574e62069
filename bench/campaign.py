"""Campaign benchmark: the outbox build of a big segment, the sender's overhead, its pace.

    .venv/bin/python -m bench.campaign [--contacts 1000000] [--messages 20000]
                                       [--rate 100] [--seconds 10] [--big-seconds 5]
                                       [--profile]

1. *Start.* A SQLite store of ``--contacts`` contacts is written directly (80 % tagged
   "Опт", a phone each but 1 %, every 50th sharing its neighbour's phone, sms consent
   granted for 90 %, withdrawn for 3 %), then a campaign to the "Опт" segment is started
   (``CampaignDesk.start``: the outbox in one ``INSERT ... SELECT``) in a fresh process
   whose RSS is sampled every 5 ms. Goal: under 30 s, peak RSS under 300 MB. Baseline in
   the same run and process: ``INSERT INTO t SELECT id FROM contacts WHERE segment='Опт'``
   (the least writing that many rows costs). The same process then times one claim of a
   batch from that outbox (how the claim scales with the size of a campaign) and runs the
   pace test below on it for ``--big-seconds`` (a claim on a 700k-row campaign is what
   migration 0013's index is for: without it SQLite sorted every queued row, ~300 ms).
2. *Sender overhead.* ``--messages`` queued messages sent by ``CampaignSender.drain()``
   through a gateway that accepts at once (rate 100000/s, concurrency 256). Goal: over
   2,000 messages/s. Baseline: the same rows claimed and recorded by plain UPDATEs in
   batches of the same size, nothing rendered or sent; and, apart, rendering the template
   for every row.
3. *Pace.* ``--rate`` × ``--seconds`` messages at ``--rate``/s through
   ``CampaignSender.run()``; the gateway notes the monotonic time of each send. Printed:
   the rate over the middle 80 % of sends and its deviation (goal within ±5 %), and the
   most sends in any 100 ms window (against rate / 10).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import itertools
import json
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hub.campaigns import outbox  # noqa: E402
from hub.campaigns.audience import Audience  # noqa: E402
from hub.campaigns.gateway import NOT_THERE, Accepted, DeliveryReport, Outgoing  # noqa: E402
from hub.campaigns.render import Letter  # noqa: E402
from hub.campaigns.sender import BATCH_SECONDS, CampaignSender  # noqa: E402
from hub.config import load_settings  # noqa: E402
from hub.context import Hub  # noqa: E402
from hub.deals import SYSTEM  # noqa: E402
from hub.hookspecs import hookimpl  # noqa: E402
from hub.logging import configure_logging  # noqa: E402
from hub.plugins import PluginHost  # noqa: E402
from hub.store.types import utcnow  # noqa: E402
from plugins.webforms import WebForms  # noqa: E402

TEXT = "{{ contact.first_name or 'Добрый день' }}, новые оптовые цены с 1 января. {{ owner.name }}"
FIRST = ["Пётр", "Иван", "Ольга", "Анна", "Сергей", "Мария", "Олег", "Ирина", "Павел", "Елена"]
LAST = ["Иванов", "Смирнов", "Кузнецов", "Попов", "Васильев", "Петров", "Соколов", "Новиков"]
CITIES = ["Москва", "Самара", "Тверь", "Казань", "Пермь"]
STAMP = "2026-01-15 09:00:00.000000"  # naive UTC, as the store writes it on SQLite


@dataclass
class InstantGateway:
    """Takes every message at once and notes when (the loop's monotonic clock)."""

    name: str = "bench"
    channel: str = "sms"
    rate: float = 100_000.0
    concurrency: int = 256
    times: list[float] = field(default_factory=list)

    async def send(self, message: Outgoing) -> Accepted:
        self.times.append(time.monotonic())
        return Accepted(provider_id=f"p{message.id}")

    async def find(self, message: Outgoing) -> Any:
        return NOT_THERE

    async def status(self, provider_ids: Sequence[str]) -> list[DeliveryReport]:
        return []


class GatewayPlugin:
    gateway = InstantGateway()

    def __init__(self, config: Any = None, hub: Any = None) -> None:
        pass

    @hookimpl
    def hub_campaign_gateways(self) -> list[Any]:
        return [type(self).gateway]


def hub_with(path: Path, gateway: InstantGateway) -> Hub:
    settings = load_settings(ROOT / "config.example.toml")
    settings.store.url = f"sqlite+aiosqlite:///{path}"
    settings.rules.audit_every = timedelta(0)
    settings.segments = {"wholesale": Audience(segments=["Опт"])}
    settings.campaigns.quiet_hours = None  # the bench may run at night
    settings.campaigns.poll_every = timedelta(seconds=0.05)
    settings.plugins = {"webforms": settings.plugins["webforms"], "benchgateway": {}}
    GatewayPlugin.gateway = gateway
    host = PluginHost(
        settings,
        load_entry_points=False,
        extra={"webforms": WebForms, "benchgateway": GatewayPlugin},
    )
    # No workers: the benchmark drives the campaign sender itself.
    return Hub(settings, plugins=host, start_workers=False)  # type: ignore[arg-type]


async def make_store(path: Path) -> None:
    """Migrations and the config's pipelines and users, as a started hub leaves them."""
    hub = hub_with(path, InstantGateway())
    await hub.start()
    await hub.stop()


def fill(path: Path, contacts: int, *, wholesale: float = 0.8) -> dict[str, int]:
    """Write contacts, phones and consents directly, in SQL (a benchmark's data)."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    db.execute("PRAGMA cache_size=-200000")
    for table, values in (("first", FIRST), ("last", LAST), ("city", CITIES)):
        db.execute(f"CREATE TEMP TABLE {table} (k INTEGER PRIMARY KEY, v TEXT)")
        db.executemany(f"INSERT INTO {table} VALUES (?, ?)", enumerate(values))
    # h: a cheap hash of i in 0..99, so the tags do not follow the id.
    numbers = (
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :count) "
        "SELECT i, (i * 2654435761) % 1000003 % 100 AS h FROM n"
    )
    share = int(wholesale * 100)
    db.execute("BEGIN")
    db.execute(
        "INSERT INTO contacts (id, name, city, segment, custom, created_at, updated_at) "
        f"SELECT i, (SELECT v FROM last WHERE k = i % {len(LAST)}) || ' ' || "
        f"(SELECT v FROM first WHERE k = (i / {len(LAST)}) % {len(FIRST)}), "
        f"(SELECT v FROM city WHERE k = i % {len(CITIES)}), "
        f"CASE WHEN h < {share} THEN 'Опт' ELSE 'Розница' END, '{{}}', '{STAMP}', '{STAMP}' "
        f"FROM ({numbers})",
        {"count": contacts},
    )
    # Every 50th contact shares the phone of the one before it (a couple, a second record);
    # 1 % have no phone at all.
    db.execute(
        "INSERT INTO contact_points (contact_id, kind, value, normalized, created_at) "
        "SELECT i, 'phone', printf('8 (916) %07d', p), printf('+7916%07d', p), "
        f"'{STAMP}' FROM (SELECT i, h, CASE WHEN i % 50 = 0 THEN i - 1 ELSE i END AS p "
        f"FROM ({numbers})) WHERE (i * 40503) % 100 != 7",
        {"count": contacts},
    )
    db.execute(
        "INSERT INTO consents (contact_id, channel, granted, source, recorded_at) "
        "SELECT i, 'sms', CASE WHEN (i * 7919) % 100 < 3 THEN 0 ELSE 1 END, 'import:bench', "
        f"'{STAMP}' FROM ({numbers}) WHERE (i * 7919) % 100 < 93",
        {"count": contacts},
    )
    db.execute("COMMIT")
    db.execute("ANALYZE")
    counts = {
        table: db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        for table in ("contacts", "contact_points", "consents")
    }
    counts["wholesale"] = db.execute(
        "SELECT count(*) FROM contacts WHERE segment = 'Опт'"
    ).fetchone()[0]
    db.close()
    return counts


class PeakRss:
    """The process's resident set, sampled in a thread while the block runs."""

    def __init__(self, every: float = 0.005) -> None:
        self.every = every
        self.process = psutil.Process()
        self.before = self.peak = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            self._done.wait(self.every)

    def __enter__(self) -> PeakRss:
        self.before = self.peak = self.process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)


async def create(hub: Hub, name: str, rate: float) -> int:
    return await hub.campaigns.create(
        name=name, segment="wholesale", channel="sms", text=TEXT, actor=SYSTEM, rate=rate
    )


# -- 1. the start, in its own process -----------------------------------------------------


async def start_child(
    path: Path, claim_sizes: list[int], rate: float, seconds: float
) -> dict[str, Any]:
    """Run in a fresh process: baseline, the start (RSS sampled), claims, the pace."""
    from sqlalchemy import text

    gateway = InstantGateway(rate=100_000, concurrency=256)
    hub = hub_with(path, gateway)
    await hub.start()
    try:
        campaign = await create(hub, "Новые цены", rate=rate)
        with PeakRss() as base_rss:
            began = time.perf_counter()
            async with hub.store.write() as conn:
                await conn.execute(text("CREATE TABLE bench_scratch (id INTEGER)"))
                await conn.execute(
                    text("INSERT INTO bench_scratch SELECT id FROM contacts WHERE segment = 'Опт'")
                )
            baseline = time.perf_counter() - began
        async with hub.store.write() as conn:
            await conn.execute(text("DROP TABLE bench_scratch"))
        with PeakRss() as rss:
            began, cpu = time.perf_counter(), time.process_time()
            started = await hub.campaigns.start(campaign, SYSTEM)
            took, took_cpu = time.perf_counter() - began, time.process_time() - cpu
        claims = []
        for size in claim_sizes:
            began = time.perf_counter()
            rows = await outbox.claim(
                hub.store,
                campaign_id=campaign,
                worker="bench",
                limit=size,
                now=utcnow(),
                lease=timedelta(seconds=60),
            )
            claims.append((size, len(rows), time.perf_counter() - began))
            # Handed back, so the pace test below finds them queued.
            back = utcnow()
            await outbox.release(hub.store, [(r["id"], back) for r in rows], worker="bench")
        count = max(10, round(rate * seconds))
        paced = await measure_pace(hub, gateway, count, rate) if seconds > 0 else None
        return {
            "seconds": took,
            "cpu": took_cpu,
            "rss_before": rss.before,
            "rss_peak": rss.peak,
            "baseline": baseline,
            "baseline_rss_peak": base_rss.peak,
            "queued": started["queued"],
            "skipped": started["skipped"],
            "claims": claims,
            "pace": paced,
        }
    finally:
        await hub.stop()


def run_start(args: argparse.Namespace, path: Path, claim_sizes: list[int]) -> dict[str, Any]:
    profile = args.profile
    command = [sys.executable, "-m", "bench.campaign", "--child-start", str(path)]
    command += ["--claims", ",".join(map(str, claim_sizes))]
    command += ["--rate", str(args.rate), "--seconds", str(args.big_seconds)]
    if profile:
        command.append("--profile")
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"the start's process failed ({done.returncode})")
    if profile:
        sys.stderr.write(done.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- 2. the sender's overhead -------------------------------------------------------------


async def queued_hub(
    path: Path, count: int, rate: float, gateway: InstantGateway
) -> tuple[Hub, int]:
    """A store of ``count`` contacts, all in the segment, with consent and a phone of their
    own, and a started campaign: ``count`` messages queued."""
    await make_store(path)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN")
    stamp = STAMP
    db.executemany(
        "INSERT INTO contacts (id, name, city, segment, custom, created_at, updated_at) "
        "VALUES (?, ?, ?, 'Опт', '{}', ?, ?)",
        (
            (i, f"{LAST[i % len(LAST)]} {FIRST[i % len(FIRST)]}", CITIES[i % 5], stamp, stamp)
            for i in range(1, count + 1)
        ),
    )
    db.executemany(
        "INSERT INTO contact_points (contact_id, kind, value, normalized, created_at) "
        "VALUES (?, 'phone', ?, ?, ?)",
        ((i, f"+7916{i:07d}", f"+7916{i:07d}", stamp) for i in range(1, count + 1)),
    )
    db.executemany(
        "INSERT INTO consents (contact_id, channel, granted, source, recorded_at) "
        "VALUES (?, 'sms', 1, 'import:bench', ?)",
        ((i, stamp) for i in range(1, count + 1)),
    )
    db.execute("COMMIT")
    db.execute("ANALYZE")
    db.close()
    hub = hub_with(path, gateway)
    await hub.start()
    campaign = await create(hub, "Скорость", rate=rate)
    started = await hub.campaigns.start(campaign, SYSTEM)
    assert started["queued"] == count, started
    return hub, campaign


async def sender_overhead(folder: Path, count: int, profile: bool) -> dict[str, Any]:
    gateway = InstantGateway(rate=100_000, concurrency=256)
    hub, campaign = await queued_hub(folder / "sender.db", count, 100_000, gateway)
    try:
        size = max(1, int(min(100_000, gateway.rate) * BATCH_SECONDS))
        sender = CampaignSender(hub.campaigns, hub.gateways)
        profiler = None
        if profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        began, cpu = time.perf_counter(), time.process_time()
        await sender.drain()
        took, took_cpu = time.perf_counter() - began, time.process_time() - cpu
        if profiler is not None:
            profiler.disable()
            import pstats

            pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(40)
        status = await hub.campaigns.status(campaign)
        sent = status["states"].get("sent", 0)
        assert sent == count == len(gateway.times), (status["states"], len(gateway.times))
        assert status["campaign"]["state"] == "finished", status["campaign"]["state"]
        # The baseline: put the rows back and move them the same way with plain UPDATEs.
        from sqlalchemy import text

        async with hub.store.write() as conn:
            await conn.execute(
                text(
                    "UPDATE campaign_messages SET state = 'queued', provider_id = NULL, "
                    "sent_at = NULL WHERE campaign_id = :c"
                ),
                {"c": campaign},
            )
        began = time.perf_counter()
        moved = 0
        while True:
            async with hub.store.write() as conn:
                ids = [
                    r[0]
                    for r in await conn.execute(
                        text(
                            "UPDATE campaign_messages SET state = 'sending', claimed_by = 'b' "
                            "WHERE id IN (SELECT id FROM campaign_messages WHERE campaign_id = :c "
                            "AND state = 'queued' ORDER BY due_at, id LIMIT :n) RETURNING id"
                        ),
                        {"c": campaign, "n": size},
                    )
                ]
            if not ids:
                break
            async with hub.store.write() as conn:
                await conn.execute(
                    text(
                        "UPDATE campaign_messages SET state = 'sent', provider_id = :p, "
                        "claimed_by = NULL WHERE id = :i"
                    ),
                    [{"i": i, "p": f"p{i}"} for i in ids],
                )
            moved += len(ids)
        baseline = time.perf_counter() - began
        assert moved == count
        # Rendering alone, for every row (what the sender must do on top of the store).
        people = await sender._people(list(range(1, count + 1)))
        campaign_row = await hub.campaigns.get(campaign)
        letter = Letter(text=TEXT)
        began = time.perf_counter()
        for person in people.values():
            letter.render(hub.campaigns.context(person, campaign_row))
        render = time.perf_counter() - began
        return {
            "seconds": took,
            "cpu": took_cpu,
            "sent": sent,
            "batch": size,
            "baseline": baseline,
            "render": render,
        }
    finally:
        await hub.stop()


# -- 3. the pace --------------------------------------------------------------------------


async def measure_pace(
    hub: Hub, gateway: InstantGateway, count: int, rate: float
) -> dict[str, Any]:
    """Run the sender until ``count`` more messages went out; the pace of those."""
    gateway.times.clear()
    sender = CampaignSender(hub.campaigns, hub.gateways)
    task = asyncio.create_task(sender.run())
    deadline = time.monotonic() + count / rate * 3 + 10
    while len(gateway.times) < count and time.monotonic() < deadline and not task.done():
        await asyncio.sleep(0.02)
    sender.stop()
    await asyncio.wait_for(task, 30)
    times = sorted(gateway.times)
    if len(times) < max(count // 2, 10):
        raise SystemExit(f"pace: only {len(times)} of {count} sent in time")
    cut = len(times) // 10
    middle = times[cut : len(times) - cut]
    achieved = (len(middle) - 1) / (middle[-1] - middle[0])
    # The most sends in any 100 ms window (each starting at a send).
    burst = max(bisect.bisect_left(times, t + 0.1, lo=i) - i for i, t in enumerate(times))
    gaps = [b - a for a, b in itertools.pairwise(times)]
    return {
        "sent": len(times),
        "span": times[-1] - times[0],
        "achieved": achieved,
        "deviation": (achieved - rate) / rate * 100,
        "burst": burst,
        "max_gap": max(gaps),
    }


async def pace(folder: Path, rate: float, seconds: float) -> dict[str, Any]:
    count = max(10, round(rate * seconds))
    gateway = InstantGateway(rate=100_000, concurrency=256)
    hub, _ = await queued_hub(folder / "pace.db", count, rate, gateway)
    try:
        return await measure_pace(hub, gateway, count, rate)
    finally:
        await hub.stop()


def pace_line(label: str, rate: float, found: dict[str, Any]) -> str:
    return (
        f"{label}: {found['sent']} sent over {found['span']:.2f} s; middle 80 % at "
        f"{found['achieved']:.2f}/s, deviation {found['deviation']:+.2f} % (goal ±5 %); "
        f"max {found['burst']} in 100 ms (even: {rate / 10:g}); "
        f"longest gap {found['max_gap'] * 1000:.0f} ms"
    )


def mb(n: float) -> str:
    return f"{n / 2**20:.0f} MB"


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if not args.skip_start:
            path = folder / "hub.db"
            await make_store(path)
            began = time.perf_counter()
            counts = fill(path, args.contacts)
            print(
                f"store: {counts['contacts']} contacts ({counts['wholesale']} «Опт»), "
                f"{counts['contact_points']} phones, {counts['consents']} sms consents "
                f"({time.perf_counter() - began:.1f} s to build, "
                f"{path.stat().st_size / 2**20:.0f} MB)"
            )
            rate_batch = max(1, int(args.rate * BATCH_SECONDS))
            found = run_start(args, path, [rate_batch, 25_000])
            print(
                f"baseline, INSERT INTO t SELECT id ... segment='Опт': {found['baseline']:.2f} s "
                f"({counts['wholesale']} rows)"
            )
            skipped = ", ".join(f"{k} {v}" for k, v in sorted(found["skipped"].items()))
            print(
                f"desk.start (outbox in one statement):  {found['seconds']:.2f} s "
                f"(CPU {found['cpu']:.2f} s; goal < 30 s); "
                f"ratio {found['seconds'] / found['baseline']:.1f}; "
                f"queued {found['queued']}, skipped: {skipped}"
            )
            print(
                f"  RSS during the start: {mb(found['rss_before'])} before, "
                f"peak {mb(found['rss_peak'])} (+{mb(found['rss_peak'] - found['rss_before'])}; "
                f"goal < 300 MB)"
            )
            for size, got, took in found["claims"]:
                print(
                    f"  one claim of {size} rows from that outbox: {took * 1000:.0f} ms "
                    f"({got} claimed)"
                )
            if found["pace"] is not None:
                label = f"  pace at {args.rate:g}/s from that outbox"
                print(pace_line(label, args.rate, found["pace"]))
        if not args.skip_sender:
            found = await sender_overhead(folder, args.messages, args.profile)
            per_s = found["sent"] / found["seconds"]
            print(
                f"baseline, claim + record by plain UPDATEs ({found['batch']} a batch): "
                f"{found['baseline']:.2f} s ({found['sent'] / found['baseline']:.0f}/s); "
                f"rendering alone: {found['render']:.2f} s "
                f"({found['sent'] / found['render']:.0f}/s)"
            )
            print(
                f"CampaignSender.drain(), instant gateway:  {found['seconds']:.2f} s "
                f"(CPU {found['cpu']:.2f} s), {per_s:.0f} messages/s (goal > 2000/s); "
                f"ratio {found['seconds'] / found['baseline']:.1f} "
                f"(vs UPDATEs + rendering "
                f"{found['seconds'] / (found['baseline'] + found['render']):.1f})"
            )
        if not args.skip_pace:
            found = await pace(folder, args.rate, args.seconds)
            label = f"pace at {args.rate:g}/s, {found['sent']}-row outbox"
            print(pace_line(label, args.rate, found))


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--messages", type=int, default=20_000, help="for the sender's overhead")
    parser.add_argument("--rate", type=float, default=100.0, help="the pace test's msg/s")
    parser.add_argument("--seconds", type=float, default=10.0, help="the pace test's length")
    parser.add_argument(
        "--big-seconds",
        type=float,
        default=5.0,
        help="the pace test on the big store's outbox too, this long (0: skip)",
    )
    parser.add_argument("--profile", action="store_true", help="cProfile the start and drain")
    parser.add_argument("--skip-start", action="store_true")
    parser.add_argument("--skip-sender", action="store_true")
    parser.add_argument("--skip-pace", action="store_true")
    parser.add_argument("--child-start", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--claims", default="25", help=argparse.SUPPRESS)
    return parser.parse_args()


def child(args: argparse.Namespace) -> None:
    sizes = [int(s) for s in args.claims.split(",")]
    if args.profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        found = profiler.runcall(
            asyncio.run, start_child(args.child_start, sizes, args.rate, args.seconds)
        )
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(25)
    else:
        found = asyncio.run(start_child(args.child_start, sizes, args.rate, args.seconds))
    sys.stdout.flush()
    print(json.dumps(found))


if __name__ == "__main__":
    arguments = parse()
    configure_logging("warning", "console")  # the hub's info lines would time the terminal
    if arguments.child_start is not None:
        child(arguments)
    else:
        asyncio.run(main(arguments))
