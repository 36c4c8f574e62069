"""One request to an HTTP gateway (SMS.ru, SMSC.ru, a third party's): a form POSTed, its
JSON answer, or why there was none, as :class:`Transient` the sender retries.

Credentials travel in the form body, never in a URL, and no error from here quotes the
body: nothing secret reaches a log line or a reason stored with a message.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Container
from datetime import timedelta
from typing import Any

import aiohttp
import orjson

from hub.campaigns.gateway import Transient
from hub.plugins import PluginAuthFailed, PluginNotReady
from hub.retry_after import retry_after

# What a gateway's answer says when it refuses: its error code and words, or None for OK.
Refusal = Callable[[dict[str, Any]], tuple[int | None, str] | None]


def open_session(timeout: timedelta) -> aiohttp.ClientSession:
    """The session a gateway plugin sends through, from start-up to shutdown."""
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout.total_seconds()))


async def check_account(
    asked: Awaitable[dict[str, Any]],
    *,
    gateway: str,
    url: str,
    what: str,
    refusal: Refusal,
    credentials: Container[int | None],
    fix: str,
) -> dict[str, Any]:
    """The answer to a gateway's balance query at start-up, or why the plugin cannot start:
    :class:`PluginAuthFailed` for codes in ``credentials`` (the host does not retry it; the
    message says what to ``fix``), :class:`PluginNotReady` for an unreachable gateway or
    any other refusal (the host retries)."""
    try:
        body = await asked
    except Transient as error:
        raise PluginNotReady(f"{gateway} unreachable at {url}: {error}") from None
    refused = refusal(body)
    if refused is None:
        return body
    code, words = refused
    if code in credentials:
        raise PluginAuthFailed(f"{gateway} refused the credentials ({what}: {code} {words}): {fix}")
    raise PluginNotReady(f"{gateway} {what}: {code} {words}")


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
            retry_after_header = response.headers.get("Retry-After")
            raw = await response.read()
    except TimeoutError:
        timeout = session.timeout.total
        raise Transient(f"{what}: no answer within {timeout:g}s") from None
    except aiohttp.ClientError as error:
        raise Transient(f"{what}: {type(error).__name__}") from None
    if status == 429:
        after = retry_after(retry_after_header)
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


def integer(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None
