"""Intake benchmark: accepted leads/s over HTTP (driven by wrk) and processed leads/s.

    .venv/bin/python bench/intake.py [--store sqlite|postgresql|both] [--leads N]
        [--seconds S] [--rounds R] [--connections C] [--hub-root PATH] [--gc-freeze]

*Accepted*: ``wrk`` (``bench/intake.lua``: every request posts a different
web-form lead, so content deduplication hides no work) loads a bare aiohttp
handler (reads the form, answers 202), then the hub (``hub run`` on a fresh
store) for the same time over the same number of keep-alive connections. Each
rate is printed with p50/p99 latency and its ratio to the bare handler of the
same round. Variants: the daemon as configured (workers on, deferring to the
burst), ``burst_defer = "0s"`` (workers alongside), and ``intake.process =
false`` (ingress only: the burst capacity of the intake). After each run the
store is checked: its inbox holds every lead answered 2xx and at most the
posts wrk sent (the difference was in flight when wrk stopped), the hub's own
counter agrees, nothing was a duplicate, and (workers on) every row is done.

*Processed*: ``--leads`` leads are posted to an ingress-only hub; then ``hub
run`` with workers starts on that store (as many workers as the daemon runs:
one on SQLite, ``intake.workers`` on PostgreSQL) and turns them into contacts,
deals, first tasks, activities and events. The rate is taken from the store:
the events of each batch share its ``processed_at``, so leads/s is the leads
of every batch but the last over the time from the first batch to the last.
A third of the leads give the phone of an earlier person in another format.

Under each accepted rate: worker batches that finished during the load (from
the hub's log) and the full garbage collections then, with the longest pause
(the hub runs as ``python bench/hub_gc.py run``: the same ``hub run``, with
``gc.callbacks`` recording); ``--gc-freeze`` has the hub freeze its start-up
heap once ready. Both explain the p99 (docs/operations.md, Benchmarks).

``--hub-root PATH`` runs the hub of another checkout (``PYTHONPATH`` set to it,
its own ``config.example.toml``); ``--python`` picks the interpreter (default:
``PATH/.venv/bin/python`` if there is one, else this one). The header names
the files the hub really imports. ``--hub-env NAME=VALUE`` sets any option for
every hub run. The last line gives the CPU other processes used meanwhile: the
noise. PostgreSQL databases the benchmark creates are dropped at the end, on
failure and on Ctrl-C/SIGTERM alike.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import re
import resource
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
LUA = HERE / "intake.lua"
HUB_GC = HERE / "hub_gc.py"
FORM_PATH = "/forms/contact"
PG_URL = os.environ.get("HUB_BENCH_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
DB_PREFIX = "hub_bench_"
CLK = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    pass


# -- processes this run started (ended on any exit) -------------------------------------------

_children: list[subprocess.Popen[bytes] | mp.Process] = []


def _end_children() -> None:
    for child in reversed(_children):
        if isinstance(child, mp.Process):
            if child.is_alive():
                child.terminate()
            child.join(10)
        elif child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(60)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
    _children.clear()


def _die_with_parent() -> None:
    """In a child: SIGTERM when the benchmark dies, even by kill -9 (Linux prctl)."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _sigterm(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt  # unwinds through every finally: children ended, databases dropped


# -- PostgreSQL databases ------------------------------------------------------------------


def _pg_dsn(database: str) -> str:
    return (
        PG_URL.replace("postgresql+asyncpg://", "postgresql://").rsplit("/", 1)[0] + "/" + database
    )


