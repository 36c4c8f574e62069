"""Mango Office VPBX calls from its API events (realtime callbacks), as call events.

In the VPBX's "Интеграции → API коннектор", set the external system's address to
``https://<hub>/telephony/mango``, and copy the API key ("уникальный код АТС") and salt
("ключ для создания подписи") to ``[plugins.telephony_mango] api_key`` and ``api_salt``.
The VPBX posts each event to that address plus a fixed suffix: ``/events/call``,
``/events/summary``, ``/events/recording``, ``/events/dtmf`` ..., and ``/ping`` when the
connection is checked.

Every event is ``POST``, a form of ``vpbx_api_key``, ``sign`` and ``json`` with
``sign = sha256(api_key + json + api_salt)`` (:mod:`.events`). The two that say how a call
goes are stored as :class:`plugins.telephony.calls.CallEvent` through
:func:`plugins.telephony.calls.accept_call`, under the call's ``entry_id``:

- ``events/call``: ``Appeared`` → ``ringing`` (at ``to.extension`` for an abonent, none
  in the IVR or a queue), ``Connected`` at an abonent → ``answered``. A leg's
  ``Disconnected`` stores nothing: the call's end is its summary (see
  :func:`.events.call_event` for why).
- ``events/summary``: ``ended`` with the seconds talked (``end_time - talk_time``) when
  ``entry_result`` is 1, ``missed`` with ``disconnect_reason`` otherwise. The connector
  must send the summary among its events, or no call is ever filed.

- ``events/recording``: a recording notice of the call ``entry_id``
  (:class:`plugins.telephony.calls.CallRecording`): ``Started`` → ``started``,
  ``Completed`` (saved, in the cloud) → ``ready``; the recording is attached to the
  call's activity once the call is filed. A manager plays it through the hub
  (``GET /api/v1/calls/{activity_id}/recording``), which signs a fresh link with the key
  and salt (:mod:`.recordings`): enable the VPBX's links to recordings without
  authorization in its personal account.

Any other ``events/*`` is checked and answered 200, nothing stored; so is ``/ping``.
Unix seconds become aware UTC times. Events may come out of order (``seq``): each state
has its own key, so the order they arrive in stores the same events.

Answers: ``200`` with an empty body once the event is stored, also for an event seen
before, which stores nothing new: the sign has no time or nonce, so a replay is stopped
by the intake's idempotency on provider, call and state, not by the sign. ``401`` for a
wrong ``vpbx_api_key`` or ``sign``, nothing stored; ``400`` for a body that is not an
event, saying why; ``503`` when the hub cannot store it now.

Sources (read 2025-11):

- https://retail.mango-office.ru/support/integratsiya-api/spisok_integratsiy/obshchie_voprosy_po_api_vats_mango_office/
  ("Общие вопросы по API ВАТС MANGO OFFICE": the key and salt, the
  ``vpbx_api_key`` / ``sign`` / ``json`` form, sha256 of key + json + salt in PHP).
- https://github.com/Bobrovskih/mango-vpbx (README; ``src/helpers/sign.js``, ``src/urls.js``
  for the event suffixes, ``test/realtime.spec.js`` for the events' JSON).
- github.com/salesplatform/salesplatform-vtigercrm
  ``modules/SPVoipIntegration/mango/notifications/`` (checking the sign, call_state and
  location, direction from which side has an extension).
- https://wiki.4dev.app/spaces/4C/pages/24051904 (the connector's "Проверить
  подключение" posts ``/ping``; disconnect_reason 1110, "вызов завершен вызывающим
  абонентом").

Not verified: whether the VPBX reads the answer's body (no readable page says; an empty
200 is answered), the full ``disconnect_reason`` table (the official PDF
"MangoOffice_VPBX_API_v1.9" could not be read: only 1110 gets a name, others are kept as
``mango_<code>``), and whether ``/ping`` is signed (it is answered 200 unchecked: it
stores nothing).
"""

from __future__ import annotations

from urllib.parse import parse_qsl

import structlog
from aiohttp import web

