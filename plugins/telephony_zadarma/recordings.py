"""Zadarma's recordings: a fresh link to each, asked of Zadarma's API when a manager listens.

``GET /v1/pbx/record/request/?call_id=<call_id_with_rec>`` answers
``{"status": "success", "link": "https://api.zadarma.com/v1/pbx/record/download/...",
"lifetime_till": "YYYY-MM-DD HH:MM:SS"}``; the link works for ``lifetime`` seconds (default
1800), which is why the hub keeps the id and asks again each time.

Every API request is signed (``Authorization: <key>:<signature>``): the parameters sorted
by name, as a query string (PHP's ``http_build_query``, RFC 1738: a space is ``+``), then
``signature = base64(hex(HMAC-SHA1(method + query + md5_hex(query), secret)))`` where
``method`` is the path (``/v1/pbx/record/request/``). As with the notifications, PHP's
``hash_hmac`` answers the lowercase hex digest, and that text is base64-encoded. The SDK
adds ``format=json`` to the parameters before signing; so does the hub.

Sources (read 2025-11):

- https://zadarma.com/ru/support/api/ (and the /ua/, /en/ copies): "Авторизация", the
  signature's steps; "Запрос на получение записи разговора", GET /v1/pbx/record/request/.
- github.com/zadarma/user-api-v1 ``lib/Client.php`` (``_getAuthHeader``: ksort,
  ``http_build_query(..., PHP_QUERY_RFC1738)``, ``hash_hmac('sha1', $method . $params .
  md5($params), $secret)`` base64-encoded; ``format`` added to the parameters),
  ``examples/pbx_record_request.php``, ``lib/Response/PbxRecordRequest.php`` (``link``,
  ``links``, ``lifetime_till``).
- github.com/zadarma/openapi ``spec/v1/openapi.json``, operation ``pbx.record.request.get``
  (``call_id`` or ``pbx_call_id``; ``lifetime`` 180 to 5184000 s, default 1800; the two
  answers).

Not verified: what Zadarma answers for a recording it does not have (no page shows an
error body; an answer ``"status": "error"`` whose message says "not found", or a 404,
is taken as "no such recording", any other error as a refusal).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from typing import Any
from urllib.parse import quote_plus

import aiohttp
import orjson
import structlog
from yarl import URL

from plugins.telephony.recordings import NoRecording, ProviderRefused, ProviderUnavailable
from plugins.telephony_zadarma.config import ZadarmaConfig
from plugins.telephony_zadarma.notifications import PROVIDER

log = structlog.get_logger("plugins.telephony_zadarma")

RECORD_REQUEST = "/v1/pbx/record/request/"
MAX_ANSWER = 64 * 1024  # the answer is one link


def query_string(params: dict[str, str]) -> str:
    """``http_build_query`` of ``params`` sorted by name (RFC 1738), as PHP builds it: PHP
    encodes ``~`` where Python's quoting keeps it."""
    return "&".join(
        f"{quote_plus(k, safe='')}={quote_plus(v, safe='')}".replace("~", "%7E")
        for k, v in sorted(params.items())
    )


def api_signature(method: str, query: str, secret: str) -> str:
    """The signature of an API request: base64 of the hex HMAC-SHA1 of method + query +
    md5(query)."""
    text = method + query + hashlib.md5(query.encode()).hexdigest()
    digest = hmac.new(secret.encode(), text.encode(), hashlib.sha1).hexdigest()
    return base64.b64encode(digest.encode()).decode()


def _is_link(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(("https://", "http://"))


class ZadarmaRecordings:
    """The :class:`~plugins.telephony.recordings.RecordingSource` of Zadarma calls."""

    provider = PROVIDER

    def __init__(self, config: ZadarmaConfig) -> None:
        self.config = config
        self._session: aiohttp.ClientSession | None = None

    async def listen_link(self, recording_id: str) -> str:
        if self.config.api_key is None:
            raise ProviderUnavailable(
                "в [plugins.telephony_zadarma] не задан api_key (the API key is not set)"
            )
        params = {"call_id": recording_id, "format": "json"}
        answer = await self._get(RECORD_REQUEST, params)
        link = answer.get("link")
        if answer.get("status") == "success" and _is_link(link):
            return str(link)
        message = str(answer.get("message") or answer.get("status") or "no link")[:200]
        if "not found" in message.lower():
            raise NoRecording(message)
        raise ProviderRefused(f"Zadarma: {message}")

    async def _get(self, method: str, params: dict[str, str]) -> dict[str, Any]:
        assert self.config.api_key is not None
        query = query_string(params)
        secret = self.config.api_secret.get_secret_value()
        key = self.config.api_key.get_secret_value()
        headers = {"Authorization": f"{key}:{api_signature(method, query, secret)}"}
        # Sent exactly as signed: the URL is not re-encoded on the way.
        url = URL(f"{self.config.api_url}{method}?{query}", encoded=True)
        try:
            async with self.session.get(url, headers=headers, allow_redirects=False) as response:
                body = await response.content.read(MAX_ANSWER)
                status = response.status
        except (TimeoutError, aiohttp.ClientError) as error:
            waited = self.config.api_timeout.total_seconds()
            raise ProviderUnavailable(
                f"Zadarma не ответил за {waited:g} с ({type(error).__name__})"
            ) from None
        if status == 429 or status >= 500:
            raise ProviderUnavailable(f"Zadarma ответил {status}")
        if status in (401, 403):
            raise ProviderRefused(
                f"Zadarma не принял ключ ({status}): проверьте api_key и api_secret"
            )
        try:
            answer = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise ProviderRefused(f"Zadarma ответил не JSON ({status})") from None
        if not isinstance(answer, dict):
            raise ProviderRefused(f"Zadarma ответил не объект JSON ({status})")
        if status == 404:
            raise NoRecording(str(answer.get("message") or "not found")[:200])
        return answer

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.config.api_timeout.total_seconds()),
                raise_for_status=False,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            await asyncio.sleep(0)  # lets the connector close its transports
