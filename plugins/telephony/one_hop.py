"""The caller card's reads on SQLite: on the event loop itself, not in worker threads.

A card is three indexed SELECTs on a database the page cache holds: about 0.3 ms of
CPU once the statements are prepared (:mod:`plugins.telephony.prepared`), less than
handing it to a thread and back. And the hand-off had a worse cost than its own: the
card's Python ran in four ``card-read`` threads beside the loop, each sqlite3 call
giving the GIL up and taking it back, so under load the loop and the readers queued on
the GIL, each wait up to the interpreter's 5 ms switch interval: that, not the lookup,
was the HTTP p99 of 48 ms at 500 lookups/s (``bench/caller_card.py``).

So the lookup runs to its end on the loop, on a plain ``sqlite3`` connection of its
own (WAL lets it read beside the writer) with no busy wait (``busy_timeout`` 0): a
coroutine whose ``execute`` never suspends is driven by a single ``send``
(:func:`run_to_end`). When that connection is taken (a lookup holding it, a test) or
SQLite answers busy (a WAL recovery), the lookup goes once to a worker thread, where
it may wait for a connection and for the lock without holding the loop up. PostgreSQL
has its own path (:mod:`plugins.telephony.pg_reads`).
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import Dialect, make_url

from plugins.telephony.prepared import Rows, Statements

T = TypeVar("T")

THREADS = 2  # the worker threads' connections, for when the loop's is taken or busy
WAIT = 30.0  # seconds a worker thread waits for a connection, or for SQLite's lock (ms below)
BUSY_WAIT_MS = 5000


class Suspended(RuntimeError):
    """The work awaited something that really waits: it cannot run in one hop."""


class SyncReader:
    """A read-only reader over a ``sqlite3`` connection, with the async reader's face."""

    def __init__(self, conn: sqlite3.Connection, statements: Statements) -> None:
        self._conn = conn
        self._statements = statements

    async def execute(self, statement: Any, parameters: Any = None) -> Rows:
        prepared = self._statements(statement)
        cursor = self._conn.execute(prepared.sql, prepared.arguments(parameters))
        raw = cursor.fetchall()
        if not prepared.ready:
            prepared.converters([None] * len(cursor.description))
        return prepared.rows(raw)

    @property
    def dialect(self) -> str:
        return "sqlite"


def run_to_end(coroutine: Coroutine[Any, Any, T]) -> T:
    """Drive a coroutine that never suspends; :class:`Suspended` if it tries to."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise Suspended("the lookup awaited something that waits")


class OneHopReads:
    """Run ``work(reader)`` for a SQLite store on the loop, else in one worker-thread hop."""

    def __init__(self, store_url: str, dialect: Dialect) -> None:
        self.path = make_url(store_url).database or ""
        self.statements = Statements(dialect)
        self.loop_conns: queue.LifoQueue[sqlite3.Connection] = queue.LifoQueue()
        self.loop_conns.put(self._connect(busy_ms=0))
        self.thread_conns: queue.LifoQueue[sqlite3.Connection] = queue.LifoQueue()
        for _ in range(THREADS):
            self.thread_conns.put(self._connect(busy_ms=BUSY_WAIT_MS))
        self.threads = ThreadPoolExecutor(THREADS, thread_name_prefix="card-read")
        self.inline = 0  # lookups answered on the loop, and in a worker thread
        self.hopped = 0

    def _connect(self, busy_ms: int) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, cached_statements=256
        )
        conn.execute("PRAGMA query_only = 1")
        conn.execute(f"PRAGMA busy_timeout = {busy_ms}")
        return conn

    async def read(self, work: Callable[[SyncReader], Coroutine[Any, Any, T]]) -> T:
        try:
            conn = self.loop_conns.get_nowait()
        except queue.Empty:
            pass
        else:
            try:
                answer = self._run(conn, work)
            except sqlite3.OperationalError as error:
                if not _busy(error):
                    raise
            else:
                self.inline += 1
                return answer
            finally:
                self.loop_conns.put(conn)
        self.hopped += 1
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.threads, self._in_thread, work)

    def _in_thread(self, work: Callable[[SyncReader], Coroutine[Any, Any, T]]) -> T:
        try:
            conn = self.thread_conns.get(timeout=WAIT)
        except queue.Empty:
            raise TimeoutError(f"no SQLite reader free within {WAIT:g}s") from None
        try:
            return self._run(conn, work)
        finally:
            self.thread_conns.put(conn)

    def _run(
        self, conn: sqlite3.Connection, work: Callable[[SyncReader], Coroutine[Any, Any, T]]
    ) -> T:
        conn.execute("BEGIN")  # one snapshot for the card's statements
        try:
            return run_to_end(work(SyncReader(conn, self.statements)))
        finally:
            conn.execute("ROLLBACK")

    def close(self) -> None:
        self.threads.shutdown(wait=False, cancel_futures=True)
        for conns in (self.loop_conns, self.thread_conns):
            while True:
                try:
                    conns.get_nowait().close()
                except queue.Empty:
                    break


def _busy(error: sqlite3.OperationalError) -> bool:
    text = str(error)
    return "locked" in text or "busy" in text
