"""What every API resource shares: tokens and roles, problem answers, pages, and writes.

Roles: ``admin`` and ``head`` see and change everything; a ``manager`` sees and
changes only the deals, contacts and tasks they own, also inside other objects'
lists; anything else is "not found" (404), never "forbidden", so a token cannot
learn what exists. Errors are RFC 9457 problem documents.

Writes go through :class:`hub.deals.DealWriter` as the token's actor. A write
with an ``Idempotency-Key`` header stores its first answer in the same
transaction as its change; the same key with the same request returns that
answer again, with another request a 422.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError
from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.context import Hub
from hub.deals import Actor, Change, NotFound, Refused
from hub.store.models import User
from hub.store.requests import MAX_KEY, Answer, KeyReused, answered, remember

HUB_KEY = web.AppKey("hub", Hub)
OPENAPI_PATH = "/api/v1/openapi.json"
MAX_ID = 2**63 - 1  # the store's ids are BIGINT on PostgreSQL


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    role: str
    user_email: str | None
    user_id: int | None = None

    @property
    def limited(self) -> bool:
        return self.role == "manager"

    @property
    def actor(self) -> Actor:
        return Actor.token(self.name, self.role, self.user_id)


PRINCIPAL = web.RequestKey("principal", Principal)


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps(data, default=_default), status=status, content_type="application/json"
    )


def problem(status: int, detail: str, **extra: Any) -> web.Response:
    """An RFC 9457 problem document; ``error`` repeats ``detail`` for older clients."""
    titles = {400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found"}
    titles |= {405: "Method not allowed", 409: "Conflict", 422: "Unprocessable content"}
    body = {
        "type": "about:blank",
        "title": titles.get(status, "Error"),
        "status": status,
        "detail": detail,
        "error": detail,
        **extra,
    }
    return web.Response(
        body=orjson.dumps(body, default=_default),
        status=status,
        content_type="application/problem+json",
    )


class Problem(Exception):
    """Raised inside a handler to answer a problem document."""

    def __init__(self, status: int, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.response = problem(status, detail, **extra)


@web.middleware
async def auth_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    if not request.path.startswith("/api/") or request.path == OPENAPI_PATH:
        return await handler(request)
    hub = request.app[HUB_KEY]
    if any("\x00" in k or "\x00" in v for k, v in request.query.items()):
        return problem(400, "a query parameter contains a NUL character")
    header = request.headers.get("Authorization", "")
    if not header.lower().startswith("bearer "):
        return problem(401, "missing bearer token")
    given = header[7:].strip().encode()
    for name, token in hub.settings.api.tokens.items():
        if hmac.compare_digest(given, token.token.get_secret_value().encode()):
            principal = Principal(name, token.role, token.user)
            if token.role == "manager":
                user_id = await _active_user(hub, token.user)
                if user_id is None:
                    # Never fall back to "unassigned": a manager token is its user's or nothing.
                    return problem(401, "the token's user is unknown or inactive")
                principal = Principal(name, token.role, token.user, user_id)
            request[PRINCIPAL] = principal
            try:
                return await handler(request)
            except Problem as failed:
                return failed.response
    return problem(401, "unknown token")


async def _active_user(hub: Hub, email: str | None) -> int | None:
    if not email:
        return None
    async with hub.store.read() as conn:
        return (
            await conn.execute(
                select(User.id).where(User.email == email.lower(), User.active.is_(True))
            )
        ).scalar_one_or_none()


@web.middleware
async def api_not_found_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Unknown paths and methods under /api/ answer problem documents like every API error."""
    try:
        return await handler(request)
    except web.HTTPNotFound:
        if request.path.startswith("/api/"):
            return problem(404, f"no such resource: {request.path}")
        raise
    except web.HTTPMethodNotAllowed as error:
        if request.path.startswith("/api/"):
            return problem(
                405, f"{request.method} is not allowed here", allowed=sorted(error.allowed_methods)
            )
        raise


def principal(request: web.Request) -> Principal:
    return request[PRINCIPAL]


def scope(request: web.Request) -> int | None:
    """The user id a manager token is limited to; ``None`` for head and admin."""
    who = request[PRINCIPAL]
    return who.user_id if who.limited else None


def require_head(request: web.Request, what: str) -> None:
    if request[PRINCIPAL].role not in ("admin", "head"):
        raise Problem(403, f"{what} needs a head or admin token")


def int_param(request: web.Request, name: str, default: int | None = None) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise Problem(400, f"{name} must be an integer") from None
    if not -MAX_ID <= value <= MAX_ID:
        raise Problem(400, f"{name} is out of range")
    return value


def path_id(request: web.Request, name: str = "id") -> int:
    try:
        value = int(request.match_info[name])
    except ValueError:
        raise Problem(404, "not found") from None
    if not 0 < value <= MAX_ID:
        raise Problem(404, "not found")
    return value


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


