"""Assembling the aiohttp application: operations endpoints, the API, plugin routes.

Starting the app starts the hub. A store that does not answer yet does not stop
the daemon: the app serves ``/healthz`` at once, ``/readyz`` answers 503 with the
reason, and the store is tried again with backoff until it answers (then the hub
starts) or ``store.startup_deadline`` passes (then the daemon exits with one line
saying why).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from hub import api, unsubscribe
from hub.context import Hub
from hub.logging import malformed_requests
from hub.store.types import utcnow

log = structlog.get_logger("hub.app")
# The largest body any route may read; each form enforces its own, smaller limit.
CLIENT_MAX_SIZE = 64 * 1024 * 1024
# A store not answering at start-up is tried again after 1 s, 2 s, 4 s ... 30 s.
STORE_RETRY_BASE = 1.0
STORE_RETRY_MAX = 30.0
STORE_PROBE_TIMEOUT = 10.0
OPERATIONS_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


@dataclass
class Startup:
    """How far the daemon got towards a running hub; read by ``/readyz`` and ``hub run``."""

    started: bool = False
    problem: str | None = None  # why the hub is not started yet
    fatal: str | None = None  # why the daemon gave up: its exit message


STARTUP_KEY = web.AppKey("startup", Startup)


def store_location(url: str) -> str:
    """The store's URL without its password, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "the store"


