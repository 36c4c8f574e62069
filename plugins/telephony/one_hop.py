"""The caller card's reads on SQLite in one trip to a worker thread, not thirty.

Through aiosqlite every step of a read (checking a connection out, BEGIN, a cursor,
execute, fetch, close, ROLLBACK) is its own hand-off to the connection's thread and back:
about thirty for a card's three statements, which was most of its 4 ms
(``bench/caller_card.py``). Here the whole lookup runs in one ``to_thread`` call on a
plain ``sqlite3`` connection of that thread (WAL lets it read beside the writer), with
the card's own code: :class:`SyncReader` has the reader's ``execute`` as a coroutine
that never suspends, so the card's coroutine is driven to its end in the thread by a
single ``send``. PostgreSQL keeps the async path: asyncpg has no such hops.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import Connection, create_engine, event, make_url
from sqlalchemy.pool import QueuePool

T = TypeVar("T")

THREADS = 4  # concurrent lookups; SQLite readers do not block each other in WAL mode


class Suspended(RuntimeError):
    """The work awaited something that really waits: it cannot run in one hop."""


class SyncReader:
    """A read-only reader over a synchronous connection, with the async reader's face."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def execute(self, statement: Any, parameters: Any = None) -> Any:
        if not getattr(statement, "is_select", False):
            raise PermissionError("the store is read-only here")
        return self._conn.execute(statement, parameters)

    @property
    def dialect(self) -> str:
        return self._conn.dialect.name


def run_to_end(coroutine: Coroutine[Any, Any, T]) -> T:
    """Drive a coroutine that never suspends; :class:`Suspended` if it tries to."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise Suspended("the lookup awaited something that waits")


class OneHopReads:
    """Run ``work(reader)`` for a SQLite store in one worker-thread hop."""

    def __init__(self, store_url: str) -> None:
        url = make_url(store_url).set(drivername="sqlite")
        self.engine = create_engine(
            url,
            poolclass=QueuePool,
            pool_size=THREADS,
            max_overflow=0,
            connect_args={"check_same_thread": False},
        )
        event.listen(self.engine, "connect", _read_only)
        self.threads = ThreadPoolExecutor(THREADS, thread_name_prefix="card-read")

    async def read(self, work: Callable[[SyncReader], Coroutine[Any, Any, T]]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.threads, self._read, work)

    def _read(self, work: Callable[[SyncReader], Coroutine[Any, Any, T]]) -> T:
        with self.engine.connect() as conn:  # the pool rolls back on return
            return run_to_end(work(SyncReader(conn)))

    def close(self) -> None:
        self.threads.shutdown(wait=False, cancel_futures=True)
        self.engine.dispose()


def _read_only(connection: Any, _record: Any) -> None:
    connection.execute("PRAGMA query_only = 1")
