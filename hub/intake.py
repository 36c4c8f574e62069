"""Durable intake: every channel's input is stored before the channel answers.

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
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson
import structlog
from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.config import IntakeSection
from hub.lead import Lead
from hub.leads import LeadPipeline, LeadRejected
from hub.store import Store
from hub.store.models import InboxEvent
from hub.store.ops import allocate_ids, dialect_insert
from hub.store.types import utcnow

if TYPE_CHECKING:
    from hub.metrics import Metrics

log = structlog.get_logger("hub.intake")
inbox = InboxEvent.__table__

MAX_KEY = 190


class IntakeClosed(RuntimeError):
    """The hub is shutting down and accepts nothing new."""


@dataclass(frozen=True, slots=True)
class Accepted:
    id: int
    duplicate: bool
    status: str


@dataclass(slots=True)
class _Item:
    channel: str
    key: str
    previous_key: str | None  # the same content's key in the previous window
    payload: dict[str, Any]
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
        key = f"id:{external_id}"
        if len(key) > MAX_KEY:
            key = "id#" + hashlib.sha256(external_id.encode()).hexdigest()
        return key, None
    digest = hashlib.sha256(orjson.dumps(fingerprint, option=orjson.OPT_SORT_KEYS)).hexdigest()
    seconds = max(1, int(window.total_seconds()))
    bucket = int(now.timestamp()) // seconds
    return f"h:{bucket}:{digest}", f"h:{bucket - 1}:{digest}"


class Intake:
    def __init__(self, store: Store, settings: IntakeSection, metrics: Metrics) -> None:
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self.new_events = asyncio.Event()
        self.unclaimed = 0  # events this process stored since a worker last claimed
        self._queue: list[_Item] = []
        self._wake = asyncio.Event()
        self._closed = False
        self._writer: asyncio.Task[None] | None = None

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
        now = utcnow()
        key, previous = idempotency_keys(
            external_id=external_id,
            fingerprint=payload if fingerprint is None else fingerprint,
            now=now,
            window=self.settings.dedupe_window,
        )
        future: asyncio.Future[Accepted] = asyncio.get_running_loop().create_future()
        self._queue.append(_Item(channel, key, previous, payload, status, now, future))
        self._wake.set()
        # Shielded: a client that hangs up does not cancel a write already queued.
        return await asyncio.shield(future)

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                group = self._queue[: self.settings.group_commit_max]
                del self._queue[: len(group)]
                started = time.perf_counter()
                try:
                    results = await self._write(group)
                except Exception as error:
                    log.exception("intake_write_failed", events=len(group))
                    for item in group:
                        if not item.future.done():
                            item.future.set_exception(error)
                    continue
                self.metrics.group_commit.observe(len(group))
                self.metrics.commit_seconds.observe(time.perf_counter() - started)
                for item, result in zip(group, results, strict=True):
                    if not item.future.done():
                        item.future.set_result(result)
                    if not result.duplicate and result.status == "pending":
                        self.unclaimed += 1
                    if result.duplicate:
                        self.metrics.duplicates.labels(item.channel).inc()
                    else:
                        self.metrics.accepted.labels(item.channel, result.status).inc()
                self.new_events.set()
            if self._closed and not self._queue:
                return

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

    async def _write(self, group: Sequence[_Item]) -> list[Accepted]:
        async with self.store.write() as conn:
            return await self._insert(conn, group)

    async def _insert(self, conn: AsyncConnection, group: Sequence[_Item]) -> list[Accepted]:
        window = self.settings.dedupe_window
        lookup = {(i.channel, i.key) for i in group}
        lookup |= {(i.channel, i.previous_key) for i in group if i.previous_key}
        existing = await _existing(conn, lookup)
        results: list[Accepted | None] = [None] * len(group)
        fresh: dict[tuple[str, str], int] = {}  # (channel, key) → first index in this group
        rows = []
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
                rows.append(
                    {
                        "channel": item.channel,
                        "idem_key": item.key,
                        "status": item.status,
                        "payload": item.payload,
                        "received_at": item.received_at,
                        "attempts": 0,
                        "next_attempt_at": item.received_at,
                    }
                )
        if rows:
            for row, event_id in zip(rows, await allocate_ids(conn, inbox, len(rows)), strict=True):
                row["id"] = event_id
            stmt = dialect_insert(conn, inbox).on_conflict_do_nothing(
                index_elements=["channel", "idem_key"]
            )
            await conn.execute(stmt, rows)
            # A key another hub process stored a moment earlier keeps that process's row.
            stored = await _existing(conn, set(fresh))
            for row, (key, index) in zip(rows, fresh.items(), strict=True):
                event_id, status, _ = stored[key]
                results[index] = Accepted(event_id, event_id != row["id"], status)
        for index, item in enumerate(group):
            if results[index] is None:  # a repeat of an event earlier in this group
                first = results[fresh[(item.channel, item.key)]]
                assert first is not None
                results[index] = Accepted(first.id, True, first.status)
        return [r for r in results if r is not None]


async def _existing(
    conn: AsyncConnection, keys: set[tuple[str, str]]
) -> dict[tuple[str, str], tuple[int, str, datetime]]:
    if not keys:
        return {}
    channels = sorted({c for c, _ in keys})
    rows = await conn.execute(
        select(inbox.c.id, inbox.c.channel, inbox.c.idem_key, inbox.c.status, inbox.c.received_at)
        .where(inbox.c.channel.in_(channels))
        .where(inbox.c.idem_key.in_(sorted({k for _, k in keys})))
    )
    return {(r.channel, r.idem_key): (r.id, r.status, r.received_at) for r in rows}


# -- the worker ------------------------------------------------------------------------------


@dataclass(slots=True)
class _Claimed:
    id: int
    channel: str
    payload: dict[str, Any]
    attempts: int
    received_at: datetime


class Worker:
    """Claims pending inbox events and runs the lead pipeline over them."""

    def __init__(
        self,
        store: Store,
        settings: IntakeSection,
        pipeline: LeadPipeline,
        parse: Any,
        metrics: Metrics,
        *,
        name: str = "worker-0",
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.pipeline = pipeline
        self.parse = parse  # (channel, payload) -> Lead | None: the hub_parse_lead hook
        self.metrics = metrics
        self.name = name
        self.on_commit = on_commit
        self._stopping = False

    def stop(self) -> None:
        self._stopping = True

    async def run(self, intake: Intake) -> None:
        """Process batches until :meth:`stop`, waiting for the intake between them."""
        poll = self.settings.poll_interval.total_seconds()
        linger = self.settings.batch_linger.total_seconds()
        batch = self.settings.batch_size
        while not self._stopping:
            try:
                done = await self.run_once()
            except Exception:
                log.exception("worker_batch_failed", worker=self.name)
                done = 0
                await asyncio.sleep(poll)
            intake.claimed(done)
            if done < batch and not self._stopping:
                await intake.wait_for_work(batch, linger, poll)

    async def run_once(self) -> int:
        """Claim and process one batch; returns the number of events handled."""
        claimed: list[_Claimed] = []
        try:
            async with self.store.write() as conn:
                claimed = await self._claim(conn, self.settings.batch_size)
                if not claimed:
                    return 0
                await self._process(conn, claimed)
            if self.on_commit is not None:
                self.on_commit()
            return len(claimed)
        except Exception as error:
            if not claimed:
                raise
            # The batch rolled back as a whole: find the culprit by going one by one.
            log.warning("batch_failed_retrying_singly", events=len(claimed), error=repr(error))
            for event in claimed:
                await self._process_single(event.id)
            if self.on_commit is not None:
                self.on_commit()
            return len(claimed)

    async def _process_single(self, event_id: int) -> None:
        try:
            async with self.store.write() as conn:
                claimed = await self._claim(conn, 1, only=event_id)
                if claimed:
                    await self._process(conn, claimed)
        except Exception as error:
            async with self.store.write() as conn:
                claimed = await self._claim(conn, 1, only=event_id)
                if claimed:
                    await self._fail(conn, [(claimed[0], error)])

    async def _claim(
        self, conn: AsyncConnection, limit: int, *, only: int | None = None
    ) -> list[_Claimed]:
        stmt = select(
            inbox.c.id, inbox.c.channel, inbox.c.payload, inbox.c.attempts, inbox.c.received_at
        ).where(inbox.c.status == "pending")
        if only is not None:
            stmt = stmt.where(inbox.c.id == only)
        else:
            stmt = stmt.where(inbox.c.next_attempt_at <= utcnow())
        stmt = stmt.order_by(inbox.c.id).limit(limit)
        if conn.dialect.name == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        rows = await conn.execute(stmt)
        return [_Claimed(r.id, r.channel, r.payload, r.attempts, r.received_at) for r in rows]

    async def _process(self, conn: AsyncConnection, claimed: list[_Claimed]) -> None:
        now = utcnow()
        plans = []
        failures: list[tuple[_Claimed, BaseException]] = []
        for event in claimed:
            try:
                lead = self.parse(channel=event.channel, payload=event.payload)
                if lead is None:
                    raise LeadRejected(f"no enabled plugin parses channel {event.channel!r}")
                if not isinstance(lead, Lead):
                    raise TypeError(f"hub_parse_lead returned {type(lead).__name__}, not Lead")
                plans.append(self.pipeline.plan(event.id, lead, event.received_at))
            except Exception as error:
                failures.append((event, error))
        results = await self.pipeline.run(conn, plans, now) if plans else []
        if results:
            await conn.execute(
                update(inbox)
                .where(inbox.c.id == bindparam("event_id"))
                .values(
                    status="done",
                    processed_at=now,
                    result=bindparam("result"),
                    attempts=inbox.c.attempts + 1,
                    last_error=None,
                ),
                [
                    {"event_id": plan.inbox_id, "result": result}
                    for plan, result in zip(plans, results, strict=True)
                ],
            )
        if failures:
            await self._fail(conn, failures)
        by_id = {event.id: event for event in claimed}
        for plan, result in zip(plans, results, strict=True):
            event = by_id[plan.inbox_id]
            self.metrics.processed.labels(event.channel).inc()
            self.metrics.latency.observe((now - event.received_at).total_seconds())
            log.debug("lead_processed", event_id=event.id, **result)
        if plans:
            log.info(
                "batch_processed",
                worker=self.name,
                events=len(plans),
                failed=len(failures),
                first_event_id=claimed[0].id,
            )

    async def _fail(
        self, conn: AsyncConnection, failures: list[tuple[_Claimed, BaseException]]
    ) -> None:
        now = utcnow()
        rows = []
        for event, error in failures:
            attempts = event.attempts + 1
            dead = attempts >= self.settings.max_attempts
            delay = min(
                self.settings.retry_max.total_seconds(),
                self.settings.retry_base.total_seconds() * 2 ** (attempts - 1),
            ) * random.uniform(0.8, 1.2)
            rows.append(
                {
                    "event_id": event.id,
                    "new_status": "dead" if dead else "pending",
                    "new_attempts": attempts,
                    "error": f"{type(error).__name__}: {error}"[:2000],
                    "retry_at": now + timedelta(seconds=delay),
                }
            )
            (self.metrics.dead if dead else self.metrics.failed).labels(event.channel).inc()
            log.warning(
                "event_dead" if dead else "event_failed",
                event_id=event.id,
                channel=event.channel,
                attempts=attempts,
                error=f"{type(error).__name__}: {error}",
            )
        await conn.execute(
            update(inbox)
            .where(inbox.c.id == bindparam("event_id"))
            .values(
                status=bindparam("new_status"),
                attempts=bindparam("new_attempts"),
                last_error=bindparam("error"),
                next_attempt_at=bindparam("retry_at"),
            ),
            rows,
        )


async def replay(store: Store, event_ids: Sequence[int]) -> list[int]:
    """Put dead (or spam) events back in the queue; returns the ids actually requeued."""
    async with store.write() as conn:
        rows = await conn.execute(
            update(inbox)
            .where(inbox.c.id.in_(list(event_ids)))
            .where(inbox.c.status.in_(["dead", "spam"]))
            .values(status="pending", attempts=0, next_attempt_at=utcnow(), last_error=None)
            .returning(inbox.c.id)
        )
        return sorted(rows.scalars().all())
