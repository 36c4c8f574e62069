"""Telephony channel: who is calling, where to route them, and what each call leaves.

Calls come from adapters, each turning its PBX's notifications into the one call model
(:mod:`plugins.telephony.calls`) stored through the intake: the signed generic webhook
``POST /telephony/events`` here (:mod:`.webhook`, served with ``webhook_secret``), and
the provider plugins ``telephony_zadarma``, ``telephony_mango`` and ``telephony_ami``.
The intake worker hands every stored call event to :mod:`.filing` (``hub_intake_handler``):
a ringing call is shown on the managers' ``/card`` pages (:mod:`.screen`, across hub
processes: :mod:`.rings`) and pushed through ``push_card_via``; a finished one becomes
an activity, a missed one a call-back task, an unknown caller a lead.

``GET /api/v1/caller-card?phone=...`` (bearer token, as the rest of the API; see
:mod:`plugins.telephony.card` for what a manager token sees) answers who is
calling: the number in E.164, the contact with company and owner (name, email,
extension), open deals with stage, amount and traffic light, open tasks and the
last three activities; ``{"known": false, "phone": ...}`` for a number nobody
has, a 400 problem for something that cannot be a phone number.

``GET /api/v1/calls/{activity_id}/recording`` (bearer token; a manager only for a call
of their own deal or contact) plays a call's recording: ``302`` to a fresh link the
provider plugin makes (:mod:`plugins.telephony.recordings`), ``404`` for a call without
one, ``503`` / ``502`` when the provider cannot give one. A call activity's
``call.recording_url`` is this link.

``GET /telephony/route?phone=...`` answers a PBX asking where to send a ringing
caller: ``{"extension": "101", "owner": "anna@example.com", "known": true,
"route": "owner"}`` for a known client whose owner has an extension, otherwise
``default_route`` (``"route": "default"`` with the ``reason``: unknown,
no_extension, no_number, deadline, unavailable). It always answers 200 within
``route_deadline``; ``?format=text`` answers the extension alone, as a dialplan's
``CURL()`` wants it. PBXs cannot do bearer flows, so this route takes the shared
``route_token`` in an ``X-Hub-Token`` header or a ``token`` query parameter (the
hub's logs redact both); without a ``route_token`` it is not served.
"""

from __future__ import annotations

import hmac

from aiohttp import web

from hub.api.common import Problem, json_response, scope
from hub.context import Hub
from hub.domain.normalize import InvalidPoint, normalize_phone
from hub.hookspecs import BackgroundTask, hookimpl
from hub.store.types import utcnow
from plugins.telephony.calls import CHANNEL
from plugins.telephony.card import CallerCards
from plugins.telephony.config import TelephonyConfig
from plugins.telephony.filing import CallFiling
from plugins.telephony.one_hop import OneHopReads
from plugins.telephony.pg_reads import PgReads
from plugins.telephony.recordings import PATH as RECORDING_PATH
from plugins.telephony.recordings import RecordingRoute
from plugins.telephony.rings import Rings
from plugins.telephony.routing import Owner, Router, find_owner
from plugins.telephony.screen import Screen
from plugins.telephony.webhook import PATH as EVENTS_PATH
from plugins.telephony.webhook import CallWebhook

CARD_PATH = "/api/v1/caller-card"
ROUTE_PATH = "/telephony/route"
TOKEN_HEADER = "X-Hub-Token"
MAX_PHONE = 64  # longer is not a phone number (hub.domain.normalize refuses it too)

__all__ = ["Telephony", "TelephonyConfig"]


