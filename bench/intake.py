"""Intake benchmark: accepted leads/s over HTTP and processed leads/s, on SQLite and PostgreSQL.

    .venv/bin/python bench/intake.py [--store sqlite|postgresql|both] [--leads N]

*Accepted*: a load generator in its own process posts unique web-form leads over
keep-alive connections for a fixed time, first to a bare aiohttp handler (reads
the form, answers 202) and then to the hub (run as ``hub run``, workers on),
and prints both rates and their ratio. *Accepted, ingress only*: the same with
``intake.process = false`` (another process would turn the inbox into deals):
the burst capacity of the intake. Beside each rate, the server's CPU per
answer (all its threads): the load generator is a Python client sharing the
machine, so the bare handler's rate is bounded by the client; its CPU per
request is what the server itself costs. *Processed*: N leads are put in the
inbox, then the hub's workers (as many as the daemon runs: ``intake.workers``
on PostgreSQL, one on SQLite) turn them into contacts, deals, first tasks,
activities and events; leads/s is N over the time to drain the inbox. About a
third of the leads come from contacts already in the store, in another phone
format, as on a real site.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PG_URL = os.environ.get("HUB_BENCH_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
FIRST_NAMES = ["Иван", "Мария", "Алексей", "Ольга", "Дмитрий", "Анна", "Сергей", "Елена"]
LAST_NAMES = ["Петров", "Смирнова", "Кузнецов", "Попова", "Соколов", "Лебедева", "Новиков"]
FORMATS = ["8 (912) {a}-{b}-{c}", "+7 912 {a}{b}{c}", "912{a}{b}{c}", "+7 (912) {a}-{b}{c}"]


def lead_body(i: int, known: int = 0) -> dict[str, str]:
    """The i-th lead; every third one repeats an earlier person's phone in another format."""
    person = i % known if known and i % 3 == 0 else i
    digits = f"{person:07d}"
    phone = FORMATS[i % len(FORMATS)].format(a=digits[:3], b=digits[3:5], c=digits[5:])
    name = f"{FIRST_NAMES[person % 8]} {LAST_NAMES[person % 7]}"
    return {
        "fio": name,
        "tel": phone,
        "email": f"client{person}@example.ru",
        "comment": f"Заявка номер {i}",
        "utm_source": "yandex",
        "utm_campaign": "autumn",
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- load generator (its own process) --------------------------------------------------------


async def _load(url: str, seconds: float, concurrency: int, offset: int) -> tuple[int, int]:
    ok = errors = 0
    deadline = time.perf_counter() + seconds
    counter = iter(range(offset, offset + 10_000_000))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def client() -> None:
            nonlocal ok, errors
            while time.perf_counter() < deadline:
                async with session.post(url, data=lead_body(next(counter))) as response:
                    await response.read()
                    if 200 <= response.status < 300:
                        ok += 1
                    else:
                        errors += 1

        await asyncio.gather(*(client() for _ in range(concurrency)))
    return ok, errors


def _load_process(url: str, seconds: float, concurrency: int, offset: int, queue: mp.Queue) -> None:
    queue.put(asyncio.run(_load(url, seconds, concurrency, offset)))


@dataclass
class Load:
    rate: float  # 2xx answers per second
    errors: int  # other answers and failures
    server_us: float  # the server process's CPU (all its threads) per 2xx answer, µs


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its threads so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(url: str, seconds: float, concurrency: int, offset: int, server_pid: int) -> Load:
    queue: mp.Queue = mp.Queue()
    proc = mp.Process(target=_load_process, args=(url, seconds, concurrency, offset, queue))
    before = cpu_seconds(server_pid)
    proc.start()
    ok, errors = queue.get()
    used = cpu_seconds(server_pid) - before
    proc.join()
    return Load(ok / seconds, errors, used / max(ok, 1) * 1e6)


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


# -- the baseline: a bare aiohttp handler --------------------------------------------------


def _bare_server(port: int) -> None:
    async def handler(request: web.Request) -> web.Response:
        await request.post()
        return web.json_response({"lead_id": 1}, status=202)

    app = web.Application()
    app.router.add_post("/forms/{form_id}", handler)
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        loop = None
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, loop=loop)


