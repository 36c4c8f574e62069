"""The HTTP API: ``/api/v1/...`` behind bearer tokens with roles, one module per resource.

Roles: ``admin`` and ``head`` see and change everything; ``manager`` sees and
changes only the deals, tasks and contacts they own (:mod:`hub.api.common`).
Lists are newest first, paginated by id (``?after=ID&limit=N``) with a ``next``
link while more remain. Every change goes through the deal store's writer.
"""

from __future__ import annotations

from aiohttp import web

from hub.api import campaigns, deals, people, review, spec, tasks
from hub.api.common import HUB_KEY, OPENAPI_PATH, api_not_found_middleware, auth_middleware


async def openapi(request: web.Request) -> web.Response:
    """The API described for clients and generators; readable without a token."""
    return web.Response(body=spec.document(), content_type="application/json")


routes: list[web.AbstractRouteDef] = [
    web.get(OPENAPI_PATH, openapi),
    *deals.routes,
    *tasks.routes,
    *people.routes,
    *review.routes,
    *campaigns.routes,
]

__all__ = ["HUB_KEY", "api_not_found_middleware", "auth_middleware", "routes"]