class PgDatabases:
    """Databases named ``hub_bench_<pid>_<n>``, all dropped by :meth:`drop_all`."""

    def __init__(self) -> None:
        self.created: list[str] = []

    @staticmethod
    async def _admin(*statements: str) -> None:
        import asyncpg

        conn = await asyncpg.connect(_pg_dsn(PG_URL.rsplit("/", 1)[1]))
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    def create(self) -> str:
        name = f"{DB_PREFIX}{os.getpid()}_{len(self.created)}"
        self.created.append(name)  # before CREATE: a half-made database is dropped too
        asyncio.run(
            self._admin(
                f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"'
            )
        )
        return name

    def drop_all(self) -> list[str]:
        """Drop every database this run created; returns the ones it could not drop."""
        left = []
        for name in self.created:
            try:
                asyncio.run(self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            except Exception as error:
                print(f"# could not drop database {name}: {error!r}", file=sys.stderr)
                left.append(name)
        self.created = left
        return left

    @staticmethod
    def drop_orphans() -> list[str]:
        """Drop ``hub_bench_<pid>_*`` databases of runs whose process is gone (a kill -9)."""

        async def names() -> list[str]:
            import asyncpg

            conn = await asyncpg.connect(_pg_dsn(PG_URL.rsplit("/", 1)[1]))
            try:
                rows = await conn.fetch(
                    "SELECT datname FROM pg_database WHERE datname LIKE $1", DB_PREFIX + "%"
                )
                return [r["datname"] for r in rows]
            finally:
                await conn.close()

        gone = []
        for name in asyncio.run(names()):
            match = re.fullmatch(rf"{DB_PREFIX}(\d+)_\d+", name)
            if match and not Path(f"/proc/{match.group(1)}").exists():
                asyncio.run(PgDatabases._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                gone.append(name)
        return gone


# -- a store: fresh per run, read back after it ------------------------------------------


@dataclass
class Store:
    kind: str  # sqlite | postgresql
    url: str  # SQLAlchemy URL for the hub
    path: Path | None = None  # SQLite file
    database: str | None = None  # PostgreSQL database

    @classmethod
    def fresh(cls, kind: str, folder: Path, databases: PgDatabases) -> Store:
        if kind == "sqlite":
            path = folder / "hub.db"
            return cls(kind, f"sqlite+aiosqlite:///{path}", path=path)
        name = databases.create()
        return cls(kind, PG_URL.rsplit("/", 1)[0] + "/" + name, database=name)

    def query(self, sql: str) -> list[tuple]:
        if self.path is not None:
            with sqlite3.connect(f"file:{self.path}?mode=ro", uri=True) as db:
                return db.execute(sql).fetchall()

        async def run() -> list[tuple]:
            import asyncpg

            conn = await asyncpg.connect(_pg_dsn(self.database or ""))
            try:
                return [tuple(r) for r in await conn.fetch(sql)]
            finally:
                await conn.close()

        return asyncio.run(run())

    def statuses(self) -> dict[str, int]:
        return dict(self.query("SELECT status, count(*) FROM inbox GROUP BY status"))

    def batches(self) -> list[tuple[datetime, int]]:
        """(processed_at, events) per batch, in order: a batch stamps its events alike."""
        rows = self.query(
            "SELECT processed_at, count(*) FROM inbox WHERE status = 'done'"
            " GROUP BY processed_at ORDER BY processed_at"
        )
        out = []
        for at, n in rows:
            if isinstance(at, str):
                at = datetime.fromisoformat(at)
            out.append((at if at.tzinfo else at.replace(tzinfo=UTC), n))
        return out


# -- wrk ----------------------------------------------------------------------------------


@dataclass
class Load:
    seconds: float  # wrk's own duration
    ok: int  # 2xx answers to posts
    other: int  # other answers to posts
    sent: int  # posts wrk wrote
    socket_errors: int  # connect/read/write errors and timeouts
    p50: float  # latency of every answer, ms
    p99: float
    max: float
    server_us: float  # the server process's CPU (all its threads) per 2xx answer, µs
    wrk_cores: float  # wrk's own CPU over the run
    other_cores: float  # CPU of everything else on the machine (PostgreSQL's server included)
    started: float  # time.time() of the load
    ended: float

    @property
    def rate(self) -> float:
        return self.ok / self.seconds


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its threads so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def machine_busy() -> float:
    """CPU seconds all cores spent not idle (Linux /proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(values[:8]) - values[3] - values[4]) / CLK


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_wrk(
    url: str,
    seconds: float,
    args: argparse.Namespace,
    server_pid: int,
    *,
    quota: int = 0,
    finished: Callable[[], bool] | None = None,
) -> Load:
    """Run wrk against ``url``; with ``quota``, post leads 0..quota-1 once, until ``finished()``."""
    command = [
        args.wrk,
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{int(seconds)}s",
        "--timeout",
        "30s",
        "-s",
        str(LUA),
        url,
        "--",
        FORM_PATH,
        str(args.threads),
        str(quota),
    ]
    server_before, busy_before, wrk_before = cpu_seconds(server_pid), machine_busy(), children_cpu()
    started = time.time()
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=_die_with_parent
    )
    _children.append(proc)
    if finished is not None:
        # wrk sleeps its whole duration; once the hub stored every post, let the last
        # answers arrive (the Lua threads stop themselves then) and interrupt it.
        while proc.poll() is None and not finished():
            time.sleep(0.2)
        time.sleep(0.5)
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    out, err = proc.communicate()
    _children.remove(proc)
    ended = time.time()
    server = cpu_seconds(server_pid) - server_before
    wrk = children_cpu() - wrk_before
    busy = machine_busy() - busy_before
    line = next((ln for ln in out.decode().splitlines() if ln.startswith("BENCH_JSON ")), None)
    if line is None:
        raise BenchError(f"wrk gave no summary (exit {proc.returncode}): {err.decode()[-500:]}")
    data = json.loads(line.removeprefix("BENCH_JSON "))
    wall = ended - started
    return Load(
        seconds=data["duration_us"] / 1e6,
        ok=data["ok"],
        other=data["other"],
        sent=data["sent"],
        socket_errors=sum(data[k] for k in ("connect_errors", "read_errors", "write_errors"))
        + data["timeouts"],
        p50=data["p50_us"] / 1000,
        p99=data["p99_us"] / 1000,
        max=data["max_us"] / 1000,
        server_us=server / max(data["ok"], 1) * 1e6,
        wrk_cores=wrk / wall,
        other_cores=max(0.0, busy - server - wrk) / wall,
        started=started,
        ended=ended,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen[bytes] | mp.Process, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        alive = proc.is_alive() if isinstance(proc, mp.Process) else proc.poll() is None
        if not alive:
            raise BenchError(f"the server exited before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise BenchError(f"nothing listens on {port}")


# -- the baseline: a bare aiohttp handler --------------------------------------------------


def _bare_server(port: int) -> None:
    _die_with_parent()
    from aiohttp import web

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


def bare_load(args: argparse.Namespace) -> Load:
    port = free_port()
    proc = mp.Process(target=_bare_server, args=(port,))
    proc.start()
    _children.append(proc)
    try:
        wait_port(port, proc)
        assert proc.pid is not None
        return run_wrk(f"http://127.0.0.1:{port}", args.seconds, args, proc.pid)
    finally:
        proc.terminate()
        proc.join(10)
        _children.remove(proc)


# -- the hub --------------------------------------------------------------------------------


class Hub:
    """``hub run`` of ``--hub-root`` on a store, through bench/hub_gc.py."""

    def __init__(self, args: argparse.Namespace, folder: Path, store: Store, **overrides: str):
        self.args = args
        self.folder = folder
        self.port = free_port()
        self.log = folder / "hub.log"
        self.gc_out = folder / "gc.json"
        config = folder / "config.toml"
        if not config.exists():
            config.write_text((args.hub_root / "config.example.toml").read_text())
        self.env = {
            **os.environ,
            **hub_env(args),
            "HUB_CONFIG": str(config),
            "HUB__STORE__URL": store.url,
            "HUB__HUB__PORT": str(self.port),
            "HUB__LOG__FORMAT": "json",
            # one client address sends everything: the form's per-IP limit would answer 429
            "HUB__PLUGINS__WEBFORMS__FORMS__CONTACT__RATE_LIMIT": "1000000000",
            "HUB_BENCH_GC_OUT": str(self.gc_out),
            "HUB_BENCH_GC_FREEZE": "1" if args.gc_freeze else "0",
            **{f"HUB__INTAKE__{k.upper()}": v for k, v in overrides.items()},
            **dict(item.split("=", 1) for item in args.hub_env),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Hub:
        for stale in (self.gc_out, Path(f"{self.gc_out}.frozen")):
            stale.unlink(missing_ok=True)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(self.args.python), str(HUB_GC), "run"],
                cwd=self.folder,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                preexec_fn=_die_with_parent,
            )
        _children.append(self.proc)
        try:
            wait_port(self.port, self.proc)
            self.wait_ready()
            deadline = time.time() + 30
            while self.args.gc_freeze and not Path(f"{self.gc_out}.frozen").exists():
                if time.time() > deadline:
                    raise BenchError("the hub did not freeze its heap in 30 s")
                time.sleep(0.05)
        except BenchError as error:
            self.stop()
            raise BenchError(f"{error}; the hub's log ends:\n{self.log_tail()}") from None
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def wait_ready(self, timeout: float = 120) -> None:
        """Until /readyz answers 200: a hub may listen before its store and plugins are up."""
        deadline = time.time() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=5) as response:
                    if response.status == 200:
                        return
            except OSError:  # HTTPError (503) included
                pass
            if time.time() > deadline:
                raise BenchError(f"the hub was not ready in {timeout:.0f} s")
            if self.proc is None or self.proc.poll() is not None:
                raise BenchError("the hub exited before it was ready")
            time.sleep(0.1)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        _children.remove(self.proc)
        self.proc = None

    def metric(self, *names: str) -> list[float]:
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=30) as response:
            text = response.read().decode()
        return [
            sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith(name) and not line.startswith("#")
            )
            for name in names
        ]

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def batches_between(self, start: float, end: float) -> int:
        """Worker batches the hub logged as finished between two time.time() marks."""
        count = 0
        for line in self.log.read_text(errors="replace").splitlines():
            if '"batch_processed"' not in line:
                continue
            try:
                stamp = datetime.fromisoformat(json.loads(line)["timestamp"]).timestamp()
            except (ValueError, KeyError):
                continue
            count += start <= stamp <= end
        return count

    def gc_between(self, start: float, end: float) -> tuple[int, float]:
        """Full (generation 2) collections that ended between two marks, and the longest, ms."""
        try:
            pauses = json.loads(self.gc_out.read_text())["pauses"]
        except (OSError, ValueError, KeyError):
            return 0, float("nan")
        full = [p[2] * 1000 for p in pauses if p[1] == 2 and start <= p[0] <= end]
        return len(full), max(full, default=0.0)


def hub_env(args: argparse.Namespace) -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    return {"PYTHONPATH": str(args.hub_root) + (os.pathsep + path if path else "")}


def imported_from(args: argparse.Namespace) -> list[str]:
    """The files the hub's interpreter imports ``hub`` and the web-form plugin from."""
    code = "import hub, plugins.webforms\nprint(hub.__file__); print(plugins.webforms.__file__)"
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [str(args.python), "-c", code],
            cwd=tmp,
            env={**os.environ, **hub_env(args)},
            capture_output=True,
            text=True,
            check=True,
        )
    files = out.stdout.split()
    for file in files:
        if not Path(file).resolve().is_relative_to(args.hub_root):
            raise BenchError(f"{file} is not under --hub-root {args.hub_root}")
    return files


# -- one run of each kind ---------------------------------------------------------------


@dataclass
class HubRun:
    load: Load
    stored: int  # rows in the inbox after the run
    drain: float | None = None  # seconds after the load until the hub had processed everything
    deferred: float = 0.0  # seconds the workers left the CPU to the burst
    batches: int = 0  # worker batches that finished during the load
    gc_full: int = 0  # full collections during the load ...
    gc_max: float = 0.0  # ... and the longest, ms
    problems: list[str] = field(default_factory=list)


def accept_run(
    args: argparse.Namespace, kind: str, databases: PgDatabases, **overrides: str
) -> HubRun:
    """Load ``hub run`` on a fresh store; with workers on, wait until it processed everything."""
    process = overrides.get("process", "true") == "true"
    with tempfile.TemporaryDirectory(prefix="hub-bench-") as tmp:
        store = Store.fresh(kind, Path(tmp), databases)
        hub = Hub(args, Path(tmp), store, **overrides)
        with hub:
            load = run_wrk(hub.url, args.seconds, args, hub.pid)
            drain = deferred = None
            deadline = time.time() + 600
            while True:  # the posts still in flight when wrk stopped are stored in a moment
                accepted, duplicates, processed, deferred = hub.metric(
                    "hub_events_accepted_total",
                    "hub_events_duplicate_total",
                    "hub_events_processed_total",
                    "hub_worker_deferred_seconds_total",
                )
                if (not process or processed >= accepted) and accepted >= load.ok:
                    if process:
                        drain = time.time() - load.ended
                    break
                if time.time() > deadline:
                    raise BenchError(
                        f"{kind}: {processed:.0f} of {accepted:.0f} processed in 600 s"
                    )
                time.sleep(0.2)
            time.sleep(0.3)
            accepted, duplicates = hub.metric(
                "hub_events_accepted_total", "hub_events_duplicate_total"
            )
        statuses = store.statuses()
        stored = sum(statuses.values())
        run = HubRun(load, stored, drain, deferred or 0.0)
        run.batches = hub.batches_between(load.started, load.ended)
        run.gc_full, run.gc_max = hub.gc_between(load.started, load.ended)
        label = f"{kind} {overrides or 'default'}"
        if not load.ok <= stored <= load.sent:
            run.problems.append(
                f"{label}: {stored} rows stored, {load.ok} answered 2xx, {load.sent} sent"
            )
        if stored != accepted:
            run.problems.append(f"{label}: {stored} rows stored, the hub counted {accepted:.0f}")
        if duplicates:
            run.problems.append(f"{label}: {duplicates:.0f} posts were taken for duplicates")
        if process and statuses.get("done", 0) != stored:
            run.problems.append(f"{label}: rows by status after processing {statuses}")
        if load.other or load.socket_errors:
            run.problems.append(
                f"{label}: {load.other} non-2xx answers, {load.socket_errors} socket errors"
            )
    return run


@dataclass
class Processed:
    rate: float  # leads/s
    leads: int
    batches: int
    interval: float  # ms from one batch's start to the next (its length with one worker)
    other_cores: float  # CPU of other processes (PostgreSQL's server included) meanwhile
    problems: list[str] = field(default_factory=list)


def processed_run(args: argparse.Namespace, kind: str, databases: PgDatabases) -> Processed:
    """Post ``--leads`` leads to an ingress-only hub, then time ``hub run`` working them off."""
    n = args.leads
    problems = []
    with tempfile.TemporaryDirectory(prefix="hub-bench-") as tmp:
        store = Store.fresh(kind, Path(tmp), databases)
        with Hub(args, Path(tmp), store, process="false") as ingress:

            def all_stored() -> bool:
                return ingress.metric("hub_events_accepted_total")[0] >= n

            fill = run_wrk(
                ingress.url, 60 + n / 100, args, ingress.pid, quota=n, finished=all_stored
            )
        if fill.ok != n or fill.sent != n or store.statuses() != {"pending": n}:
            raise BenchError(
                f"{kind}: filling the inbox: {fill.ok} of {fill.sent} posts answered 2xx, "
                f"store {store.statuses()}"
            )
        busy, started = machine_busy(), time.time()
        with Hub(args, Path(tmp), store) as hub:
            deadline = time.time() + 600
            while hub.metric("hub_events_processed_total")[0] < n:
                if time.time() > deadline or hub.proc is None or hub.proc.poll() is not None:
                    raise BenchError(f"{kind}: not processed in time:\n{hub.log_tail()}")
                time.sleep(0.25)
            own = cpu_seconds(hub.pid)
            other = max(0.0, machine_busy() - busy - own) / (time.time() - started)
        statuses = store.statuses()
        if statuses != {"done": n}:
            problems.append(f"{kind} processed: rows by status {statuses}")
        batches = store.batches()
    if len(batches) < 3:
        raise BenchError(f"{kind}: {len(batches)} batches: use more --leads")
    span = (batches[-1][0] - batches[0][0]).total_seconds()
    done = sum(b[1] for b in batches[:-1])
    interval = span / (len(batches) - 1) * 1000
    return Processed(done / span, n, len(batches), interval, other, problems)


# -- the report -----------------------------------------------------------------------------


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _runs(values: list[float], fmt: str = "{:.0f}") -> str:
    return " ".join(fmt.format(v) for v in values)


def report_bare(bare: list[Load]) -> None:
    print(
        f"bare aiohttp handler:          {_median([b.rate for b in bare]):7.0f} req/s     "
        f"         p50 {_median([b.p50 for b in bare]):5.1f} ms  "
        f"p99 {_median([b.p99 for b in bare]):6.1f} ms"
    )
    print(
        f"    runs {_runs([b.rate for b in bare])} req/s;"
        f" p99 {_runs([b.p99 for b in bare], '{:.1f}')} ms;"
        f" server CPU {_median([b.server_us for b in bare]):.0f} µs/req;"
        f" wrk {_median([b.wrk_cores for b in bare]):.2f} cores"
    )


def report_hub(store: str, label: str, results: list[HubRun], bare: list[Load]) -> None:
    loads = [r.load for r in results]
    ratios = [r.load.rate / b.rate for r, b in zip(results, bare, strict=True)]
    print(
        f"{store:10} {label:19}{_median([x.rate for x in loads]):7.0f} leads/s  "
        f"{_median(ratios):.2f} of bare  p50 {_median([x.p50 for x in loads]):5.1f} ms  "
        f"p99 {_median([x.p99 for x in loads]):6.1f} ms"
    )
    extra = ""
    if results[0].drain is not None:
        extra = (
            f"; all processed {_median([r.drain or 0.0 for r in results]):.1f} s after the load"
            f" (deferred {_median([r.deferred for r in results]):.1f} s)"
        )
    print(
        f"    runs {_runs([x.rate for x in loads])} leads/s; ratios {_runs(ratios, '{:.2f}')};"
        f" p99 {_runs([x.p99 for x in loads], '{:.1f}')} ms; max"
        f" {_runs([x.max for x in loads], '{:.0f}')} ms; hub CPU"
        f" {_median([x.server_us for x in loads]):.0f} µs/lead{extra}"
    )
    print(
        f"    during the load: worker batches {_runs([r.batches for r in results])};"
        f" full GCs {_runs([r.gc_full for r in results])}, longest"
        f" {_runs([r.gc_max for r in results])} ms; in flight at the end"
        f" {_runs([r.stored - r.load.ok for r in results])}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--leads", type=int, default=20000, help="leads to process")
    parser.add_argument("--seconds", type=float, default=6.0, help="HTTP load per run")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each, medians printed")
    parser.add_argument("--connections", "--concurrency", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--hub-root", type=Path, default=ROOT, help="checkout whose hub to run")
    parser.add_argument("--python", type=Path, help="interpreter for the hub")
    parser.add_argument(
        "--gc-freeze", action="store_true", help="the hub freezes its start-up heap (gc.freeze)"
    )
    parser.add_argument(
        "--hub-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for every hub run, e.g. HUB__INTAKE__BATCH_SIZE=64",
    )
    parser.add_argument(
        "--variants",
        default="default,alongside,ingress,processed",
        help="comma-separated subset of default,alongside,ingress,processed",
    )
    args = parser.parse_args()
    args.hub_root = args.hub_root.resolve()
    if args.python is None:
        own = args.hub_root / ".venv" / "bin" / "python"
        args.python = own if own.exists() else Path(sys.executable)
    args.wrk = shutil.which("wrk")
    if args.wrk is None:
        sys.exit("wrk is not installed: apt-get install -y wrk (make bench does it)")
    variants = args.variants.split(",")
    signal.signal(signal.SIGTERM, _sigterm)
    databases = PgDatabases()
    stores = ["sqlite", "postgresql"] if args.store == "both" else [args.store]
    problems: list[str] = []
    try:
        if "postgresql" in stores:
            orphans = PgDatabases.drop_orphans()
            if orphans:
                print(f"# dropped databases of earlier runs that were killed: {' '.join(orphans)}")
        files = imported_from(args)
        commit = subprocess.run(
            ["git", "-C", str(args.hub_root), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        print(
            f"# crm-hub intake benchmark: hub of {args.hub_root} ({commit or 'no git'}), "
            f"imported from {', '.join(files)}; python {args.python}"
            f"{'; gc.freeze() after start-up' if args.gc_freeze else ''}"
            f"{''.join('; ' + item for item in args.hub_env)}"
        )
        print(
            f"# {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; wrk -t{args.threads} "
            f"-c{args.connections}, {args.seconds:.0f} s per load; median of {args.rounds} rounds "
            f"(bare and hub alternating, a fresh store each run); processed: {args.leads} leads"
        )
        options = {
            "default": {},  # workers on, burst_defer = 30s
            "alongside": {"burst_defer": "0s"},  # workers take their share during the load
            "ingress": {"process": "false"},
        }
        bare: list[Load] = []
        runs: dict[tuple[str, str], list[HubRun]] = {}
        processed: dict[str, list[Processed]] = {}
        for round_no in range(args.rounds):
            bare.append(bare_load(args))
            for store in stores:
                for variant, overrides in options.items():
                    if variant in variants:
                        run = accept_run(args, store, databases, **overrides)
                        runs.setdefault((store, variant), []).append(run)
                        problems += run.problems
                if "processed" in variants:
                    result = processed_run(args, store, databases)
                    processed.setdefault(store, []).append(result)
                    problems += result.problems
            print(f"# round {round_no + 1} done", file=sys.stderr, flush=True)
        report_bare(bare)
        for store in stores:
            for variant, label in (
                ("default", "accepted, workers:"),
                ("alongside", "accepted, alongside:"),
                ("ingress", "accepted, ingress:"),
            ):
                if (store, variant) in runs:
                    report_hub(store, label, runs[(store, variant)], bare)
            if store in processed:
                results = processed[store]
                print(
                    f"{store:10} {'processed:':19}{_median([r.rate for r in results]):7.0f} leads/s"
                    f"  (runs {_runs([r.rate for r in results])}; {results[0].leads} leads in "
                    f"{_runs([r.batches for r in results])} batches, one every "
                    f"{_runs([r.interval for r in results])} ms; other processes "
                    f"{_runs([r.other_cores for r in results], '{:.2f}')} cores)"
                )
        noise = []
        for kinds, label in ((["sqlite"], "bare and SQLite"), (["postgresql"], "PostgreSQL")):
            per_round = [
                _median(
                    [bare[i].other_cores]
                    + [rs[i].load.other_cores for (s, _), rs in runs.items() if s in kinds]
                )
                for i in range(args.rounds)
            ]
            if label == "bare and SQLite" or any(s in kinds for s, _ in runs):
                noise.append(f"{label} loads {_runs(per_round, '{:.2f}')}")
        print(
            f"# noise: cores other processes used during the loads, median per round: "
            f"{'; '.join(noise)} (PostgreSQL's server counts there); load "
            f"{os.getloadavg()[0]:.2f} at the end"
        )
        if problems:
            print("# CHECKS FAILED:\n#   " + "\n#   ".join(problems))
        else:
            print(
                "# checks: every run stored each 2xx-answered lead, at most the posts wrk sent, "
                "the hub's count, no duplicates; processed runs left every row done"
            )
    finally:
        _end_children()
        left = databases.drop_all()
        if left:
            print(f"# databases left behind: {' '.join(left)}", file=sys.stderr)
    if problems:
        sys.exit(1)


if __name__ == "__main__":
    main()
