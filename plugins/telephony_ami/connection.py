"""One AMI session over TCP: greeting, Login, actions with their responses, and events.

``run`` reads until the connection ends and hands each event to a callback, in the order
Asterisk sent them (the call state depends on that order). A response is matched to its
action by ``ActionID``; an action whose answer is a list (``CoreShowChannels``) collects
the list's events until its ``...Complete`` event.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from plugins.telephony_ami.protocol import Message, encode, read_banner, read_message

_ids = itertools.count(1)


class AuthRefused(Exception):
    """Asterisk answered the Login with an error (a wrong username or secret, a denied host)."""


class ConnectionLost(Exception):
    """The session ended: closed by the PBX, reset, or silent past the ping timeout."""


@dataclass
class _Pending:
    future: asyncio.Future[tuple[Message, list[Message]]]
    complete_event: str | None
    response: Message | None = None
    items: list[Message] = field(default_factory=list)


class AmiConnection:
    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, banner: str
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.banner = banner
        self._pending: dict[str, _Pending] = {}
        self._closed_because: str | None = None

    @classmethod
    async def open(cls, host: str, port: int, timeout: float) -> AmiConnection:
        """Connect and read the greeting; OSError, TimeoutError or ProtocolError if not."""
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                banner = await read_banner(reader)
            except BaseException:
                writer.close()
                raise
        return cls(reader, writer, banner)

    async def login(self, username: str, secret: str, events: str, timeout: float) -> None:
        """Log in; raises :class:`AuthRefused` with Asterisk's message when refused."""
        action_id = await self._send(
            {"Action": "Login", "Username": username, "Secret": secret, "Events": events}
        )
        async with asyncio.timeout(timeout):
            while True:
                message = await read_message(self.reader)
                if message is None:
                    raise ConnectionLost("closed by the PBX during Login")
                if message.response and message.action_id in ("", action_id):
                    break
        if message.response.lower() != "success":
            raise AuthRefused(message.get("Message") or message.response)

    async def action(
        self, fields: dict[str, str], *, complete_event: str | None = None, timeout: float
    ) -> tuple[Message, list[Message]]:
        """Send an action and wait for its response (and its list, for ``complete_event``).

        Needs :meth:`run` reading meanwhile.
        """
        future: asyncio.Future[tuple[Message, list[Message]]] = (
            asyncio.get_running_loop().create_future()
        )
        action_id = f"crm-hub-{next(_ids)}"
        self._pending[action_id] = _Pending(future, complete_event)
        try:
            await self._send(fields, action_id)
            async with asyncio.timeout(timeout):
                return await future
        finally:
            self._pending.pop(action_id, None)

    async def run(self, on_event: Callable[[Message], Awaitable[None]]) -> None:
        """Read until the connection ends (raises :class:`ConnectionLost`)."""
        try:
            while True:
                try:
                    message = await read_message(self.reader)
                except (ConnectionError, OSError) as error:
                    raise ConnectionLost(f"{type(error).__name__}: {error}") from None
                if message is None:
                    raise ConnectionLost(self._closed_because or "connection closed by the PBX")
                pending = self._pending.get(message.action_id) if message.action_id else None
                if pending is not None:
                    self._answer(pending, message)
                elif message.event:
                    await on_event(message)
        finally:
            for pending in self._pending.values():
                if not pending.future.done():
                    pending.future.set_exception(ConnectionLost("connection ended"))

    def close(self, reason: str | None = None) -> None:
        """Close the connection; ``run`` then ends with ``reason``."""
        self._closed_because = self._closed_because or reason
        if not self.writer.is_closing():
            self.writer.close()

    @staticmethod
    def _answer(pending: _Pending, message: Message) -> None:
        if pending.future.done():
            return
        if message.response:
            pending.response = message
            listing = message.get("EventList").lower() == "start"
            if pending.complete_event is None or not listing:
                pending.future.set_result((message, []))
        elif pending.response is not None and message.event:
            if message.event.lower() == (pending.complete_event or "").lower():
                pending.future.set_result((pending.response, pending.items))
            else:
                pending.items.append(message)

    async def _send(self, fields: dict[str, str], action_id: str | None = None) -> str:
        action_id = action_id or f"crm-hub-{next(_ids)}"
        self.writer.write(encode([*fields.items(), ("ActionID", action_id)]))
        await self.writer.drain()
        return action_id
