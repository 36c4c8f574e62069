"""The caller card on the manager's screen: ``/card``, kept open in a browser.

A manager signs in once with their own API token (``POST /card/sign-in``, a form);
the hub answers with a session cookie (``HttpOnly``, ``SameSite=Strict``,
``Path=/card``, ``Secure`` over https or behind a proxy saying ``X-Forwarded-Proto:
https``, sealed with the token's own secret: :mod:`.sessions`) and never puts the token
in a URL. A session lasts 12 hours from sign-in, across restarts of the hub and in every
hub process on the same settings; a token removed or changed ends it, and signing out
is remembered in the store. Refused sign-ins are limited per address
(:data:`FAILED_SIGN_INS` a minute).

The page holds one server-sent event stream (``GET /card/events``, at most
:data:`MAX_STREAMS` per session) that the browser's ``EventSource`` reopens by itself.
A ringing call (:meth:`Screen.ring`) is pushed as an ``event: card`` holding the card's
server-rendered HTML to the screens it is for: a signed-in user whose configured
extension rings, and the owner of a known client. Each sees the card as their token
sees it through the API (:mod:`.card`). A head or admin token without a user sees no
rings. An unknown number offers "Новый клиент": ``POST /card/new-client`` creates the
contact and a deal with the pipeline's first task through the writer as that user, and
shows the new client's card.
Times are shown in the user's timezone (``[[users]] timezone``, else ``hub.timezone``).
When the browser gives up on a stream (an error answer), the page asks ``HEAD /card``
(header ``X-Card-Signed-In``) and either reconnects or shows the sign-in form.

CSRF: every POST must come from the page's own origin: ``Sec-Fetch-Site: same-origin``
(every current browser sends it), else an ``Origin`` naming this host; a POST with
neither is refused (403). The ``SameSite=Strict`` cookie is the second fence. The pages
send a Content-Security-Policy allowing only their own (nonce'd) script and style.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections import deque
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import structlog
from aiohttp import web
from jinja2 import Environment, FileSystemLoader, select_autoescape

from hub.deals import Refused
from hub.deals.changes import AddTask, CreateContact, CreateDeal
from hub.domain.normalize import InvalidPoint, phone_point
from hub.leads import DEFAULT_CONTACT_WITHIN
from plugins.telephony.calls import CHANNEL
from plugins.telephony.sessions import Session, Sessions, Stream, end_stream, offer

if TYPE_CHECKING:
    from hub.context import PluginView
    from plugins.telephony import Telephony
    from plugins.telephony.calls import CallEvent

log = structlog.get_logger("plugins.telephony")

PATH = "/card"
COOKIE = "hub_card"
SESSION_LIFE = 12 * 3600  # seconds from sign-in; a session is not extended by use
MAX_STREAMS = 5  # open event streams (tabs) per session
KEEP_ALIVE = 15.0  # seconds between comments on a quiet stream (proxies close idle ones)
LOOK_EVERY = 1.0  # how often a quiet stream looks whether its browser is still there
RETRY_MS = 2000  # how soon EventSource reconnects
SIGNED_IN = "X-Card-Signed-In"  # on GET /card: "1" for a session, "0" for the sign-in form
QUEUED = 20  # cards waiting for a slow stream; the oldest is dropped beyond this
MAX_FORM = 4096  # a sign-in or new-client form is a field or two
FAILED_SIGN_INS = 10  # refused sign-ins from one address per SIGN_IN_WINDOW seconds
SIGN_IN_WINDOW = 60.0

templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html", "j2"]),
    trim_blocks=True,
    lstrip_blocks=True,
)

LIGHTS = {"red": "красный", "yellow": "жёлтый", "green": "зелёный"}
KINDS = {
    "call": "Звонок",
    "email": "Письмо",
    "meeting": "Встреча",
    "note": "Заметка",
    "message": "Сообщение",
    "task": "Задача",
}

# What a card may say above itself, by the key a redirect carries (?note=created).
NOTES = {
    "created": "Клиент и сделка созданы.",
    "exists": "Клиент с этим номером уже есть.",
    "not_a_phone": "Это не номер телефона.",
    "refused": "Клиент не создан:",
    "no_user": "Токен не привязан к пользователю: клиента создаст менеджер.",
}


class Screen:
    """Managers' open ``/card`` pages and what rings for them."""

    def __init__(self, hub: PluginView, telephony: Telephony) -> None:
        self.hub = hub
        self.telephony = telephony
        self.sessions = Sessions(hub)
        self.closed = False
        self._refused: dict[str, deque[float]] = {}  # address → times of refused sign-ins
        self.templates = templates.overlay()
        self.templates.filters["money"] = money
        self.templates.globals.update(lights=LIGHTS, kinds=KINDS, notes=NOTES)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get(PATH, self.page),
            web.post(f"{PATH}/sign-in", self.sign_in),
            web.post(f"{PATH}/sign-out", self.sign_out),
            web.get(f"{PATH}/events", self.events),
            web.post(f"{PATH}/new-client", self.new_client),
        ]

    # -- rings ----------------------------------------------------------------------------

    async def ring(self, event: CallEvent) -> int:
        """Show the card of a ringing call on every screen it is for; how many it reached."""
        watching = self.sessions.watching()
        if not watching or self.closed:
            return 0
        try:
            e164: str | None = self.telephony.normalize(event.client_number)
        except InvalidPoint:
            e164 = None  # withheld: the extension's screen says a call rings, no more
        cards: dict[int | None, dict[str, Any] | None] = {None: None}
        owner_id = None
        if e164 is not None:
            cards[None] = await self.telephony.card(e164, None)
            owner = (cards[None].get("contact") or {}).get("owner") or {}
            owner_id = owner.get("id")
        reached = 0
        for session in watching:
            if not session.wants(event.extension, owner_id):
                continue
            viewer = session.viewer
            try:
                if viewer not in cards:
                    cards[viewer] = await self.telephony.card(e164, viewer) if e164 else None
                html = self.render_card(cards[viewer], session.zone, event=event, number=e164)
            except Exception:
                log.exception("card_not_rendered", call_id=event.call_id, user=session.email)
                continue
            message = sse("card", html)
            for stream in list(session.streams):
                offer(stream, message)
                reached += 1
        log.info("card_rang", call_id=event.call_id, extension=event.extension, screens=reached)
        return reached

    def render_card(
        self,
        card: dict[str, Any] | None,
        zone: ZoneInfo,
        *,
        event: CallEvent | None = None,
        number: str | None = None,
        note: str | None = None,
        reasons: list[str] | None = None,
    ) -> str:
        """One card's HTML; ``card`` None with an ``event`` is a withheld number."""
        return self.templates.get_template("card.html.j2").render(
            card=card,
            event=event,
            number=number,
            note=note if note in NOTES else None,
            reasons=reasons or [],
            when=lambda moment: _when(moment, zone),
        )

    async def close(self) -> None:
        """End every open event stream (at shutdown)."""
        self.closed = True
        for session in list(self.sessions.kept.values()):
            for stream in list(session.streams):
                end_stream(stream)

    # -- sessions -------------------------------------------------------------------------

    async def session(self, request: web.Request) -> Session | None:
        return await self.sessions.check(request.cookies.get(COOKIE))

    def _throttled(self, address: str) -> bool:
        times = self._refused.get(address)
        edge = time.monotonic() - SIGN_IN_WINDOW
        while times and times[0] < edge:
            times.popleft()
        return times is not None and len(times) >= FAILED_SIGN_INS

    def _refuse(self, address: str) -> None:
        if len(self._refused) > 10_000:  # many addresses: forget the quiet ones
            edge = time.monotonic() - SIGN_IN_WINDOW
            self._refused = {a: t for a, t in self._refused.items() if t and t[-1] > edge}
        self._refused.setdefault(address, deque(maxlen=FAILED_SIGN_INS)).append(time.monotonic())

    # -- HTTP -----------------------------------------------------------------------------

    async def page(self, request: web.Request) -> web.Response:
        session = await self.session(request)
        if session is None:
            response = self._sign_in_form()
            response.headers[SIGNED_IN] = "0"
            return response
        if request.method == "HEAD":  # card.js asking before it reopens a closed stream
            return web.Response(headers={SIGNED_IN: "1", "Cache-Control": "no-store"})
        shown = ""
        raw = request.query.get("phone", "")[:64]
        if raw.strip():
            note = request.query.get("note")
            shown = await self._looked_up(raw, session, note)
        return self._page(request, session, shown)

    async def sign_in(self, request: web.Request) -> web.Response:
        _same_origin(request)
        address = request.remote or "?"
        if self._throttled(address):
            log.warning("card_sign_in_throttled", remote=address)
            wait = "Слишком много неудачных попыток входа. Подождите минуту."
            return self._sign_in_form(error=wait, status=429)
        form = await _form(request)
        issued = self.sessions.issue(form.get("token", ""), SESSION_LIFE)
        if issued is None:
            self._refuse(address)
            log.warning("card_sign_in_refused", remote=address)
            wrong = "Неверный токен. Проверьте его и войдите снова."
            return self._sign_in_form(error=wrong, status=401)
        session, cookie = issued
        log.info("card_signed_in", token_name=session.token_name, user=session.email)
        response = _see_other(PATH)
        response.set_cookie(
            COOKIE,
            cookie,
            max_age=SESSION_LIFE,
            path=PATH,
            httponly=True,
            samesite="Strict",
            secure=_https(request),
        )
        return response

    async def sign_out(self, request: web.Request) -> web.Response:
        _same_origin(request)
        session = await self.session(request)
        if session is not None:
            log.info("card_signed_out", token_name=session.token_name, user=session.email)
            await self.sessions.end(request.cookies[COOKIE], session)
        response = _see_other(PATH)
        response.del_cookie(COOKIE, path=PATH)
        return response

    async def events(self, request: web.Request) -> web.StreamResponse:
        session = await self.session(request)
        if session is None:
            return web.Response(status=401, text="Войдите на странице /card\n")
        if self.closed:
            return web.Response(status=503, text="Хаб перезапускается\n")
        if len(session.streams) >= MAX_STREAMS:
            return web.Response(
                status=429, text=f"Открыто больше {MAX_STREAMS} вкладок: закройте лишние\n"
            )
        stream: Stream = asyncio.Queue(maxsize=QUEUED)
        session.streams.add(stream)
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",  # nginx: pass each event on at once
            }
        )
        try:
            await response.prepare(request)
            await response.write(f"retry: {RETRY_MS}\n\n".encode())
            await self._stream(request, response, session, stream)
        except (ConnectionError, asyncio.CancelledError):
            pass  # the browser went away, or the hub stops: nothing to tell it
        finally:
            session.streams.discard(stream)
        with contextlib.suppress(ConnectionError):
            await response.write_eof()
        return response

    async def _stream(
        self, request: web.Request, response: web.StreamResponse, session: Session, stream: Stream
    ) -> None:
        quiet_since = time.monotonic()
        while True:
            try:
                message = await asyncio.wait_for(stream.get(), LOOK_EVERY)
            except TimeoutError:
                # a closed tab leaves its slot at once, not at the next keep-alive's failure
                transport = request.transport
                if transport is None or transport.is_closing() or not self.sessions.valid(session):
                    return
                if time.monotonic() - quiet_since < KEEP_ALIVE:
                    continue
                message = ": keep-alive\n\n"
            if message is None:
                return
            await response.write(message.encode())
            quiet_since = time.monotonic()

    async def new_client(self, request: web.Request) -> web.Response:
        _same_origin(request)
        session = await self.session(request)
        if session is None:
            return self._sign_in_form(status=401)
        form = await _form(request)
        raw = form.get("phone", "")[:64]
        try:
            e164 = self.telephony.normalize(raw)
        except InvalidPoint:
            html = self.render_card(None, session.zone, note="not_a_phone")
            return self._page(request, session, html, status=422)
        existing = await self.telephony.card(e164, session.viewer)
        if session.user_id is None:  # a head or admin token of nobody: who would own it?
            html = self.render_card(existing, session.zone, number=e164, note="no_user")
            return self._page(request, session, html, status=403)
        if existing.get("known"):
            return _see_card(e164, "exists")
        try:
            changes = self._new_client(e164, session)
            await self.hub.deals.apply(changes, session.actor)
        except Refused as refused:
            log.info("card_new_client_refused", user=session.email, reason=str(refused))
            html = self.render_card(
                existing, session.zone, number=e164, note="refused", reasons=_reasons(refused)
            )
            return self._page(request, session, html, status=422)
        except LookupError as missing:  # the configured pipeline or stage is gone
            log.warning("card_new_client_failed", error=str(missing))
            html = self.render_card(
                existing, session.zone, number=e164, note="refused", reasons=[str(missing)]
            )
            return self._page(request, session, html, status=422)
        log.info("card_new_client", user=session.email, contact_id=changes[0].id)
        return _see_card(e164, "created")

    def _new_client(self, e164: str, session: Session) -> list[Any]:
        """The contact and the deal of a new client's number, owned by ``session``'s user,
        with the pipeline's first task, as a lead's deal gets it: no deal without a task."""
        catalog = self.hub.catalog
        if catalog is None:
            raise LookupError("хаб ещё не загрузил воронки")
        config = self.telephony.config
        key = config.pipeline or self.hub.settings.default_pipeline
        pipeline = catalog.pipelines.get(key)
        if pipeline is None:
            raise LookupError(f"нет воронки {key!r}")
        stage = pipeline.stages.get(config.stage) if config.stage else pipeline.entry_stage
        if stage is None:
            raise LookupError(f"нет этапа {config.stage!r} в воронке {key!r}")
        contact = CreateContact(
            points=[phone_point(e164, self.hub.settings.hub.default_region)],
            owner_id=session.user_id,
        )
        deal = CreateDeal(
            title=e164,  # as the lead pipeline titles a lead with a number alone
            pipeline_id=pipeline.id,
            stage_id=stage.id,
            contact=contact,
            owner_id=session.user_id,
            source=config.source,
            channel=CHANNEL,
        )
        task = AddTask(
            title=pipeline.first_task,
            due_at=datetime.now(UTC) + (stage.contact_within or DEFAULT_CONTACT_WITHIN),
            deal=deal,
            contact=contact,
            owner_id=session.user_id,
        )
        return [contact, deal, task]

    async def _looked_up(self, raw: str, session: Session, note: str | None) -> str:
        try:
            e164 = self.telephony.normalize(raw)
        except InvalidPoint:
            return self.render_card(None, session.zone, note="not_a_phone")
        card = await self.telephony.card(e164, session.viewer)
        return self.render_card(card, session.zone, number=e164, note=note)

    def _page(
        self, request: web.Request, session: Session, shown: str, status: int = 200
    ) -> web.Response:
        nonce = secrets.token_urlsafe(16)
        html = self.templates.get_template("screen.html.j2").render(
            session=session, shown=shown, nonce=nonce, phone=request.query.get("phone", "")[:64]
        )
        return _html(html, nonce, status)

    def _sign_in_form(self, error: str | None = None, status: int = 200) -> web.Response:
        nonce = secrets.token_urlsafe(16)
        html = self.templates.get_template("sign_in.html.j2").render(error=error, nonce=nonce)
        return _html(html, nonce, status)