from hub.api.common import problem
from hub.context import PluginView
from hub.hookspecs import hookimpl
from hub.intake.accept import IntakeClosed, UnstorableEvent
from plugins.telephony.calls import CallEvent, CallRecording, accept_call, accept_recording
from plugins.telephony.recordings import offer_recordings, withdraw_recordings
from plugins.telephony_mango.config import MangoConfig
from plugins.telephony_mango.events import (
    BadEvent,
    call_event,
    decode,
    envelope,
    recording_notice,
    verify,
)
from plugins.telephony_mango.recordings import MangoRecordings

log = structlog.get_logger("plugins.telephony_mango")

__all__ = ["MangoConfig", "MangoOffice"]

BASE = "/telephony/mango"
MAX_BODY = 64 * 1024  # an event is a few hundred bytes
FORM = "application/x-www-form-urlencoded"


class MangoOffice:
    """Calls of a Mango Office virtual PBX, from its signed API events."""

    Config = MangoConfig

    def __init__(self, config: MangoConfig, hub: PluginView) -> None:
        self.config = config
        self.hub = hub
        # The telephony plugin's recording route plays this provider's recordings with it.
        self.recordings = MangoRecordings(config)
        offer_recordings(hub.intake, self.recordings)

    @hookimpl
    async def hub_shutdown(self) -> None:
        withdraw_recordings(self.hub.intake, self.recordings)

    @hookimpl
    def hub_routes(self) -> list[web.RouteDef]:
        return [
            web.post(f"{BASE}/events/{{kind}}", self.event),
            web.post(f"{BASE}/ping", self.ping),
        ]

    async def ping(self, request: web.Request) -> web.Response:
        log.info("mango_ping")
        return _ok()

    async def event(self, request: web.Request) -> web.Response:
        kind = request.match_info["kind"]
        try:
            form = await _read_form(request)
            envelope(form)
        except BadEvent as error:
            return problem(400, str(error), code="not_an_event")
        key = self.config.api_key.get_secret_value()
        if not verify(key, self.config.api_salt.get_secret_value(), form):
            log.warning("mango_refused", mango_event=kind[:40])
            return problem(401, "vpbx_api_key or sign does not match: check api_key, api_salt")
        try:
            data = decode(form["json"])
            call: CallEvent | CallRecording | None
            call = recording_notice(data) if kind == "recording" else call_event(kind, data)
        except BadEvent as error:
            log.warning("mango_not_understood", mango_event=kind[:40], error=str(error))
            return problem(400, str(error), code="not_a_call_event")
        if call is None:
            log.debug("mango_event_ignored", mango_event=kind[:40])
            return _ok()
        try:
            if isinstance(call, CallRecording):
                accepted = await accept_recording(self.hub.intake, call)
            else:
                accepted = await accept_call(self.hub.intake, call)
        except IntakeClosed:
            return problem(503, "shutting down, retry shortly")
        except UnstorableEvent as error:
            return problem(400, str(error), code="unstorable")
        except Exception:
            log.exception("mango_store_failed", call_id=call.call_id, state=call.state)
            return problem(503, "cannot store the call now, retry shortly")
        log.info(
            "mango_call",
            mango_event=kind,
            call_id=call.call_id,
            state=call.state,
            direction=getattr(call, "direction", None),
            extension=getattr(call, "extension", None),
            recording_id=getattr(call, "recording_id", None),
            event_id=accepted.id,
            duplicate=accepted.duplicate,
        )
        return _ok()


def _ok() -> web.Response:
    return web.Response(status=200)


async def _read_form(request: web.Request) -> dict[str, str]:
    if request.content_type != FORM:
        shown = request.content_type[:60] or "none"
        raise BadEvent(f"send the event as {FORM}, not {shown}")
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise BadEvent(f"an event is at most {MAX_BODY} bytes")
    body = await request.content.read(MAX_BODY + 1)
    if len(body) > MAX_BODY:
        raise BadEvent(f"an event is at most {MAX_BODY} bytes")
    try:
        pairs = parse_qsl(
            body.decode("ascii"), keep_blank_values=True, encoding="utf-8", errors="strict"
        )
    except (UnicodeDecodeError, ValueError):
        raise BadEvent("the body is not a UTF-8 form") from None
    if any("\x00" in k or "\x00" in v for k, v in pairs):
        raise BadEvent("the form holds a NUL character")
    return dict(pairs)
