"""Accepting: every channel's input is stored before the channel answers.

``Intake.accept`` queues the event for the group-commit writer, which stores
every event queued meanwhile in one transaction (one disk sync for the group)
and only then resolves each caller. The :class:`Worker` claims pending events in
batches (``FOR UPDATE SKIP LOCKED`` on PostgreSQL), runs the lead pipeline over
them in one transaction and marks them done; an event that fails is retried with
backoff and, after ``intake.max_attempts``, kept as dead for ``hub inbox replay``.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import asyncpg
import orjson
import structlog
from sqlalchemy import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.config import IntakeSection
from hub.store import Store
from hub.store.engine import json_dumps
from hub.store.models import InboxEvent
from hub.store.types import utcnow

if TYPE_CHECKING:
    from hub.metrics import Metrics

log = structlog.get_logger("hub.intake")
inbox = InboxEvent.__table__

MAX_KEY = 190
PG_GROUPS_IN_FLIGHT = 4  # concurrent group writes on PostgreSQL, a connection each
SQLITE_HOLD = 0.05  # seconds the SQLite intake keeps the write connection in a burst
BURST_PROBE = 0.1  # seconds of CPU use a worker looks at before taking a batch
BURST_BUSY = 0.6  # share of one core above which the intake is taken to be in a burst


class IntakeClosed(RuntimeError):
    """The hub is shutting down and accepts nothing new."""


class UnstorableEvent(ValueError):
    """This one event cannot be stored as given; nothing was written, other events go on.

    Its payload does not serialise to JSON (a lone surrogate, an integer beyond
    64 bits), or holds a NUL character, which PostgreSQL keeps in neither text
    nor jsonb (refused on SQLite too, so a channel behaves the same on both
    stores), or the store refused the event when it was written alone. A
    channel answers its client with a 4xx: sending the same again will not help.
    """


@dataclass(frozen=True, slots=True)
class Accepted:
    id: int
    duplicate: bool
    status: str


@dataclass(frozen=True, slots=True)
class _LoadMark:
    cpu: float  # process CPU seconds
    wall: float  # monotonic seconds
    processing: float  # seconds workers spent on batches
    stored: int  # events stored


@dataclass(slots=True)
class _Item:
    channel: str
    key: str
    previous_key: str | None  # the same content's key in the previous window
    payload: str  # serialised once, in accept(), and bound as it is on both stores
    status: str
    received_at: datetime
    future: asyncio.Future[Accepted]


def idempotency_keys(
    *, external_id: str | None, fingerprint: Any, now: datetime, window: timedelta
) -> tuple[str, str | None]:
    """The key an event is stored under, and the key the same content had one window ago.

    A channel's own id (a message id, a call id, an ``Idempotency-Key``) makes a
    key unique for ever. Otherwise the content is hashed with its time window, so
    the same submission twice within ``window`` is one event and a week later is
    a new request.
    """
    if external_id:
        return _channel_key(external_id), None
    return _content_keys(orjson.dumps(fingerprint, option=orjson.OPT_SORT_KEYS), now, window)


def _channel_key(external_id: str) -> str:
    key = f"id:{external_id}"
    if len(key) > MAX_KEY or not storable_text(key):
        # surrogatepass: an id holding a lone surrogate is still one distinct key
        key = "id#" + hashlib.sha256(external_id.encode("utf-8", "surrogatepass")).hexdigest()
    return key


def _content_keys(content: bytes, now: datetime, window: timedelta) -> tuple[str, str]:
    digest = hashlib.sha256(content).hexdigest()
    seconds = max(1, int(window.total_seconds()))
    bucket = int(now.timestamp()) // seconds
    return f"h:{bucket}:{digest}", f"h:{bucket - 1}:{digest}"


# An escaped NUL in JSON text: a backslash-u0000 not itself preceded by an escaping backslash.
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def _serialise(payload: Any, *, sort_keys: bool = False) -> str:
    """The payload as the JSON text both stores keep, or :class:`UnstorableEvent`."""
    try:
        if sort_keys:  # default=str as the store's own json_dumps
            text = orjson.dumps(payload, default=str, option=orjson.OPT_SORT_KEYS).decode()
        else:
            text = json_dumps(payload)
    except TypeError as error:  # orjson.JSONEncodeError: a lone surrogate, a huge integer...
        raise UnstorableEvent(f"payload cannot be stored as JSON: {error}") from None
    if "\\u0000" in text and _NUL_ESCAPE.search(text):
        raise UnstorableEvent("payload holds a NUL character, which PostgreSQL cannot store")
    return text


def storable_text(text: str) -> bool:
    """Whether a text column keeps ``text`` on both stores: UTF-8 without NUL."""
    if "\x00" in text:
        return False
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True


class Intake:
    def __init__(self, store: Store, settings: IntakeSection, metrics: Metrics) -> None:
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self.new_events = asyncio.Event()
        self.unclaimed = 0  # events this process stored since a worker last claimed
        self._unclaimed_times: deque[list[float]] = deque()  # [monotonic time, events]
        self._stored = 0  # events stored by this process, ever
        self._processing = 0.0  # seconds in which some worker of this process had a batch, ever
        self._batches = 0  # batches being processed now
        self._batches_since = 0.0  # monotonic time the current run of batches began
        self._queue: list[_Item] = []
        self._wake = asyncio.Event()
        self._closed = False
        self._writer: asyncio.Task[None] | None = None
        self._pg_idle: list[AsyncConnection] = []  # the intake's own PostgreSQL connections

    async def start(self) -> None:
        self._closed = False
        self._writer = asyncio.create_task(self._write_loop(), name="intake-writer")

    async def stop(self) -> None:
        """Refuse new events, write the ones already queued, stop the writer."""
        self._closed = True
        self._wake.set()
        if self._writer is not None:
            await self._writer
            self._writer = None
        while self._pg_idle:
            await _discard(self._pg_idle.pop())  # not back to the pool: see _pg_connect

    async def accept(
        self,
        channel: str,
        payload: dict[str, Any],
        *,
        external_id: str | None = None,
        fingerprint: Any = None,
        status: str = "pending",
    ) -> Accepted:
        """Store ``payload`` durably; returns once it is committed.

        A repeat (same ``external_id``, or same ``fingerprint`` within the dedupe
        window) returns the first event's id with ``duplicate=True`` and stores
        nothing new.
        """
        if self._closed:
            raise IntakeClosed("the hub is shutting down")
        if not (storable_text(channel) and storable_text(status)):
            raise UnstorableEvent(f"channel {channel!r} or status {status!r} cannot be stored")
        now = utcnow()
        window = self.settings.dedupe_window
        # Checked and serialised here, for this caller alone: an event no store can keep
        # never joins a group, where it would fail every event committed with it.
        if external_id or fingerprint is not None:
            stored = _serialise(payload)
            try:
                key, previous = idempotency_keys(
                    external_id=external_id, fingerprint=fingerprint, now=now, window=window
                )
            except TypeError as error:  # orjson's, for a fingerprint it cannot hash
                raise UnstorableEvent(f"fingerprint cannot be hashed: {error}") from None
        else:
            # The payload is its own fingerprint: one serialisation, sorted as the key
            # needs it, is both hashed and stored.
            stored = _serialise(payload, sort_keys=True)
            key, previous = _content_keys(stored.encode(), now, window)
        future: asyncio.Future[Accepted] = asyncio.get_running_loop().create_future()
        self._queue.append(_Item(channel, key, previous, stored, status, now, future))
        self._wake.set()
        # A caller cancelled here (a client hanging up) cancels only this future:
        # the item stays queued and is written; the writer skips answering it.
        return await future

    async def _write_loop(self) -> None:
        if self.store.is_sqlite:
            return await self._write_loop_sqlite()
        # On PostgreSQL a few groups go at once, each on its own connection, so a
        # group's round trip does not hold up the next one.
        inflight: set[asyncio.Task[None]] = set()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                if len(inflight) >= PG_GROUPS_IN_FLIGHT:
                    await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
                    continue
                group = self._take_group()
                task = asyncio.create_task(self._commit(group))
                inflight.add(task)
                task.add_done_callback(inflight.discard)
            if self._closed and not self._queue:
                if inflight:
                    await asyncio.wait(inflight)
                return

    async def _write_loop_sqlite(self) -> None:
        """Hold the write connection while events are queued; its thread stores group after group.

        Each group is a transaction in aiosqlite's thread (:func:`_store_group_sqlite`);
        the thread takes the next group as soon as one commits, instead of handing
        the connection back to the event loop for every group (a checkout, a reset
        and two hops through a loop that is busy parsing requests). It gives the
        connection back when the queue is empty or after ``SQLITE_HOLD`` seconds,
        so a worker waiting for it gets its turn.
        """
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                try:
                    async with self.store.writer.connect() as conn:
                        driver = (await conn.get_raw_connection()).driver_connection
                        # aiosqlite runs callables in its thread with _execute; SQLAlchemy's
                        # own aiosqlite dialect uses the same queue. tests/test_intake.py
                        # covers it.
                        await driver._execute(  # type: ignore[union-attr]
                            self._drain_sqlite,
                            driver._conn,  # type: ignore[union-attr]
                            loop,
                            _SqliteBinds.get(conn.dialect),
                        )
                except Exception as error:  # no connection: the next group fails, not the hub
                    if self._queue:
                        self._failed(self._take_group(), error)
            if self._closed and not self._queue:
                return

    def _drain_sqlite(
        self, db: sqlite3.Connection, loop: asyncio.AbstractEventLoop, binds: _SqliteBinds
    ) -> None:
        """In the connection's thread: store queued groups, answering each on the loop."""
        until = time.monotonic() + SQLITE_HOLD
        window = self.settings.dedupe_window
        while self._queue and time.monotonic() < until:
            group = self._take_group()  # list slicing is atomic; accept() only appends
            started = time.perf_counter()
            try:
                results = _store_group_sqlite(db, group, window, binds)
            except Exception as error:
                if len(group) == 1 or _store_unavailable(error):
                    loop.call_soon_threadsafe(self._failed, group, error)
                    continue
                log.warning("intake_group_split", events=len(group), error=repr(error))
                stored, refused = [], []
                parts = _halves(group)
                while parts:
                    part = parts.pop()
                    try:
                        results = _store_group_sqlite(db, part, window, binds)
                        stored += zip(part, results, strict=True)
                    except Exception as part_error:
                        refused += _refused(part, part_error, parts)
                elapsed = time.perf_counter() - started
                loop.call_soon_threadsafe(self._answer_split, stored, refused, elapsed)
            else:
                elapsed = time.perf_counter() - started
                loop.call_soon_threadsafe(self._answer, group, results, elapsed)

    def _take_group(self) -> list[_Item]:
        group = self._queue[: self.settings.group_commit_max]
        del self._queue[: len(group)]
        return group

    async def _commit(self, group: list[_Item]) -> None:
        """Store one group and answer its accepts."""
        started = time.perf_counter()
        try:
            results = await self._write_postgresql(group)
        except Exception as error:
            if len(group) == 1 or _store_unavailable(error):
                self._failed(group, error)
                return
            log.warning("intake_group_split", events=len(group), error=repr(error))
            stored, refused = [], []
            parts = _halves(group)
            while parts:
                part = parts.pop()
                try:
                    stored += zip(part, await self._write_postgresql(part), strict=True)
                except Exception as part_error:
                    refused += _refused(part, part_error, parts)
            self._answer_split(stored, refused, time.perf_counter() - started)
            return
        self._answer(group, results, time.perf_counter() - started)

    def _failed(self, group: list[_Item], error: Exception) -> None:
        log.error("intake_write_failed", events=len(group), exc_info=error)
        for item in group:
            if not item.future.done():
                item.future.set_exception(error)

    def _answer_split(
        self,
        stored: list[tuple[_Item, Accepted]],
        refused: list[tuple[_Item, Exception]],
        seconds: float,
    ) -> None:
        """Answer a group that failed and was stored in halves, down to the bad events.

        An event the store refused on its own while it could store others is
        that event's fault: its caller gets :class:`UnstorableEvent`, not a
        reason to send it again.
        """
        if stored:
            self._answer([i for i, _ in stored], [r for _, r in stored], seconds)
        unavailable = [(i, e) for i, e in refused if _store_unavailable(e)]
        if unavailable:  # the store went away during the retries: one error for the rest
            self._failed([i for i, _ in unavailable], unavailable[0][1])
        for item, error in refused:
            if _store_unavailable(error):
                continue
            log.error("intake_event_refused", channel=item.channel, key=item.key, exc_info=error)
            refusal = UnstorableEvent(f"the store refused this event: {error!r}")
            refusal.__cause__ = error
            if not item.future.done():
                item.future.set_exception(refusal)

    def _answer(self, group: list[_Item], results: list[Accepted], seconds: float) -> None:
        """Resolve the group's accepts after its commit; count it."""
        self.metrics.group_commit.observe(len(group))
        self.metrics.commit_seconds.observe(seconds)
        fresh = 0
        counts: dict[tuple[str, str | None], int] = {}
        for item, result in zip(group, results, strict=True):
            if not item.future.done():
                item.future.set_result(result)
            if not result.duplicate and result.status == "pending":
                fresh += 1
            key = (item.channel, None if result.duplicate else result.status)
            counts[key] = counts.get(key, 0) + 1
        for (channel, status), n in counts.items():
            if status is None:
                self.metrics.duplicates.labels(channel).inc(n)
            else:
                self.metrics.accepted.labels(channel, status).inc(n)
        self._stored += len(group)
        if fresh:
            self.unclaimed += fresh
            self._unclaimed_times.append([time.monotonic(), fresh])
        self.new_events.set()

    async def wait_for_work(self, batch: int, linger: float, poll: float) -> None:
        """Return when a worker has something worth a transaction.

        That is ``batch`` new events, or ``linger`` seconds after the first new
        one (so a lone lead waits at most that long), or ``poll`` seconds with
        nothing new (retries may have come due). Gathering a batch matters on
        SQLite, where every write shares one connection: a worker taking it for
        each lead would starve the intake's own commits.
        """
        loop = asyncio.get_running_loop()
        if self.unclaimed == 0:
            self.new_events.clear()
            try:
                await asyncio.wait_for(self.new_events.wait(), poll)
            except TimeoutError:
                return
        deadline = loop.time() + linger
        while self.unclaimed < batch and not self._closed:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self.new_events.clear()
            try:
                await asyncio.wait_for(self.new_events.wait(), remaining)
            except TimeoutError:
                return

    def claimed(self, n: int) -> None:
        self.unclaimed = max(0, self.unclaimed - n)
        while n > 0 and self._unclaimed_times:
            entry = self._unclaimed_times[0]
            taken = min(n, int(entry[1]))
            entry[1] -= taken
            n -= taken
            if entry[1] <= 0:
                self._unclaimed_times.popleft()

    def oldest_wait(self) -> float:
        """Seconds the oldest event this process stored has waited for a worker."""
        if not self._unclaimed_times:
            return 0.0
        return time.monotonic() - self._unclaimed_times[0][0]

    def load_mark(self) -> _LoadMark:
        now = time.monotonic()
        processing = self._processing + (now - self._batches_since if self._batches else 0.0)
        return _LoadMark(time.process_time(), now, processing, self._stored)

    def batch_started(self) -> None:
        """A worker took a batch: from now the process's CPU is not all the intake's.

        Time counts once however many workers have a batch, so two workers at
        once do not make the intake look idle to :meth:`yield_to_burst`.
        """
        if self._batches == 0:
            self._batches_since = time.monotonic()
        self._batches += 1

    def batch_ended(self) -> None:
        self._batches -= 1
        if self._batches == 0:
            self._processing += time.monotonic() - self._batches_since

    async def yield_to_burst(
        self, limit: float, since: _LoadMark, *, arrivals_since: _LoadMark | None = None
    ) -> float:
        """Wait while accepting keeps this process's CPU busy; returns the seconds waited.

        ``since`` is the caller's :meth:`load_mark` from when it last stopped
        processing. The process's CPU time from then on, less the time workers
        spent on batches, went to accepting (and other plugins). While that is
        over ``BURST_BUSY`` of one core and events are still arriving, a batch
        would take its time from clients waiting for their answers, so the
        worker waits, until the oldest event it would take has waited ``limit``
        seconds. When nothing arrived since ``arrivals_since`` (the caller's
        mark from before its batch: a quiet process, or a backlog being worked
        off after a burst) this returns at once, without a probe.
        """
        if arrivals_since is not None and self._stored == arrivals_since.stored:
            return 0.0
        mark = since
        waited = 0.0
        while limit > 0 and not self._closed and self.oldest_wait() < limit:
            now = self.load_mark()
            if self._batches:
                # Another worker's batch is running: the CPU cannot be told apart;
                # look again once no batch runs.
                mark = now
                await asyncio.sleep(BURST_PROBE / 4)
                continue
            elapsed = now.wall - mark.wall
            if elapsed < BURST_PROBE:
                await asyncio.sleep(BURST_PROBE - elapsed)
                continue
            busy = (now.cpu - mark.cpu - (now.processing - mark.processing)) / elapsed
            if busy < BURST_BUSY or now.stored == mark.stored:
                break
            if waited == 0:
                log.info("worker_deferring_to_burst", cpu=round(busy, 2), waiting=self.unclaimed)
            mark = now
            await asyncio.sleep(BURST_PROBE)
            waited += BURST_PROBE
            self.metrics.deferred.inc(BURST_PROBE)
        if waited:
            log.info(
                "worker_resumed",
                deferred_s=round(waited, 2),
                waiting=self.unclaimed,
                oldest_s=round(self.oldest_wait(), 2),
            )
        return waited

    async def _write_postgresql(self, group: Sequence[_Item]) -> list[Accepted]:
        """Store the group with one statement: one round trip, committed on its own.

        As on SQLite, the cost of a group under load is the number of trips
        through a busy event loop, not the server (a commit here takes 0.3 ms):
        through SQLAlchemy a group took a pool checkout with its ping, BEGIN,
        four statements and COMMIT, 26 ms in all at 1,200 leads/s. The
        intake keeps its connections (one per group in flight) checked out and
        sends the whole group as arrays to :data:`_GROUP_PG`. A lost connection
        is replaced and the group sent once more, which the idempotency keys
        make safe.
        """
        unique: dict[tuple[str, str], int] = {}
        for index, item in enumerate(group):
            unique.setdefault((item.channel, item.key), index)
        firsts = [group[i] for i in unique.values()]
        args = (
            [i.channel for i in firsts],
            [i.key for i in firsts],
            [i.previous_key for i in firsts],
            [i.status for i in firsts],
            [i.payload for i in firsts],
            [i.received_at for i in firsts],
            self.settings.dedupe_window,
        )
        conn = self._pg_idle.pop() if self._pg_idle else await self._pg_connect()
        try:
            for attempt in (1, 2):
                driver = (await conn.get_raw_connection()).driver_connection
                try:
                    rows = await driver.fetch(_GROUP_PG, *args)
                    break
                except _CONNECTION_LOST as error:
                    if attempt == 2 or isinstance(error, ValueError):
                        raise  # or asyncpg's DataError: a value it cannot send, not a lost line
                    log.warning("intake_connection_lost", events=len(group), error=repr(error))
                    await _discard(conn)
                    conn = await self._pg_connect()
            results: list[Accepted | None] = [None] * len(group)
            indexes = list(unique.values())
            for row in rows:
                if row["n"] is not None:  # a repeat of a stored event
                    results[indexes[row["n"] - 1]] = Accepted(row["id"], True, row["status"])
                else:
                    index = unique[(row["channel"], row["idem_key"])]
                    results[index] = Accepted(row["id"], False, group[index].status)
            for index in indexes:
                if results[index] is None:
                    # Another hub process stored this key after our statement began.
                    item = group[index]
                    found = await driver.fetchrow(
                        "SELECT id, status FROM inbox WHERE channel = $1 AND idem_key = $2",
                        item.channel,
                        item.key,
                    )
                    assert found is not None, "a conflicting key must be stored"
                    results[index] = Accepted(found["id"], True, found["status"])
        except BaseException:
            await _discard(conn)  # its state is unknown: never hand it to the next group
            raise
        self._pg_idle.append(conn)
        return _repeats_in_group(group, results, unique)

    async def _pg_connect(self) -> AsyncConnection:
        """A connection for group writes, whose plan looks keys up by index.

        A prepared statement's generic plan is made once, from the table's size
        then; on a young inbox that is a sequential scan, kept while the table
        grows until autovacuum analyzes it (measured: 1.1 ms a group at 7,000
        rows, 4.1 ms at 21,000). Every look-up of :data:`_GROUP_PG` has the
        (channel, idem_key) index, so these connections, which run nothing
        else, rule out scans and hash or merge joins: 0.4 ms for a group of
        twelve however large the table (planning each group for its own arrays
        instead: 0.6 ms). The
        settings stay on these connections, which are discarded, not pooled,
        when the intake stops.
        """
        conn = await self.store.writer.connect()
        driver = (await conn.get_raw_connection()).driver_connection
        await driver.execute(
            "SET enable_seqscan = off; SET enable_hashjoin = off; SET enable_mergejoin = off"
        )
        return conn