# -- helpers ----------------------------------------------------------------------------------


def sse(event: str, html: str) -> str:
    """One server-sent event: every line of ``html`` on a ``data:`` line of its own."""
    lines = html.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    data = "".join(f"data: {line}\n" for line in lines if line.strip())
    return f"event: {event}\n{data}\n"


def _https(request: web.Request) -> bool:
    return request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"


def _same_origin(request: web.Request) -> None:
    """Refuse a POST another site's page made (CSRF): see the module's docstring."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        if site == "same-origin":
            return
    else:
        origin = request.headers.get("Origin")
        if origin and origin.partition("://")[2] == request.host:
            return
    log.warning("card_cross_site_post", path=request.path, site=site)
    raise web.HTTPForbidden(text="Запрос не со страницы хаба: отклонён\n")


async def _form(request: web.Request) -> dict[str, str]:
    if request.content_length is not None and request.content_length > MAX_FORM:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_FORM, actual_size=request.content_length)
    data = await request.post()
    return {k: v for k, v in data.items() if isinstance(v, str) and "\x00" not in v}


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location, "Cache-Control": "no-store"})


def _see_card(e164: str, note: str) -> web.Response:
    """To the card of ``e164``, saying what happened (a key of :data:`NOTES`, never words
    taken from the URL)."""
    return _see_other(f"{PATH}?phone={quote(e164)}&note={note}")


def _html(html: str, nonce: str, status: int) -> web.Response:
    response = web.Response(text=html, status=status, content_type="text/html")
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-store"
    return response


def money(amount: Any, currency: str | None = None) -> str:
    """``Decimal("125000.00"), "RUB"`` → ``125 000 ₽`` (no-break spaces)."""
    if amount is None:
        return ""
    try:
        value = Decimal(str(amount))
    except InvalidOperation:
        return str(amount)
    whole = value == value.to_integral_value()
    text = f"{value:,.0f}" if whole else f"{value:,.2f}"
    text = text.replace(",", "\u00a0").replace(".", ",")
    sign = {"RUB": "₽", "USD": "$", "EUR": "€"}.get(currency or "", currency or "")
    return f"{text}\u00a0{sign}".strip()


def _reasons(refused: Refused) -> list[str]:
    return [r.reason for r in refused.refusals] or [str(refused)]


def _when(raw: str | datetime | None, zone: ZoneInfo) -> str:
    """A time as the manager reads it, in their timezone: ``07.12.2026 09:15``."""
    if not raw:
        return ""
    try:
        moment = raw if isinstance(raw, datetime) else datetime.fromisoformat(raw)
    except ValueError:
        return str(raw)
    return moment.astimezone(zone).strftime("%d.%m.%Y %H:%M")
