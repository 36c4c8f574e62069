"""One request to an HTTP gateway (SMS.ru, SMSC.ru, a third party's): a form POSTed, its
JSON answer, or why there was none, as :class:`Transient` the sender retries.

Credentials travel in the form body, never in a URL, and no error from here quotes the
body: nothing secret reaches a log line or a reason stored with a message.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import orjson

from hub.campaigns.gateway import Transient


async def post(
    session: aiohttp.ClientSession | None, url: str, form: dict[str, str], what: str
) -> dict[str, Any]:
    """The answer's JSON object; :class:`Transient` for no answer, 429, 5xx or a page that
    is not the API's (a proxy's error page)."""
    if session is None:
        raise Transient(f"{what}: the gateway is not started")
    try:
        async with session.post(url, data=form) as response:
            status = response.status
            retry_after = response.headers.get("Retry-After")
            raw = await response.read()
    except TimeoutError:
        timeout = session.timeout.total
        raise Transient(f"{what}: no answer within {timeout:g}s") from None
    except aiohttp.ClientError as error:
        raise Transient(f"{what}: {type(error).__name__}") from None
    if status == 429:
        after = retry_after_delay(retry_after)
        raise Transient(f"{what}: HTTP 429, too many requests", after=after)
    if status >= 300:
        # 5xx, or a proxy in front refusing: the message did not get through this time.
        raise Transient(f"{what}: HTTP {status}")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict):
        raise Transient(f"{what}: HTTP {status} without a JSON answer")
    return body


def retry_after_delay(value: str | None) -> timedelta | None:
    """Retry-After as seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return timedelta(seconds=int(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(when - datetime.now(UTC), timedelta(0))


def integer(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None
