"""Intake benchmark: accepted leads/s over HTTP and processed leads/s, on SQLite and PostgreSQL.

    .venv/bin/python bench/intake.py [--store sqlite|postgresql|both] [--leads N]

*Accepted*: a load generator in its own process posts unique web-form leads over
keep-alive connections for a fixed time, first to a bare aiohttp handler (reads
the form, answers 202) and then to the hub (run as ``hub run``, workers on),
and prints both rates and their ratio. *Accepted, ingress only*: the same with
``intake.process = false`` (another process would turn the inbox into deals):
the burst capacity of the intake. *Processed*: N leads are put in the
inbox, then the hub's worker turns them into contacts, deals, first tasks,
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
import subprocess
import sys
import tempfile
import time
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


def measure(url: str, seconds: float, concurrency: int, offset: int) -> tuple[float, int]:
    queue: mp.Queue = mp.Queue()
    proc = mp.Process(target=_load_process, args=(url, seconds, concurrency, offset, queue))
    proc.start()
    ok, errors = queue.get()
    proc.join()
    return ok / seconds, errors


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


def bare_rate(seconds: float, concurrency: int) -> float:
    port = free_port()
    proc = mp.Process(target=_bare_server, args=(port,))
    proc.start()
    try:
        wait_port(port)
        rate, _ = measure(f"http://127.0.0.1:{port}/forms/contact", seconds, concurrency, 0)
        return rate
    finally:
        proc.terminate()
        proc.join()


def write_config(folder: Path, url: str, port: int, process: bool = True) -> Path:
    example = (ROOT / "config.example.toml").read_text()
    example = example.replace('url = "sqlite+aiosqlite:///var/hub.db"', f'url = "{url}"')
    example = example.replace("port = 8080", f"port = {port}")
    example = example.replace('level = "info"', 'level = "warning"')
    example = example.replace("rate_limit = 20 ", "rate_limit = 100000000 ")
    if not process:
        example = example.replace("process = true ", "process = false ")
    path = folder / "config.toml"
    path.write_text(example)
    return path


def hub_accept_rate(
    url: str, seconds: float, concurrency: int, folder: Path, process: bool = True
) -> tuple[float, int]:
    port = free_port()
    config = write_config(folder, url, port, process)
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
        return measure(f"http://127.0.0.1:{port}/forms/contact", seconds, concurrency, 0)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)


# -- processing ----------------------------------------------------------------------------


async def processed_rate(url: str, leads: int) -> float:
    from hub.config import load_settings
    from hub.context import Hub
    from hub.intake import Worker
    from hub.leads import LeadPipeline
    from plugins.webforms.mapping import map_fields

    folder = Path(tempfile.mkdtemp(prefix="hub-bench-"))
    try:
        settings = load_settings(write_config(folder, url, free_port()))
        settings.log.level = "warning"
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
        worker = Worker(hub.store, settings.intake, pipeline, hub.parse_lead, hub.metrics)
        started = time.perf_counter()
        done = 0
        while True:
            n = await worker.run_once()
            if n == 0:
                break
            done += n
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--leads", type=int, default=20000, help="leads to process")
    parser.add_argument("--seconds", type=float, default=8.0, help="HTTP load duration")
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()

    print(
        f"# crm-hub intake benchmark, {os.cpu_count()} cores, {args.leads} leads processed, "
        f"{args.seconds:.0f} s of HTTP load at concurrency {args.concurrency}"
    )
    bare = bare_rate(args.seconds, args.concurrency)
    print(f"bare aiohttp handler:        {bare:8.0f} req/s (baseline)")
    stores = ["sqlite", "postgresql"] if args.store == "both" else [args.store]
    for store in stores:
        with tempfile.TemporaryDirectory(prefix="hub-bench-") as tmp:
            if store == "sqlite":
                url_http = f"sqlite+aiosqlite:///{tmp}/http.db"
                url_proc = f"sqlite+aiosqlite:///{tmp}/proc.db"
            else:
                url_http = asyncio.run(fresh_pg_database("http"))
                url_proc = asyncio.run(fresh_pg_database("proc"))
            accepted, errors = hub_accept_rate(url_http, args.seconds, args.concurrency, Path(tmp))
            burst, burst_errors = hub_accept_rate(
                url_http, args.seconds, args.concurrency, Path(tmp), process=False
            )
            processed = asyncio.run(processed_rate(url_proc, args.leads))
        print(
            f"{store:10} accepted:         {accepted:8.0f} leads/s  "
            f"ratio to bare {accepted / bare:.2f}  (non-2xx: {errors})"
        )
        print(
            f"{store:10} accepted, ingress only: {burst:8.0f} leads/s  ratio to bare "
            f"{burst / bare:.2f}  (intake.process = false; non-2xx: {burst_errors})"
        )
        print(
            f"{store:10} processed:        {processed:8.0f} leads/s  "
            f"(normalized, matched, contact+deal+task+activity+events)"
        )


if __name__ == "__main__":
    main()