# What a dropped or broken connection raises (a server restart, a terminated
# backend, a half-read reply); the statement's own errors are not among them.
_CONNECTION_LOST = (
    OSError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.PostgresConnectionError,
    asyncpg.AdminShutdownError,
)


def _halves(group: list[_Item]) -> list[list[_Item]]:
    """A failed group's two halves, as a stack whose next part (``pop()``) is the first."""
    half = len(group) // 2
    return [group[half:], group[:half]]


def _refused(
    part: list[_Item], error: Exception, parts: list[list[_Item]]
) -> list[tuple[_Item, Exception]]:
    """After a part of a failed group failed: what is refused now, and what to try next.

    A part that failed splits again (k bad events in a group of n cost about
    2·k·log2(n) small commits, not n); a single event is refused. When the store
    itself is unavailable, everything left is refused with its error at once.
    """
    if _store_unavailable(error):
        left = [item for rest in parts for item in rest]
        parts.clear()
        return [(item, error) for item in (*part, *left)]
    if len(part) == 1:
        return [(part[0], error)]
    parts.extend(_halves(part))
    return []


# SQLSTATE classes that say the store, not a value, is the problem: connection (08),
# transaction state such as a read-only server (25), the statement itself (42), resources
# (53), operator intervention (57), system (58), internal (XX).
_STORE_SQLSTATES = frozenset({"08", "25", "42", "53", "57", "58", "XX"})


