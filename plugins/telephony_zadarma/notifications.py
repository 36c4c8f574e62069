"""Zadarma's PBX call notifications: their signature, and the call event each one is.

Field sets and signed strings are those of Zadarma's PHP SDK (zadarma/user-api-v1
``lib/Webhook/Notify*.php``, ``getSignatureString()``; ``lib/Client.php::encodeSignature``)
and of https://zadarma.com/ru/support/api/ ("Уведомления о звонках в АТС").
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from plugins.telephony.calls import CallEvent, CallRecording

PROVIDER = "zadarma"

# What each event signs: these fields concatenated, no separator (the SDK's
# getSignatureString()). Nothing else is covered, disposition and duration included.
SIGNED: dict[str, tuple[str, ...]] = {
    "NOTIFY_START": ("caller_id", "called_did", "call_start"),
    "NOTIFY_INTERNAL": ("caller_id", "called_did", "call_start"),
    "NOTIFY_END": ("caller_id", "called_did", "call_start"),
    "NOTIFY_IVR": ("caller_id", "called_did", "call_start"),  # NotifyIvr extends NotifyStart
    "NOTIFY_ANSWER": ("caller_id", "destination", "call_start"),
    "NOTIFY_OUT_START": ("internal", "destination", "call_start"),
    "NOTIFY_OUT_END": ("internal", "destination", "call_start"),
    "NOTIFY_RECORD": ("pbx_call_id", "call_id_with_rec"),
}
# Not a call state: NOTIFY_RECORD is a recording notice (recording_notice), an IVR step
# changes no state of the call.
STORES_NOTHING = frozenset({"NOTIFY_RECORD", "NOTIFY_IVR"})


class BadNotification(ValueError):
    """A notification that is not what Zadarma sends; the message names what is wrong."""


def signed_string(event: str, form: Mapping[str, str]) -> str:
    """What ``event`` signs: its :data:`SIGNED` fields of ``form`` concatenated."""
    missing = [name for name in SIGNED[event] if name not in form]
    if missing:
        raise BadNotification(f"{event} without {', '.join(missing)}")
    return "".join(form[name] for name in SIGNED[event])


def signature(secret: str, text: str) -> str:
    """The ``Signature`` header of ``text``: base64 of the lowercase hex HMAC-SHA1 (PHP's
    ``hash_hmac`` answers hex), not of the 20 raw bytes."""
    digest = hmac.new(secret.encode(), text.encode(), hashlib.sha1).hexdigest()
    return base64.b64encode(digest.encode()).decode()


def verify(secret: str, text: str, given: str) -> bool:
    """Whether ``given`` is the signature of ``text`` with ``secret`` (constant time)."""
    return hmac.compare_digest(signature(secret, text).encode(), given.strip().encode())


def provider_time(raw: str, zone: ZoneInfo) -> datetime:
    """``call_start`` in UTC: ``YYYY-MM-DD HH:MM:SS`` on the account's clock, or unix seconds."""
    text = raw.strip()
    if text.isdigit():
        return datetime.fromtimestamp(int(text), UTC)
    try:
        local = datetime.strptime(text, "%Y-%m-%d %H:%M:%S")
    except ValueError:
        raise BadNotification(f"call_start {text[:40]!r} is not YYYY-MM-DD HH:MM:SS") from None
    return local.replace(tzinfo=zone).astimezone(UTC)


def call_event(form: Mapping[str, str], now: datetime, zone: ZoneInfo) -> CallEvent | None:
    """The call event a (signed) notification reports, None for one that stores nothing."""
    event = form.get("event", "")
    if event in STORES_NOTHING:
        return None

    def field(name: str) -> str:
        if name not in form:
            raise BadNotification(f"{event} without {name}")
        return form[name].strip()

    internal = form.get("internal", "").strip() or None
    data: dict[str, Any] = {
        "provider": PROVIDER,
        "call_id": field("pbx_call_id"),
        "started_at": provider_time(field("call_start"), zone),
        "occurred_at": now,
    }
    if event in ("NOTIFY_START", "NOTIFY_INTERNAL", "NOTIFY_END"):
        line = field("called_did")
        data |= {"direction": "in", "caller": field("caller_id"), "called": line, "line": line}
        if event == "NOTIFY_START":
            data |= {"state": "ringing"}
        elif event == "NOTIFY_INTERNAL":
            data |= {"state": "ringing", "extension": field("internal") or None}
        else:
            data |= {"extension": internal, **_outcome(form, field, internal)}
    elif event == "NOTIFY_ANSWER":
        who = internal or field("destination") or None
        data |= {
            "direction": "in",
            "state": "answered",
            "caller": field("caller_id"),
            "extension": who,
            "answered_by": who,
        }
    elif event in ("NOTIFY_OUT_START", "NOTIFY_OUT_END"):
        data |= {
            "direction": "out",
            "caller": field("internal"),
            "called": field("destination"),
            "extension": field("internal") or None,
        }
        if event == "NOTIFY_OUT_START":
            data |= {"state": "ringing"}
        else:
            line = form.get("caller_id", "").strip() or None
            data |= {"line": line, **_outcome(form, field, internal)}
    else:
        raise BadNotification(f"unknown event {event[:40]!r}")
    try:
        return CallEvent.model_validate(data)
    except ValidationError as error:
        wrong = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in error.errors()
        )
        raise BadNotification(f"{event} is not a call event: {wrong}") from None


def recording_notice(form: Mapping[str, str], now: datetime) -> CallRecording:
    """NOTIFY_RECORD: the recording ``call_id_with_rec`` of the call ``pbx_call_id`` is ready
    (its id is what ``GET /v1/pbx/record/request/`` takes as ``call_id``)."""
    try:
        return CallRecording(
            provider=PROVIDER,
            call_id=form.get("pbx_call_id", ""),
            recording_id=form.get("call_id_with_rec", ""),
            state="ready",
            occurred_at=now,
        )
    except ValidationError as error:
        wrong = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in error.errors()
        )
        raise BadNotification(f"NOTIFY_RECORD is not a recording notice: {wrong}") from None


def _recording(form: Mapping[str, str]) -> str | None:
    """The recording an END names (``is_recorded=1``): its ``call_id_with_rec``."""
    if form.get("is_recorded", "").strip() != "1":
        return None
    return form.get("call_id_with_rec", "").strip() or None


def _outcome(form: Mapping[str, str], field: Any, internal: str | None) -> dict[str, Any]:
    """ended (with the seconds talked) for an answered call, else missed and why."""
    disposition = field("disposition").lower()
    duration = field("duration")
    if not duration.isdigit():
        raise BadNotification(f"duration {duration[:20]!r} is not a whole number of seconds")
    recording = {"recording_id": _recording(form)}
    if disposition == "answered":
        return {"state": "ended", "duration": int(duration), "answered_by": internal, **recording}
    reason = "_".join(disposition.replace(",", " ").split()) or "unknown"
    return {"state": "missed", "reason": reason[:100], **recording}