class Telephony:
    """Calls: who is calling, and which extension should take the call."""

    Config = TelephonyConfig

    def __init__(self, config: TelephonyConfig, hub: Hub) -> None:
        self.config = config
        self.hub = hub
        self.router = Router(
            self.find_owner, config.default_route, config.route_deadline.total_seconds()
        )
        self.screen = Screen(hub, self)
        # The card's and the route's reads, prepared once and run on the driver: on SQLite
        # on the loop itself (plugins/telephony/one_hop.py), on PostgreSQL on a small pool
        # of their own (pg_reads.py).
        store = hub.intake.store
        dialect = store.reader.dialect
        self.one_hop = OneHopReads(store.url, dialect) if store.is_sqlite else None
        self.pg_reads = PgReads(store.url, dialect) if not store.is_sqlite else None
        self.cards = CallerCards(hub.settings, prepare=self.reads.statements)
        self.rings = Rings(hub.intake.store, self.screen.ring)
        self.filing = CallFiling(self)
        self.recordings = RecordingRoute(self)
        secret = config.webhook_secret
        self.webhook = CallWebhook(hub, secret.get_secret_value()) if secret else None

    # -- hooks ----------------------------------------------------------------------------

    @hookimpl
    def hub_routes(self) -> list[web.RouteDef]:
        routes = [
            web.get(CARD_PATH, self.caller_card),
            web.get(RECORDING_PATH, self.recordings.get),
            *self.screen.routes(),
        ]
        if self.config.route_token is not None:
            routes.append(web.get(ROUTE_PATH, self.route))
        if self.webhook is not None:
            routes.append(web.post(EVENTS_PATH, self.webhook.post))
        return routes

    @hookimpl
    def hub_intake_handler(self, channel: str) -> CallFiling | None:
        return self.filing if channel == CHANNEL else None

    @hookimpl
    async def hub_shutdown(self) -> None:
        await self.router.close()
        self.cards.close()
        if self.one_hop is not None:
            self.one_hop.close()
        if self.pg_reads is not None:
            await self.pg_reads.close()
        await self.rings.close()
        await self.screen.close()

    @hookimpl
    async def hub_stopping(self) -> None:
        await self.screen.close()  # open /card streams would hold the daemon's shutdown up

    @hookimpl
    def hub_background_tasks(self) -> dict[str, BackgroundTask]:
        # Rings filed by another hub process on the same PostgreSQL reach this one's screens.
        return {"rings": self.rings.listen} if self.rings.shared else {}

    # -- lookups --------------------------------------------------------------------------

    def normalize(self, raw: str) -> str:
        """The number in E.164 with the hub's default region; raises InvalidPoint."""
        return normalize_phone(raw, self.hub.settings.hub.default_region)

    async def card(self, e164: str, viewer: int | None) -> dict[str, object]:
        """The caller card of a normalized number as ``viewer`` (a manager's id) sees it."""
        now, catalog = utcnow(), self.hub.catalog
        return await self.reads.read(
            lambda reader: self.cards.card(reader, e164, viewer=viewer, catalog=catalog, now=now)
        )

    async def find_owner(self, e164: str) -> Owner | None:
        return await self.reads.read(lambda reader: find_owner(reader, e164))

    @property
    def reads(self) -> OneHopReads | PgReads:
        found = self.one_hop or self.pg_reads
        assert found is not None
        return found

    # -- HTTP -----------------------------------------------------------------------------

    async def caller_card(self, request: web.Request) -> web.Response:
        raw = request.query.get("phone", "")
        if not raw.strip():
            raise Problem(400, "phone is required, e.g. ?phone=%2B79123456789")
        try:
            e164 = self.normalize(raw[: MAX_PHONE + 1])
        except InvalidPoint:
            shown = raw[:MAX_PHONE]
            raise Problem(400, f"not a phone number: {shown!r}", phone=shown) from None
        return json_response(await self.card(e164, scope(request)))

    async def route(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response({"error": "bad or missing token"}, status=401)
        raw = request.query.get("phone", "")
        try:
            e164 = self.normalize(raw[: MAX_PHONE + 1])
        except InvalidPoint:  # a withheld or internal number: still a route, never an error
            answer = self.router.default("no_number")
        else:
            answer = await self.router.route(e164)
        if request.query.get("format") == "text":
            return web.Response(text=answer["extension"])
        return json_response(answer)

    def _authorized(self, request: web.Request) -> bool:
        token = self.config.route_token
        assert token is not None  # the route is served only with one
        given = request.headers.get(TOKEN_HEADER) or request.query.get("token") or ""
        return hmac.compare_digest(given.encode(), token.get_secret_value().encode())