def bare_rate(seconds: float, concurrency: int) -> Load:
    port = free_port()
    proc = mp.Process(target=_bare_server, args=(port,))
    proc.start()
    try:
        wait_port(port)
        assert proc.pid is not None
        return measure(f"http://127.0.0.1:{port}/forms/contact", seconds, concurrency, 0, proc.pid)
    finally:
        proc.terminate()
        proc.join()


def write_config(
    folder: Path, url: str, port: int, process: bool = True, burst_defer: str | None = None
) -> Path:
    example = (ROOT / "config.example.toml").read_text()
    example = example.replace('url = "sqlite+aiosqlite:///var/hub.db"', f'url = "{url}"')
    example = example.replace("port = 8080", f"port = {port}")
    example = example.replace("rate_limit = 20 ", "rate_limit = 100000000 ")
    if not process:
        example = example.replace("process = true ", "process = false ")
    if burst_defer is not None:
        example = example.replace('burst_defer = "30s"', f'burst_defer = "{burst_defer}"')
    path = folder / "config.toml"
    path.write_text(example)
    return path


def _metric(text: str, name: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )


@dataclass
class HubRun:
    rate: float  # accepted leads/s while the load ran
    errors: int
    server_us: float  # the hub process's CPU per accepted lead while the load ran, µs
    drain: float | None = None  # seconds after the load until every accepted lead was processed
    deferred: float = 0.0  # seconds the worker left the CPU to the burst


def hub_accept_rate(
    url: str,
    seconds: float,
    concurrency: int,
    folder: Path,
    process: bool = True,
    burst_defer: str | None = None,
) -> HubRun:
    """Run ``hub run`` on a fresh store, load it, and (workers on) wait for the backlog."""
    port = free_port()
    config = write_config(folder, url, port, process, burst_defer)
    env = {**os.environ, "HUB_CONFIG": str(config)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub", "run"],
        cwd=folder,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port)
        load = measure(f"http://127.0.0.1:{port}/forms/contact", seconds, concurrency, 0, proc.pid)
        run = HubRun(load.rate, load.errors, load.server_us)
        if process:
            ended = time.perf_counter()
            while time.perf_counter() - ended < 600:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as response:
                    text = response.read().decode()
                accepted = _metric(text, "hub_events_accepted_total")
                if _metric(text, "hub_events_processed_total") >= accepted:
                    run.drain = time.perf_counter() - ended
                    run.deferred = _metric(text, "hub_worker_deferred_seconds_total")
                    break
                time.sleep(0.1)
        return run
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)


# -- processing ----------------------------------------------------------------------------


