"""The generic call webhook: ``POST /telephony/events``, for any PBX or script.

One call event per request, a JSON object with the fields of
:class:`~plugins.telephony.calls.CallEvent` (``provider`` defaults to ``webhook``)::

    {"call_id": "c-1", "direction": "in", "state": "ringing",
     "caller": "8 (912) 345-67-89", "called": "+74951234567", "extension": "101",
     "occurred_at": "2026-12-07T09:15:00+03:00"}

signed as the hub signs every partner's request (:mod:`hub.signing`):
``X-Hub-Timestamp: <unix seconds>`` and ``X-Hub-Signature-256: sha256=<hex of
HMAC-SHA256(webhook_secret, "<timestamp>\\nPOST\\n/telephony/events\\n\\n" + body)>``,
compared in constant time. A timestamp more than 5 minutes from the hub's clock, or a
signature seen before, is refused (401); a retry signs again with the current time.

Answers: 200 ``{"id": N, "duplicate": false}`` once the event is stored (``true``,
nothing new, for the same call, state and extension again); 401 for a missing, wrong,
old or replayed signature, nothing stored; 400 for a body that is not a call event,
naming each bad field; 503 (retry) when the hub cannot store it now.
"""

from __future__ import annotations

import orjson
import structlog
from aiohttp import web
from pydantic import ValidationError

from hub.api.common import problem
from hub.context import PluginView
from hub.intake import IntakeClosed, UnstorableEvent, claim_once, release_claim
from hub.signing import SignatureRefused, verify_request
from plugins.telephony.calls import CallEvent, accept_call

log = structlog.get_logger("plugins.telephony")

PATH = "/telephony/events"
MAX_BODY = 64 * 1024  # a call event is a few hundred bytes
NAMESPACE = "telephony-webhook"  # the signatures' claims (hub.intake.nonces)


class CallWebhook:
    def __init__(self, hub: PluginView, secret: str) -> None:
        self.hub = hub
        self.secret = secret

    async def post(self, request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > MAX_BODY:
            return problem(413, f"a call event is at most {MAX_BODY} bytes")
        body = await request.content.read(MAX_BODY + 1)
        if len(body) > MAX_BODY:
            return problem(413, f"a call event is at most {MAX_BODY} bytes")
        try:
            signed = verify_request(request, self.secret, body)
            if not await claim_once(self.hub.intake, NAMESPACE, signed.signature, signed.valid_for):
                raise SignatureRefused(
                    "signature_replayed",
                    "this signed request was received before: sign every attempt anew",
                )
        except SignatureRefused as refused:
            log.warning("call_webhook_refused", code=refused.code)
            return problem(401, refused.detail, code=refused.code)
        except Exception:
            log.exception("call_webhook_signature_check_failed")
            return problem(503, "cannot check the signature now, retry shortly")
        try:
            event = _parse(body)
        except ValueError as error:
            return problem(400, str(error), code="not_a_call_event")
        try:
            accepted = await accept_call(self.hub.intake, event)
        except (IntakeClosed, UnstorableEvent) as error:
            if isinstance(error, UnstorableEvent):
                return problem(400, str(error), code="unstorable")
            await release_claim(self.hub.intake, NAMESPACE, signed.signature)
            return problem(503, "shutting down, retry shortly")
        except Exception:
            log.exception("call_webhook_store_failed", call_id=event.call_id)
            await release_claim(self.hub.intake, NAMESPACE, signed.signature)
            return problem(503, "cannot store the event now, retry shortly")
        log.info(
            "call_event_accepted",
            event_id=accepted.id,
            call_id=event.call_id,
            state=event.state,
            duplicate=accepted.duplicate,
        )
        return web.json_response({"id": accepted.id, "duplicate": accepted.duplicate})


def _parse(body: bytes) -> CallEvent:
    """The call event a body holds; ValueError naming what is wrong."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise ValueError(f"the body is not JSON: {error}") from None
    if not isinstance(data, dict):
        raise ValueError("the body must be one JSON object: a call event")
    data.setdefault("provider", "webhook")
    try:
        return CallEvent.model_validate(data)
    except ValidationError as error:
        wrong = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in error.errors()
        )
        raise ValueError(f"not a call event: {wrong}") from None
