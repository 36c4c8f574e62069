"""A ringing call reaches every hub process's screens, whichever process filed it.

A manager's ``/card`` page holds an event stream open to one hub process; the PBX's
webhook may reach another, and any process's intake worker may file the ring. On
SQLite there is one process: the ring is shown at once. On PostgreSQL the filing
sends it with ``pg_notify`` inside the worker's transaction (delivered when it commits,
never for a batch rolled back), and every process listens on its own connection
(:meth:`Rings.listen`, a background task restarted with backoff when the connection
drops) and shows it on its screens. A ring is worth something for seconds only: one
sent while a process was reconnecting is not shown there, and nothing is lost but the
pop-up (the call is filed all the same).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import asyncpg
import structlog
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.store import Store
from plugins.telephony.calls import CallEvent

log = structlog.get_logger("plugins.telephony")

NOTIFY_CHANNEL = "hub_telephony_rings"


class Rings:
    def __init__(self, store: Store, show: Callable[[CallEvent], Awaitable[int]]) -> None:
        self.store = store
        self.show = show
        self._showing: set[asyncio.Task[int]] = set()

    @property
    def shared(self) -> bool:
        """Several hub processes may share the store: rings go through PostgreSQL."""
        return not self.store.is_sqlite

    async def publish(self, conn: AsyncConnection, event: CallEvent) -> None:
        """Show ``event`` on every process's screens once ``conn``'s transaction commits
        (on SQLite, at once: one process)."""
        if self.shared:
            await conn.execute(
                text("SELECT pg_notify(:channel, :payload)"),
                {"channel": NOTIFY_CHANNEL, "payload": event.model_dump_json()},
            )
        else:
            self._show(event)

    async def listen(self) -> None:
        """Show the rings any process sends, until cancelled (PostgreSQL only)."""
        url = make_url(self.store.url).set(drivername="postgresql")
        connection = await asyncpg.connect(url.render_as_string(hide_password=False))
        heard: asyncio.Queue[str] = asyncio.Queue(maxsize=1000)

        def on_ring(_conn: object, _pid: int, _channel: str, payload: str) -> None:
            if heard.full():  # nobody is showing them: the newest ring matters most
                heard.get_nowait()
            heard.put_nowait(payload)

        await connection.add_listener(NOTIFY_CHANNEL, on_ring)
        log.info("rings_listening")
        try:
            while not connection.is_closed():
                try:
                    payload = await asyncio.wait_for(heard.get(), timeout=5)
                except TimeoutError:
                    continue  # look at the connection again: a dropped one ends the task
                try:
                    self._show(CallEvent.model_validate_json(payload))
                except ValueError:
                    log.warning("ring_unreadable", size=len(payload))
            raise ConnectionError("the connection rings are heard on was closed")
        finally:
            if not connection.is_closed():
                await connection.close()

    def _show(self, event: CallEvent) -> None:
        # In a task of its own: neither the worker's transaction nor the listener waits on
        # the screens.
        task = asyncio.create_task(self.show(event), name="telephony-ring")
        self._showing.add(task)
        task.add_done_callback(self._shown)

    def _shown(self, task: asyncio.Task[int]) -> None:
        self._showing.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("ring_not_shown", error=repr(task.exception()))

    async def close(self) -> None:
        for task in list(self._showing):
            task.cancel()
        await asyncio.gather(*self._showing, return_exceptions=True)
