"""Which endpoints want an event, and the body they are sent for it."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import orjson

from plugins.webhooks.config import Endpoint

# Datetimes as Standard Webhooks' examples write them ("2022-11-03T20:26:10.344522Z").
_JSON_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC


def _pattern(events: Iterable[str]) -> re.Pattern[str]:
    """One regular expression for an endpoint's event types, ``*`` standing for any run."""
    return re.compile("|".join(".*".join(map(re.escape, p.split("*"))) for p in events))


class Subscriptions:
    """The enabled endpoints subscribed to each event type.

    The answer for a type is worked out once and kept: ``hub_react`` asks for every
    event of every batch the writer writes, and there are few types.
    """

    def __init__(self, endpoints: Iterable[Endpoint]) -> None:
        self._patterns = [(e.name, _pattern(e.events)) for e in endpoints if e.enabled]
        self._by_type: dict[str, tuple[str, ...]] = {}

    def __bool__(self) -> bool:
        return bool(self._patterns)

    def endpoints_for(self, event_type: str) -> tuple[str, ...]:
        found = self._by_type.get(event_type)
        if found is None:
            found = tuple(n for n, pattern in self._patterns if pattern.fullmatch(event_type))
            self._by_type[event_type] = found
        return found


def _dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value, default=str, option=_JSON_OPTIONS)
    except orjson.JSONEncodeError:
        # A dict keyed by numbers: allowed, at twice the cost, so not tried first.
        return orjson.dumps(value, default=str, option=_JSON_OPTIONS | orjson.OPT_NON_STR_KEYS)


def jsonable(value: Any) -> Any:
    """``value`` as JSON would give it back: decimals as strings, datetimes in ISO 8601."""
    return orjson.loads(_dumps(value))


def webhook_body(event: dict[str, Any]) -> dict[str, Any]:
    """A domain event as Standard Webhooks' payload: ``type``, ``timestamp`` (when it
    happened, not when it is delivered) and ``data`` (the subject's id and kind, and what
    the event says about it)."""
    return jsonable(
        {
            "type": event["type"],
            "timestamp": event["occurred_at"],
            "data": {"id": event["subject_id"], "subject": event["subject"], **event["payload"]},
        }
    )


def encode(body: dict[str, Any]) -> bytes:
    """The bytes posted and signed: minified JSON, as the spec recommends."""
    return _dumps(body)
