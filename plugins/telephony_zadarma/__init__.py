"""Zadarma cloud PBX calls from its call notifications (webhooks), as call events.

Point the PBX's notification URL (Zadarma's personal account, "Settings → Integrations
and API → notifications", or API ``POST /v1/pbx/callinfo/url/``) at
``https://<hub>/telephony/zadarma`` and set ``[plugins.telephony_zadarma] api_secret`` to
the account's API secret. Saving the URL makes Zadarma call ``GET ...?zd_echo=<random>``;
the route answers that value as the whole body, as Zadarma checks it.

Each notification is ``POST``, a form (``application/x-www-form-urlencoded``), signed in
its ``Signature`` header (:mod:`.notifications`) and stored as a
:class:`plugins.telephony.calls.CallEvent` through
:func:`plugins.telephony.calls.accept_call` under the call's ``pbx_call_id``:

==================  ===========================================================
NOTIFY_START        ``ringing``, inbound, no extension yet (``line`` = called_did)
NOTIFY_INTERNAL     ``ringing`` at the extension ``internal``
NOTIFY_ANSWER       ``answered`` by ``internal`` (or ``destination``)
NOTIFY_END          ``ended`` with ``duration`` when ``disposition`` is answered,
                    else ``missed`` with the disposition as ``reason`` (no_answer,
                    busy, cancel, ...)
NOTIFY_OUT_START    ``ringing``, outbound, from the extension ``internal``
NOTIFY_OUT_END      ``ended`` / ``missed`` (the client did not answer), outbound
NOTIFY_RECORD       a recording notice, ``ready`` (see below)
NOTIFY_IVR          nothing stored: a menu step of a call already ringing
==================  ===========================================================

``occurred_at`` is the hub's clock when the notification arrives (Zadarma sends each
as it happens and gives only the call's start); ``started_at`` is ``call_start``, read
on the account's clock ``timezone`` (default Europe/Moscow).

Recordings. ``NOTIFY_END`` / ``NOTIFY_OUT_END`` with ``is_recorded=1`` name the recording
(``call_id_with_rec``): the final call event carries it as ``recording_id`` and the call's
activity keeps it. ``NOTIFY_RECORD`` (the recording is ready) is stored as a
:class:`plugins.telephony.calls.CallRecording` of the call ``pbx_call_id`` and attached to
its activity if the END did not name it (twice: nothing changes). A manager listens
through the hub (``GET /api/v1/calls/{activity_id}/recording``), which asks Zadarma's API
for a fresh link each time (:mod:`.recordings`; needs ``api_key``): Zadarma's links
expire (30 minutes by default).

Answers: ``200`` with an empty body once the event is stored (for NOTIFY_START an empty
body leaves the call's scenario as it is; Zadarma reads a JSON body there as a
redirect), also for a notification seen before, which stores nothing new: the signature
has no time or nonce, so a replay is stopped by the intake's idempotency on provider,
call and state, not by the signature. ``401`` for a missing or wrong signature, nothing
stored; ``400`` for a body that is not a notification, saying why; ``503`` when the hub
cannot store it now (Zadarma may send it again).

Sources (read 2025-11):

- https://zadarma.com/ru/support/api/ (and https://zadarma.com/en/support/api/):
  "Уведомления / webhooks", NOTIFY_START fields, the signature of NOTIFY_START in PHP,
  the answers that change a call's scenario.
- https://phoenixsolutionssl.freshdesk.com/support/solutions/articles/48001258477-api-incoming-call-notifications
  (the same API under the Megacall name, in English): the event list, NOTIFY_START,
  ``redirect`` / ``return_timeout``.
- github.com/zadarma/user-api-v1 ``lib/Webhook/*.php`` (the events' fields and signed
  fields), ``lib/Client.php`` ``encodeSignature`` (base64 of the hex HMAC-SHA1),
  ``examples/callinfo_callback.php`` (``zd_echo``, the ``Signature`` header).
- github.com/zadarma/openapi ``spec/v1/openapi.json``: the callinfo URL and which
  notifications are sent.

Not verified: the time zone of ``call_start`` (no page says; hence ``timezone``), the
source addresses (the official example checks 185.45.152.42 only; the hub does not
filter by address, the signature is the check).
"""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