def _store_unavailable(error: BaseException) -> bool:
    """Whether a failed write would fail for any event, so retrying events alone is no use.

    SQLite's OperationalError is a lock held too long, a full or read-only disk;
    a bad value shows as another error (a binding, encoding or integrity one).
    """
    if isinstance(error, UnstorableEvent):
        return False
    if isinstance(error, sqlite3.OperationalError):
        return True
    if isinstance(error, asyncpg.PostgresError):
        return (error.sqlstate or "")[:2] in _STORE_SQLSTATES
    return isinstance(error, _CONNECTION_LOST) and not isinstance(error, ValueError)


async def _discard(conn: AsyncConnection) -> None:
    """Drop a connection whose state is unknown; never raises (it may be gone already)."""
    try:
        await conn.invalidate()
        await conn.close()
    except Exception as error:
        log.debug("intake_connection_discard_failed", error=repr(error))


# One group of new events, on PostgreSQL. $1..$6 are parallel arrays (one element
# per distinct key of the group), $7 the dedupe window. An event whose key is
# stored, or whose previous window's key was stored within the window, is a
# repeat: its row (n, the stored id and status) comes back. The others are
# inserted and come back as (channel, key, new id). Every join is an index
# look-up per event, none pairs the group with itself, so a group of 1,000
# costs 1,000 look-ups. The look-ups see the table as it was when the statement
# began, so a key another process inserted meanwhile comes back in neither set
# (ON CONFLICT skipped it): the caller looks that one up.
_GROUP_PG = """
WITH input AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                         $6::timestamptz[])
        WITH ORDINALITY AS t(channel, idem_key, previous_key, status, payload, received_at, n)
),
seen AS (
    SELECT i.*, coalesce(c.id, p.id) AS found_id, coalesce(c.status, p.status) AS found_status
    FROM input i
    LEFT JOIN inbox c ON c.channel = i.channel AND c.idem_key = i.idem_key
    LEFT JOIN inbox p ON p.channel = i.channel AND p.idem_key = i.previous_key
        AND i.received_at - p.received_at <= $7::interval
),
added AS (
    INSERT INTO inbox (channel, idem_key, status, payload, received_at, attempts,
                       next_attempt_at)
    SELECT channel, idem_key, status, payload::jsonb, received_at, 0, received_at
    FROM seen WHERE found_id IS NULL
    ORDER BY n
    ON CONFLICT (channel, idem_key) DO NOTHING
    RETURNING id, channel, idem_key
)
SELECT n, found_id AS id, found_status AS status, NULL AS channel, NULL AS idem_key
FROM seen WHERE found_id IS NOT NULL
UNION ALL
SELECT NULL, id, NULL, channel, idem_key FROM added
"""


