"""Assembling the aiohttp application: operations endpoints, the API, plugin routes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from hub import api
from hub.context import Hub

log = structlog.get_logger("hub.app")
# The largest body any route may read; each form enforces its own, smaller limit.
CLIENT_MAX_SIZE = 64 * 1024 * 1024


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers. Plugins are listed so a failed one is visible."""
    hub = request.app[api.HUB_KEY]
    return web.json_response({"status": "ok", "plugins": hub.plugins.summary()})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: the store answers and every enabled plugin is running."""
    hub = request.app[api.HUB_KEY]
    problems = []
    try:
        await asyncio.wait_for(hub.store.ping(), timeout=2)
    except Exception as error:
        problems.append(f"store: {type(error).__name__}: {error}")
    if not hub.ready:
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


def build_app(hub: Hub) -> web.Application:
    """The whole HTTP side of a hub; starting the app starts the hub, cleanup stops it."""
    app = web.Application(client_max_size=CLIENT_MAX_SIZE, middlewares=[api.auth_middleware])
    app[api.HUB_KEY] = hub
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    if hub.settings.api.enabled:
        app.router.add_routes(api.routes)
    app.router.add_routes(hub.plugins.routes(hub))

    async def lifecycle(_app: web.Application) -> AsyncIterator[None]:
        await hub.start()
        yield
        await hub.stop()

    app.cleanup_ctx.append(lifecycle)
    return app