import structlog
from aiohttp import web
from sqlalchemy import select

from hub.api.common import problem
from hub.context import PluginView
from hub.domain.normalize import InvalidPoint, normalize_phone
from hub.hookspecs import hookimpl
from hub.intake.accept import IntakeClosed, UnstorableEvent
from hub.store.models import Contact, ContactPoint
from hub.store.types import utcnow
from plugins.telephony.calls import accept_call, accept_recording
from plugins.telephony.recordings import offer_recordings, withdraw_recordings
from plugins.telephony.routing import find_owner
from plugins.telephony_zadarma.config import ZadarmaConfig
from plugins.telephony_zadarma.notifications import (
    SIGNED,
    BadNotification,
    call_event,
    recording_notice,
    signed_string,
    verify,
)
from plugins.telephony_zadarma.recordings import ZadarmaRecordings

log = structlog.get_logger("plugins.telephony_zadarma")

__all__ = ["Zadarma", "ZadarmaConfig"]

PATH = "/telephony/zadarma"
SIGNATURE_HEADER = "Signature"
MAX_BODY = 16 * 1024  # a notification is a few hundred bytes
MAX_ECHO = 256  # zd_echo is a short random token
ROUTE_DEADLINE = 0.3  # seconds NOTIFY_START's routing answer may take; then the PBX decides
FORM = "application/x-www-form-urlencoded"