def describe_store_error(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return f"no answer within {STORE_PROBE_TIMEOUT:g}s"
    if isinstance(error, DBAPIError) and error.orig is not None:
        error = error.orig.__cause__ or error.orig  # asyncpg's own exception, by its name
    text = str(error).strip().split("\n", 1)[0]
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


async def probe_store(hub: Hub) -> BaseException | None:
    """None when the store answers, else what went wrong."""
    try:
        await asyncio.wait_for(hub.store.ping(), STORE_PROBE_TIMEOUT)
    except Exception as error:
        return error
    return None


def _seconds(value: float) -> str:
    return str(timedelta(seconds=round(value))).removeprefix("0:")


async def start_when_store_answers(
    hub: Hub,
    startup: Startup,
    first_error: BaseException,
    *,
    started_at: float,
    give_up: Callable[[str], None],
    freeze_heap: bool = False,
) -> None:
    """Try the store with backoff until it answers, then start the hub; give up at the deadline."""
    loop = asyncio.get_running_loop()
    deadline = hub.settings.store.startup_deadline.total_seconds()
    where = store_location(hub.settings.store_url)
    error: BaseException | None = first_error
    attempt = 1
    while error is not None:
        reason = describe_store_error(error)
        waited = loop.time() - started_at
        if waited >= deadline:
            startup.fatal = (
                f"store {where} did not answer within store.startup_deadline "
                f"({_seconds(deadline)}): {reason}"
            )
            startup.problem = startup.fatal
            log.error("store_unreachable_giving_up", store=where, error=reason, attempts=attempt)
            give_up(startup.fatal)
            return
        delay = min(STORE_RETRY_MAX, STORE_RETRY_BASE * 2 ** (attempt - 1))
        delay = min(delay * random.uniform(0.8, 1.2), deadline - waited)
        give_up_at = utcnow() + timedelta(seconds=deadline - waited)
        startup.problem = (
            f"store: {where} not reachable: {reason}; attempt {attempt}, next in "
            f"{delay:.0f}s, giving up at {give_up_at:%H:%M:%S} UTC"
        )
        log.warning(
            "store_unreachable",
            store=where,
            error=reason,
            attempt=attempt,
            retry_in=round(delay, 1),
            gives_up_in=round(deadline - waited),
        )
        await asyncio.sleep(delay)
        attempt += 1
        error = await probe_store(hub)
    log.info("store_reachable", store=where, attempts=attempt)
    startup.problem = "hub: starting"
    try:
        await hub.start()
        if freeze_heap:
            _freeze_heap()
    except Exception as error:
        log.exception("hub_start_failed")
        startup.fatal = startup.problem = f"start-up failed: {describe_store_error(error)}"
        give_up(startup.fatal)
        return
    startup.started, startup.problem = True, None


def _freeze_heap() -> None:
    gc.collect()
    gc.freeze()


def _graceful_exit() -> None:
    raise web.GracefulExit  # what aiohttp's own SIGTERM handler raises: run_app cleans up


def exit_daemon(_message: str) -> None:
    """Stop ``web.run_app`` as SIGTERM would; ``hub run`` then prints the message and exits 1."""
    asyncio.get_running_loop().call_soon(_graceful_exit)


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers. Plugins are listed so a failed one is visible."""
    hub = request.app[api.HUB_KEY]
    return web.json_response({"status": "ok", "plugins": hub.plugins.summary()})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: the store answers and every enabled plugin is running."""
    hub = request.app[api.HUB_KEY]
    startup = request.app[STARTUP_KEY]
    problems = []
    if startup.problem:
        problems.append(startup.problem)
    else:
        try:
            await asyncio.wait_for(hub.store.ping(), timeout=2)
        except Exception as error:
            problems.append(f"store: {describe_store_error(error)}")
    if startup.started and not hub.ready:
        problems.append("hub: starting or stopping")
    for record in hub.plugins.records.values():
        if record.enabled and record.state != "running":
            problems.append(f"plugin {record.name}: {record.state} {record.error or ''}".strip())
    status = 200 if not problems else 503
    return web.json_response({"ready": not problems, "problems": problems}, status=status)


async def metrics(request: web.Request) -> web.Response:
    hub = request.app[api.HUB_KEY]
    try:
        depth = await hub.queue_depth()
    except Exception:
        depth = {}
    for status in ("pending", "dead"):
        hub.metrics.queue_depth.labels(status).set(depth.get(status, 0))
    for record in hub.plugins.records.values():
        hub.metrics.plugin_up.labels(record.name).set(1 if record.state == "running" else 0)
    return web.Response(
        body=generate_latest(hub.metrics.registry),
        headers={"Content-Type": CONTENT_TYPE_LATEST},
    )


@web.middleware
async def starting_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Until the hub runs, everything but the operations endpoints answers 503.

    The reason (which names the store) is for operators, on ``/readyz``; clients of
    the forms and the API only learn to come back.
    """
    startup = request.app[STARTUP_KEY]
    if startup.started or request.path in OPERATIONS_PATHS:
        return await handler(request)
    return web.json_response(
        {"error": "the hub is starting, try again shortly"},
        status=503,
        headers={"Retry-After": "10"},
    )


async def _report_malformed_requests() -> None:
    while True:
        await asyncio.sleep(malformed_requests.window)
        malformed_requests.flush()


async def _cancel(task: asyncio.Task[Any] | None) -> None:
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def build_app(
    hub: Hub, *, give_up: Callable[[str], None] = exit_daemon, freeze_heap: bool = False
) -> web.Application:
    """The whole HTTP side of a hub; starting the app starts the hub, cleanup stops it.

    ``give_up`` is called with a one-line reason when the store is still down at
    ``store.startup_deadline`` (by default it stops ``web.run_app``). ``freeze_heap``
    (the daemon, not tests) moves what start-up built out of the garbage collector's
    reach: a full collection over it stopped the event loop for 75-140 ms under load,
    which was the accept p99 (2-6 ms frozen; bench/intake.py --gc-freeze).
    """
    app = web.Application(
        client_max_size=CLIENT_MAX_SIZE,
        middlewares=[starting_middleware, api.api_not_found_middleware, api.auth_middleware],
    )
    app[api.HUB_KEY] = hub
    app[STARTUP_KEY] = Startup()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_routes(unsubscribe.routes)  # recipients follow these links: no token
    if hub.settings.api.enabled:
        app.router.add_routes(api.routes)
    app.router.add_routes(hub.plugins.routes(hub.view))  # type: ignore[arg-type]

    async def lifecycle(_app: web.Application) -> AsyncIterator[None]:
        startup = app[STARTUP_KEY]
        started_at = asyncio.get_running_loop().time()
        waiting = None
        error = await probe_store(hub)
        if error is None:
            await hub.start()  # the usual case: started before the first request is served
            if freeze_heap:
                _freeze_heap()
            startup.started = True
        else:  # serve /healthz and /readyz meanwhile
            waiting = asyncio.create_task(
                start_when_store_answers(
                    hub,
                    startup,
                    error,
                    started_at=started_at,
                    give_up=give_up,
                    freeze_heap=freeze_heap,
                ),
                name="hub-start",
            )
        reporter = asyncio.create_task(_report_malformed_requests(), name="malformed-requests")
        yield
        await _cancel(reporter)
        malformed_requests.flush()
        await _cancel(waiting)
        await hub.stop()  # also right for a hub that never (or only half) started

    async def stopping(_app: web.Application) -> None:
        await hub.plugins.stopping(hub.view)  # type: ignore[arg-type]

    app.on_shutdown.append(stopping)  # before aiohttp waits for the requests still running
    app.cleanup_ctx.append(lifecycle)
    return app