Enrich = Callable[[AsyncConnection, list[dict[str, Any]]], Awaitable[None]]


async def page(
    request: web.Request,
    stmt: Select[Any],
    id_column: Any,
    serialize: Callable[[Any], Any],
    enrich: Enrich | None = None,
) -> web.Response:
    """A page of a list, newest first; ``next`` links to the following page. ``enrich`` adds
    to the page's items what one more query per page tells (a deal's traffic light)."""
    hub = request.app[HUB_KEY]
    limit = int_param(request, "limit", hub.settings.api.page_size)
    assert limit is not None
    if limit < 1:
        raise Problem(400, "limit must be at least 1")
    limit = min(limit, 1000)
    after = int_param(request, "after")
    if after is not None:
        stmt = stmt.where(id_column < after)
    stmt = stmt.order_by(id_column.desc()).limit(limit + 1)
    async with hub.store.read() as conn:
        rows = (await conn.execute(stmt)).mappings().all()
        more = len(rows) > limit
        rows = rows[:limit]
        items = [serialize(row) for row in rows]
        if enrich is not None:
            await enrich(conn, items)
    next_link = None
    if more and rows:
        query = dict(request.query)
        query.update(after=str(rows[-1]["id"]), limit=str(limit))
        next_link = str(request.rel_url.with_query(query))
    return json_response({"items": items, "next": next_link})


async def body(request: web.Request, model: type[BaseModel]) -> Any:
    """The request's JSON body as ``model``; every bad field in one 422."""
    raw = await request.read()
    try:
        data = orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError:
        raise Problem(400, "the body is not JSON") from None
    if not isinstance(data, dict):
        raise Problem(422, "the body must be a JSON object")
    if (where := _nul_in(data)) is not None:  # PostgreSQL stores no NUL in text or jsonb
        reason = "text may not contain NUL characters"
        raise Problem(422, f"{where}: {reason}", reasons=[{"field": where, "reason": reason}])
    try:
        return model.model_validate(data)
    except ValidationError as error:
        fields = [
            {
                "field": ".".join(str(p) for p in e["loc"]) or "body",
                "reason": e["msg"],
            }
            for e in error.errors(include_url=False)
        ]
        raise Problem(
            422,
            "; ".join(f"{f['field']}: {f['reason']}" for f in fields),
            reasons=fields,
        ) from None


def _nul_in(data: Any, where: str = "") -> str | None:
    """The field (dotted path) of the first string or key holding a NUL character."""
    if isinstance(data, str):
        return (where or "body") if "\x00" in data else None
    if isinstance(data, dict):
        items: Any = data.items()
    elif isinstance(data, list):
        items = enumerate(data)
    else:
        return None
    for key, value in items:
        path = f"{where}.{key}" if where else str(key)
        if isinstance(key, str) and "\x00" in key:
            return path
        if (found := _nul_in(value, path)) is not None:
            return found
    return None


Respond = Callable[[AsyncConnection], Awaitable[tuple[int, Any]]]


async def write(
    request: web.Request,
    changes: Sequence[Change],
    respond: Respond,
    *,
    refused_status: int = 422,
) -> web.Response:
    """Apply ``changes`` as the request's token and answer what ``respond`` reads back, in one
    transaction, honouring ``Idempotency-Key``."""
    hub = request.app[HUB_KEY]
    who = request[PRINCIPAL]
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 0 < len(key) <= MAX_KEY:
        raise Problem(400, f"Idempotency-Key must be 1 to {MAX_KEY} characters")
    fingerprint = hashlib.sha256(
        b"\n".join([request.method.encode(), request.path_qs.encode(), await request.read()])
    ).hexdigest()
    try:
        async with hub.store.write() as conn:
            if key is not None:
                seen = await answered(conn, who.name, key, fingerprint)
                if seen is not None:
                    return web.Response(
                        body=seen.body.encode(),
                        status=seen.status,
                        content_type="application/json",
                        headers={"Idempotent-Replayed": "true"},
                    )
            await hub.deals.apply_in(conn, changes, who.actor)
            status, data = await respond(conn)
            encoded = orjson.dumps(data, default=_default)
            if key is not None:
                await remember(conn, who.name, key, fingerprint, Answer(status, encoded.decode()))
    except KeyReused:
        return problem(422, "this Idempotency-Key was used for another request")
    except NotFound as missing:
        return problem(404, str(missing))
    except Refused as refused:
        reasons = [r.as_dict() for r in refused.refusals]
        return problem(refused_status, str(refused), reasons=reasons)
    except IntegrityError:
        if key is None:
            raise
        return problem(409, "a request with this Idempotency-Key is being handled; retry")
    return web.Response(body=encoded, status=status, content_type="application/json")