async def processed_rate(url: str, leads: int) -> float:
    from hub.config import load_settings
    from hub.context import Hub
    from hub.intake import Worker
    from hub.leads import LeadPipeline
    from hub.logging import configure_logging
    from plugins.webforms.mapping import map_fields

    configure_logging("warning", "json")  # the hub runs above log at the example's "info"

    folder = Path(tempfile.mkdtemp(prefix="hub-bench-"))
    try:
        settings = load_settings(write_config(folder, url, free_port()))
        hub = Hub(settings, start_workers=False)
        await hub.start()
        form = hub.plugins.records["webforms"].instance.config.forms["contact"]
        chunk = 1000
        for start in range(0, leads, chunk):
            batch = []
            for i in range(start, min(leads, start + chunk)):
                fields = {k: [v] for k, v in lead_body(i, known=leads // 2).items()}
                lead, _ = map_fields(form, fields, {}, "RU")
                batch.append(
                    hub.intake.accept(
                        "webforms",
                        {"form": "contact", "lead": lead, "submission": {}},
                        external_id=f"bench-{i}",
                    )
                )
            await asyncio.gather(*batch)
        pipeline = LeadPipeline(hub.catalog, settings, hub.reserve)
        # As many workers as the daemon runs: intake.workers on PostgreSQL, one on SQLite.
        count = 1 if hub.store.is_sqlite else settings.intake.workers
        workers = [
            Worker(hub.store, settings.intake, pipeline, hub.parse_lead, hub.metrics)
            for _ in range(count)
        ]

        async def drain(worker: Worker) -> int:
            done = 0
            while n := await worker.run_once():
                done += n
            return done

        started = time.perf_counter()
        done = sum(await asyncio.gather(*(drain(w) for w in workers)))
        elapsed = time.perf_counter() - started
        await hub.stop()
        assert done == leads, (done, leads)
        return leads / elapsed
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def fresh_pg_database(suffix: str) -> str:
    import asyncpg

    name = f"hub_bench_{os.getpid()}_{suffix}"
    admin = PG_URL.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(admin)
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    return PG_URL.rsplit("/", 1)[0] + "/" + name


def fresh_store(store: str, folder: Path, name: str) -> str:
    if store == "sqlite":
        return f"sqlite+aiosqlite:///{folder}/{name}.db"
    return asyncio.run(fresh_pg_database(name))


def median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--leads", type=int, default=20000, help="leads to process")
    parser.add_argument("--seconds", type=float, default=6.0, help="HTTP load per run")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each, medians printed")
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()

    print(
        f"# crm-hub intake benchmark, {os.cpu_count()} cores, {args.leads} leads processed, "
        f"{args.seconds:.0f} s of HTTP load at concurrency {args.concurrency}, "
        f"median of {args.rounds} rounds (bare and hub alternating, a fresh store each run)"
    )
    stores = ["sqlite", "postgresql"] if args.store == "both" else [args.store]
    bare: list[Load] = []
    runs: dict[tuple[str, str], list[HubRun]] = {}
    variants = {
        "default": {},  # workers on, burst_defer = 30s
        "alongside": {"burst_defer": "0s"},  # workers take their share during the load
        "ingress": {"process": False},
    }
    for round_no in range(args.rounds):
        bare.append(bare_rate(args.seconds, args.concurrency))
        for store in stores:
            for variant, options in variants.items():
                with tempfile.TemporaryDirectory(prefix="hub-bench-") as tmp:
                    url = fresh_store(store, Path(tmp), f"{variant}{round_no}")
                    run = hub_accept_rate(url, args.seconds, args.concurrency, Path(tmp), **options)
                runs.setdefault((store, variant), []).append(run)
    base = median([b.rate for b in bare])
    bare_us = median([b.server_us for b in bare])
    print(
        f"bare aiohttp handler:           {base:7.0f} req/s (baseline; runs "
        f"{_list([b.rate for b in bare])}; server CPU {bare_us:.0f} µs/req)"
    )
    for store in stores:
        for variant, label in (
            ("default", "accepted, workers on:"),
            ("alongside", "accepted, burst_defer=0:"),
            ("ingress", "accepted, ingress only:"),
        ):
            results = runs[(store, variant)]
            rate = median([r.rate for r in results])
            ratio = median([r.rate / b.rate for r, b in zip(results, bare, strict=True)])
            cpu = median([r.server_us for r in results])
            errors = sum(r.errors for r in results)
            extra = ""
            if results[0].drain is not None:
                drain = median([r.drain or 0.0 for r in results])
                deferred = median([r.deferred for r in results])
                extra = f"; all processed {drain:.1f} s after the load; deferred {deferred:.1f} s"
            print(
                f"{store:10} {label:26} {rate:7.0f} leads/s  ratio to bare {ratio:.2f}  "
                f"(hub CPU {cpu:.0f} µs/lead; non-2xx: {errors}{extra})"
            )
        with tempfile.TemporaryDirectory(prefix="hub-bench-") as tmp:
            url = fresh_store(store, Path(tmp), "proc")
            processed = asyncio.run(processed_rate(url, args.leads))
        print(
            f"{store:10} {'processed:':26} {processed:7.0f} leads/s  "
            f"(normalized, matched, contact+deal+task+activity+events)"
        )


def _list(values: list[float]) -> str:
    return " ".join(f"{v:.0f}" for v in values)


if __name__ == "__main__":
    main()