_Found = tuple[int, str, datetime]  # id, status, received_at of a stored event


def _sort_group(
    group: Sequence[_Item], existing: dict[tuple[str, str], _Found], window: timedelta
) -> tuple[list[Accepted | None], dict[tuple[str, str], int]]:
    """Answer the events already stored; return the rest as (channel, key) → first index."""
    results: list[Accepted | None] = [None] * len(group)
    fresh: dict[tuple[str, str], int] = {}
    for index, item in enumerate(group):
        found = existing.get((item.channel, item.key))
        if found is None and item.previous_key:
            earlier = existing.get((item.channel, item.previous_key))
            if earlier is not None and item.received_at - earlier[2] <= window:
                found = earlier
        if found is not None:
            results[index] = Accepted(found[0], True, found[1])
        elif (item.channel, item.key) not in fresh:
            fresh[(item.channel, item.key)] = index
    return results, fresh


def _repeats_in_group(
    group: Sequence[_Item], results: list[Accepted | None], fresh: dict[tuple[str, str], int]
) -> list[Accepted]:
    """A repeat of an event earlier in the same group gets that event's id."""
    out = []
    for index, item in enumerate(group):
        result = results[index]
        if result is None:
            first = results[fresh[(item.channel, item.key)]]
            assert first is not None
            result = Accepted(first.id, True, first.status)
        out.append(result)
    return out