class Zadarma:
    """Calls of a Zadarma cloud PBX, from its signed call notifications."""

    Config = ZadarmaConfig

    def __init__(self, config: ZadarmaConfig, hub: PluginView) -> None:
        self.config = config
        self.hub = hub
        self.zone = ZoneInfo(config.timezone)
        # The telephony plugin's recording route plays this provider's recordings with it.
        self.recordings = ZadarmaRecordings(config)
        offer_recordings(hub.intake, self.recordings)

    @hookimpl
    def hub_routes(self) -> list[web.RouteDef]:
        return [web.get(PATH, self.echo), web.post(PATH, self.notify)]

    @hookimpl
    async def hub_shutdown(self) -> None:
        withdraw_recordings(self.hub.intake, self.recordings)
        await self.recordings.close()

    async def echo(self, request: web.Request) -> web.Response:
        """The URL check: ``GET ?zd_echo=X`` is answered ``X``, nothing else."""
        token = request.query.get("zd_echo")
        if token is None:
            return problem(400, "GET is only Zadarma's URL check, ?zd_echo=<token>")
        if len(token) > MAX_ECHO or not token.isprintable():
            return problem(400, f"zd_echo must be at most {MAX_ECHO} printable characters")
        log.info("zadarma_url_checked")
        return web.Response(text=token, content_type="text/plain")

    async def notify(self, request: web.Request) -> web.Response:
        try:
            form = await _read_form(request)
        except BadNotification as error:
            return problem(400, str(error), code="not_a_notification")
        event = form.get("event", "")
        if event not in SIGNED:
            if not event:
                return problem(400, "the form has no event", code="not_a_notification")
            # A kind Zadarma added since: its signed fields are unknown, and nothing of it
            # is stored, so it is answered as taken and not retried.
            log.info("zadarma_event_ignored", zadarma_event=event[:40])
            return _ok()
        try:
            text = signed_string(event, form)
        except BadNotification as error:
            return problem(400, str(error), code="not_a_notification")
        given = request.headers.get(SIGNATURE_HEADER, "")
        if not given:
            log.warning("zadarma_refused", zadarma_event=event, reason="no signature")
            return problem(401, "no Signature header: set the API key and secret in Zadarma")
        if not verify(self.config.api_secret.get_secret_value(), text, given):
            log.warning("zadarma_refused", zadarma_event=event, reason="bad signature")
            return problem(401, "the Signature does not match: check api_secret")
        if event == "NOTIFY_RECORD":
            return await self._recording(form)
        try:
            call = call_event(form, utcnow(), self.zone)
        except BadNotification as error:
            log.warning("zadarma_not_understood", zadarma_event=event, error=str(error))
            return problem(400, str(error), code="not_a_call_event")
        if call is None:
            return _ok()
        try:
            accepted = await accept_call(self.hub.intake, call)
        except IntakeClosed:
            return problem(503, "shutting down, retry shortly")
        except UnstorableEvent as error:
            return problem(400, str(error), code="unstorable")
        except Exception:
            log.exception("zadarma_store_failed", call_id=call.call_id, state=call.state)
            return problem(503, "cannot store the call now, retry shortly")
        log.info(
            "zadarma_call",
            zadarma_event=event,
            call_id=call.call_id,
            state=call.state,
            direction=call.direction,
            extension=call.extension,
            event_id=accepted.id,
            duplicate=accepted.duplicate,
            call_id_with_rec=form.get("call_id_with_rec") or None,
        )
        if event == "NOTIFY_START" and self.config.route_known_callers:
            return await self._route(call.caller)
        return _ok()

    async def _recording(self, form: dict[str, str]) -> web.Response:
        """NOTIFY_RECORD, stored as a recording notice of its call before it is answered."""
        try:
            notice = recording_notice(form, utcnow())
        except BadNotification as error:
            log.warning("zadarma_not_understood", zadarma_event="NOTIFY_RECORD", error=str(error))
            return problem(400, str(error), code="not_a_recording")
        try:
            accepted = await accept_recording(self.hub.intake, notice)
        except IntakeClosed:
            return problem(503, "shutting down, retry shortly")
        except UnstorableEvent as error:
            return problem(400, str(error), code="unstorable")
        except Exception:
            log.exception("zadarma_store_failed", call_id=notice.call_id, state="recording")
            return problem(503, "cannot store the recording notice now, retry shortly")
        log.info(
            "zadarma_recording",
            call_id=notice.call_id,
            recording_id=notice.recording_id,
            event_id=accepted.id,
            duplicate=accepted.duplicate,
        )
        return _ok()

    async def _route(self, caller: str) -> web.Response:
        """A known client straight to their owner's extension, with their name on the
        phone's screen (``{"redirect": "101", "caller_name": "..."}``); anyone else, or a
        lookup past the deadline, an empty body: the PBX's own scenario."""
        try:
            e164 = normalize_phone(caller, self.hub.settings.hub.default_region)
            found = await asyncio.wait_for(self._owner_of(e164), ROUTE_DEADLINE)
        except (InvalidPoint, TimeoutError):
            return _ok()
        except Exception:
            log.exception("zadarma_route_failed")
            return _ok()
        if found is None:
            return _ok()
        extension, name = found
        answer: dict[str, str] = {"redirect": extension}
        if name:
            answer["caller_name"] = name[:50]
        return web.json_response(answer)

    async def _owner_of(self, e164: str) -> tuple[str, str | None] | None:
        async with self.hub.read() as reader:
            owner = await find_owner(reader, e164)
            if owner is None or owner.extension is None:
                return None
            name = (
                await reader.execute(
                    select(Contact.name)
                    .join(ContactPoint, ContactPoint.contact_id == Contact.id)
                    .where(ContactPoint.kind == "phone", ContactPoint.normalized == e164)
                    .limit(1)
                )
            ).scalar_one_or_none()
        return owner.extension, name


def _ok() -> web.Response:
    return web.Response(status=200)


async def _read_form(request: web.Request) -> dict[str, str]:
    """The notification's fields (the last of a repeated name, as PHP's ``$_POST``)."""
    if request.content_type != FORM:
        shown = request.content_type[:60] or "none"
        raise BadNotification(f"send the notification as {FORM}, not {shown}")
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise BadNotification(f"a notification is at most {MAX_BODY} bytes")
    body = await request.content.read(MAX_BODY + 1)
    if len(body) > MAX_BODY:
        raise BadNotification(f"a notification is at most {MAX_BODY} bytes")
    try:
        text = body.decode("ascii")  # a form body is percent-encoded ASCII
        pairs = parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise BadNotification("the body is not a UTF-8 form") from None
    if any("\x00" in k or "\x00" in v for k, v in pairs):
        raise BadNotification("the form holds a NUL character")
    return dict(pairs)
