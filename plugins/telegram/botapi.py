"""A Bot API client (https://core.telegram.org/bots/api#making-requests): one method call,
its answer or the error Telegram described.

Every request is ``POST {api_url}/bot{token}/{method}`` with a JSON body; every answer is
``{"ok": true, "result": ...}`` or ``{"ok": false, "error_code": N, "description": "...",
"parameters": {"retry_after": N, "migrate_to_chat_id": N}}``
(https://core.telegram.org/bots/api#responseparameters). The token is in the path, so no
URL from here is ever logged or put in an error: only the method's name.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson


class ApiError(Exception):
    """Telegram answered, and refused: ``error_code`` is the HTTP status it gave."""

    def __init__(
        self,
        method: str,
        error_code: int,
        description: str,
        *,
        retry_after: int | None = None,
        migrate_to_chat_id: int | None = None,
    ) -> None:
        super().__init__(method, error_code, description)
        self.method = method
        self.error_code = error_code
        self.description = description
        self.retry_after = retry_after
        self.migrate_to_chat_id = migrate_to_chat_id

    def __str__(self) -> str:
        return f"{self.method}: {self.error_code} {self.description}"


class Unreachable(Exception):
    """No answer: a timeout, a refused or dropped connection, an answer that is not the API's."""


class BotApi:
    def __init__(self, api_url: str, token: str, timeout: float) -> None:
        self._base = f"{api_url}/bot{token}/"
        self._token = token
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    @property
    def is_open(self) -> bool:
        return self._session is not None

    def open(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                json_serialize=lambda value: orjson.dumps(value).decode(),
                raise_for_status=False,
            )

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """The ``result`` of ``method``; raises :class:`ApiError` or :class:`Unreachable`."""
        if self._session is None:
            raise Unreachable(f"{method}: the Telegram plugin is not started")
        try:
            async with self._session.post(self._base + method, json=params or {}) as response:
                status = response.status
                raw = await response.read()
        except TimeoutError:
            raise Unreachable(f"{method}: no answer within {self._timeout.total:g}s") from None
        except aiohttp.ClientError as error:
            raise Unreachable(f"{method}: {self._scrub(error)}") from None
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("ok"), bool):
            # A proxy's error page, a gateway timeout: not the Bot API speaking.
            raise ApiError(method, status, f"HTTP {status} without a Bot API answer")
        if body["ok"]:
            return body.get("result")
        parameters = body.get("parameters")
        if not isinstance(parameters, dict):
            parameters = {}
        code = _integer(body.get("error_code")) or status
        raise ApiError(
            method,
            code,
            str(body.get("description") or f"error {code}")[:500],
            retry_after=_integer(parameters.get("retry_after")),
            migrate_to_chat_id=_integer(parameters.get("migrate_to_chat_id")),
        )

    def _scrub(self, error: BaseException) -> str:
        """An aiohttp error as text, without the token some of them quote in a URL."""
        text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        return text.replace(self._token, "[token]")[:300]


def _integer(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