@dataclass(frozen=True, slots=True)
class _SqliteBinds:
    """The inbox columns' SQLAlchemy type processors for the raw SQLite path.

    The payload needs none: it is bound as the JSON text accept() made with the
    store's own serialiser, which is all the JSON type's processor would do.
    """

    time_in: Callable[[Any], Any]
    time_out: Callable[[Any], Any]

    @staticmethod
    @lru_cache(maxsize=4)
    def get(dialect: Dialect) -> _SqliteBinds:
        time_type = inbox.c.received_at.type.dialect_impl(dialect)
        return _SqliteBinds(
            time_in=time_type.bind_processor(dialect) or (lambda v: v),
            time_out=time_type.result_processor(dialect, None) or (lambda v: v),
        )


_INSERT_SQLITE = (
    "INSERT INTO inbox (channel, idem_key, status, payload, received_at, attempts, "
    "next_attempt_at) VALUES (?, ?, ?, ?, ?, 0, ?)"
)


def _store_group_sqlite(
    db: sqlite3.Connection, group: Sequence[_Item], window: timedelta, binds: _SqliteBinds
) -> list[Accepted]:
    """One write transaction for a group, run in the SQLite connection's own thread."""
    channels = sorted({i.channel for i in group})
    keys = sorted({i.key for i in group} | {i.previous_key for i in group if i.previous_key})
    db.execute("BEGIN IMMEDIATE")
    try:
        existing: dict[tuple[str, str], _Found] = {}
        for start in range(0, len(keys), 900):  # under any SQLite's variable limit
            chunk = keys[start : start + 900]
            rows = db.execute(
                "SELECT id, channel, idem_key, status, received_at FROM inbox"
                f" WHERE channel IN ({','.join('?' * len(channels))})"
                f" AND idem_key IN ({','.join('?' * len(chunk))})",
                [*channels, *chunk],
            )
            for event_id, channel, key, status, received in rows:
                existing[(channel, key)] = (event_id, status, binds.time_out(received))
        results, fresh = _sort_group(group, existing, window)
        for index in fresh.values():
            item = group[index]
            received = binds.time_in(item.received_at)
            cursor = db.execute(
                _INSERT_SQLITE,
                (
                    item.channel,
                    item.key,
                    item.status,
                    item.payload,
                    received,
                    received,
                ),
            )
            results[index] = Accepted(cursor.lastrowid or 0, False, item.status)
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return _repeats_in_group(group, results, fresh)
