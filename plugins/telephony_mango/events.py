"""Mango Office's VPBX events: their envelope and sign, and the call state each reports.

Every event is a form (``application/x-www-form-urlencoded``) of three fields:
``vpbx_api_key``, ``sign`` and ``json`` (the event, a JSON object as a string), where
``sign = hex(SHA-256(api_key + json + api_salt))`` over the ``json`` string exactly as
posted: re-serialising the parsed object would change it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from pydantic import ValidationError

from plugins.telephony.calls import CallEvent, CallRecording

PROVIDER = "mango"
MOSCOW = ZoneInfo("Europe/Moscow")  # the VPBX's clock, for a time given as text
TIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%d.%m.%Y %H:%M:%S")
DIRECTIONS = {0: "internal", 1: "in", 2: "out"}  # events/summary call_direction
# disconnect_reason codes with a name in the hub's reasons; others are kept as mango_<code>
REASONS = {1110: "cancel"}  # "Вызов завершен вызывающим абонентом": the caller hung up
SAVED = 1000  # events/recording completion_code: the recording was saved
NUMBER_MAX = 64  # CallEvent's caller, called and line
EXTENSION_MAX = 40


class BadEvent(ValueError):
    """An event that cannot be read; the message says what is wrong."""


def sign(api_key: str, json_text: str, api_salt: str) -> str:
    """The ``sign`` Mango sends with ``json_text``."""
    return hashlib.sha256((api_key + json_text + api_salt).encode("utf-8")).hexdigest()


def verify(api_key: str, api_salt: str, form: Mapping[str, str]) -> bool:
    """Whether the form is from the VPBX with this key and salt, in constant time."""
    key_ok = hmac.compare_digest(form["vpbx_api_key"].encode(), api_key.encode())
    expected = sign(api_key, form["json"], api_salt)
    sign_ok = hmac.compare_digest(form["sign"].strip().lower().encode(), expected.encode())
    return key_ok and sign_ok


def envelope(form: Mapping[str, str]) -> None:
    """BadEvent unless the form has the three fields of an event."""
    missing = [name for name in ("vpbx_api_key", "sign", "json") if not form.get(name)]
    if missing:
        raise BadEvent(f"the form lacks {', '.join(missing)}: send vpbx_api_key, sign, json")


def decode(json_text: str) -> dict[str, Any]:
    try:
        data = orjson.loads(json_text)
    except orjson.JSONDecodeError as error:
        raise BadEvent(f"json is not JSON: {error}") from None
    if not isinstance(data, dict):
        raise BadEvent("json must be one JSON object: the event")
    return data


def call_event(kind: str, data: Mapping[str, Any]) -> CallEvent | None:
    """The call state an ``events/call`` or ``events/summary`` reports, or None for one
    that reports none.

    ``events/call`` (one per leg and state; ``entry_id`` is the whole call):

    - ``Appeared``: ``ringing``; at ``location`` abonent, at that extension; in the IVR
      or a queue, without one (the call reached the PBX).
    - ``Connected`` at an abonent: ``answered`` by that extension. Connected to the IVR
      or a queue is the PBX answering, not a person: nothing.
    - ``Disconnected``: nothing. It ends one leg: an extension that did not pick up
      while the call goes on to the next of its group, a transfer. The call's one end is
      its ``events/summary``; taking a leg's end as the call's would file a call
      answered by the second extension as missed (the intake keeps the first final).
    - ``OnHold`` and others: nothing.

    ``events/summary`` (one per finished call): ``ended`` when ``entry_result`` is 1,
    else ``missed``; ``duration`` is ``end_time - talk_time`` (``talk_time`` is when the
    talk began, 0 when nobody answered).
    """
    if kind == "call":
        return _from_call(data)
    if kind == "summary":
        return _from_summary(data)
    return None


def recording_notice(data: Mapping[str, Any]) -> CallRecording | None:
    """The recording an ``events/recording`` reports, or None for one that gives nothing to
    listen to.

    ``recording_state``: ``Started`` → ``started`` (the call goes on); ``Completed`` →
    ``ready``, unless its ``completion_code`` is not 1000 (4002: shorter than the minimum,
    not saved) or it went only by mail (``recipient`` ``Mail``: not in the VPBX's cloud,
    where the link plays from); ``Continued`` (the same recording in another leg) → None.
    """
    state = data.get("recording_state")
    if state == "Started":
        kind = "started"
    elif state == "Completed":
        code = data.get("completion_code")
        if code not in (None, "") and str(code).strip() != str(SAVED):
            return None
        if data.get("recipient") == "Mail":
            return None
        kind = "ready"
    else:
        return None
    recording = _text(data.get("recording_id"))
    if not recording:
        raise BadEvent("events/recording lacks recording_id")
    at = data.get("timestamp")
    try:
        return CallRecording(
            provider=PROVIDER,
            call_id=_entry(data),
            recording_id=recording,
            state=kind,
            occurred_at=parse_time(at, "timestamp") if at not in (None, "") else datetime.now(UTC),
        )
    except ValidationError as error:
        wrong = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'event'}: {e['msg']}" for e in error.errors()
        )
        raise BadEvent(f"not a recording event: {wrong}") from None


def _from_call(data: Mapping[str, Any]) -> CallEvent | None:
    state = data.get("call_state")
    location = data.get("location")
    origin, target = _party(data, "from"), _party(data, "to")
    direction = _direction(origin, target)
    ext = _text(target.get("extension")) if direction != "out" else _text(origin.get("extension"))
    if state == "Appeared":
        fields: dict[str, Any] = {
            "state": "ringing",
            "extension": ext if direction == "out" or location == "abonent" else None,
        }
    elif state == "Connected" and location == "abonent":
        fields = {"state": "answered", "extension": ext, "answered_by": ext}
    else:
        return None
    at = parse_time(_required(data, "timestamp"), "timestamp")
    line = _text(target.get("line_number")) or _text(origin.get("line_number"))
    return _validated(
        {
            "call_id": _entry(data),
            "direction": direction,
            **_numbers(direction, origin, target, line),
            **fields,
            "occurred_at": at,
        }
    )


def _from_summary(data: Mapping[str, Any]) -> CallEvent:
    origin, target = _party(data, "from"), _party(data, "to")
    raw = data.get("call_direction")
    try:
        direction = DIRECTIONS[int(raw)] if raw is not None else _direction(origin, target)
    except (KeyError, TypeError, ValueError):
        raise BadEvent(f"call_direction must be 0, 1 or 2, not {str(raw)[:20]!r}") from None
    ended = parse_time(_required(data, "end_time"), "end_time")
    created = data.get("create_time")
    started = parse_time(created, "create_time") if created not in (None, "", 0, "0") else None
    talk = data.get("talk_time")
    talked_from = parse_time(talk, "talk_time") if talk not in (None, "", 0, "0") else None
    result = str(data.get("entry_result", "")).strip()
    if result not in ("0", "1"):
        raise BadEvent(f"entry_result must be 1 (answered) or 0, not {result[:20]!r}")
    ext = _text(origin.get("extension")) if direction == "out" else _text(target.get("extension"))
    if result == "1":
        duration = max(0, int((ended - talked_from).total_seconds())) if talked_from else 0
        outcome: dict[str, Any] = {
            "state": "ended",
            "duration": duration,
            "answered_by": ext,
        }
    else:
        code = data.get("disconnect_reason")
        outcome = {"state": "missed", "duration": 0, "reason": _reason(code)}
    return _validated(
        {
            "call_id": _entry(data),
            "direction": direction,
            **_numbers(direction, origin, target, _text(data.get("line_number"))),
            "extension": ext,
            **outcome,
            "occurred_at": ended,
            "started_at": started,
        }
    )


def _numbers(
    direction: str, origin: Mapping[str, Any], target: Mapping[str, Any], line: str | None
) -> dict[str, Any]:
    if direction == "internal":
        caller = _text(origin.get("extension")) or _text(origin.get("number"))
        called = _text(target.get("extension")) or _text(target.get("number"))
    else:
        caller = _text(origin.get("number")) or _text(origin.get("extension"))
        called = _text(target.get("number")) or _text(target.get("extension"))
        if direction == "in" and line:
            called = line  # to.number is the ringing phone's SIP address; the client dialled this
    return {
        "caller": (caller or "")[:NUMBER_MAX],
        "called": (called or "")[:NUMBER_MAX],
        "line": line[:NUMBER_MAX] if line else None,
    }


def _direction(origin: Mapping[str, Any], target: Mapping[str, Any]) -> str:
    """Which side is one of ours: both internal, the caller out, neither in."""
    ours_from, ours_to = bool(_text(origin.get("extension"))), bool(_text(target.get("extension")))
    if ours_from and ours_to:
        return "internal"
    return "out" if ours_from else "in"


def _reason(code: Any) -> str | None:
    if code in (None, ""):
        return None
    try:
        number = int(code)
    except (TypeError, ValueError):
        return str(code)[:100]
    return REASONS.get(number, f"mango_{number}")


def parse_time(value: Any, name: str) -> datetime:
    """A Mango time, unix seconds (number or digits) or Moscow time as text, in UTC."""
    try:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, int | float):
            return datetime.fromtimestamp(value, UTC)
        text = str(value).strip()
        if text.isdigit():
            return datetime.fromtimestamp(int(text), UTC)
        for form in TIME_FORMATS:
            try:
                local = datetime.strptime(text, form)
            except ValueError:
                continue
            return local.replace(tzinfo=MOSCOW).astimezone(UTC)
        raise ValueError
    except (ValueError, OverflowError, OSError):
        raise BadEvent(f"{name} must be unix seconds, not {str(value)[:40]!r}") from None


def _party(data: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    party = data.get(name) or {}
    if not isinstance(party, dict):
        raise BadEvent(f"{name} must be an object (number, extension, ...)")
    return party


def _entry(data: Mapping[str, Any]) -> str:
    entry = _text(data.get("entry_id"))
    if not entry:
        raise BadEvent("the event lacks entry_id: the call it belongs to")
    return entry


def _required(data: Mapping[str, Any], name: str) -> Any:
    value = data.get(name)
    if value in (None, ""):
        raise BadEvent(f"the event lacks {name}")
    return value


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, dict | list | bool):
        return None
    text = str(value).strip()
    return text or None


def _validated(fields: dict[str, Any]) -> CallEvent:
    if fields.get("extension"):
        fields["extension"] = fields["extension"][:EXTENSION_MAX]
    if fields.get("answered_by"):
        fields["answered_by"] = fields["answered_by"][:EXTENSION_MAX]
    try:
        return CallEvent.model_validate({"provider": PROVIDER, **fields})
    except ValidationError as error:
        wrong = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'event'}: {e['msg']}" for e in error.errors()
        )
        raise BadEvent(f"not a call event: {wrong}") from None
