"""The intake worker: claims stored events in batches and runs the lead pipeline over them.

A batch is claimed with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so several hub
processes share the work; it runs in one transaction and its events are marked
done; an event that fails is retried with backoff and, after
``intake.max_attempts``, kept as dead for ``hub inbox replay``.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.config import IntakeSection
from hub.domain.lead import Lead
from hub.intake.accept import Intake
from hub.intake.handlers import AsLead, Handler, Stored
from hub.leads import LeadPipeline, LeadRejected
from hub.logging import debug_enabled
from hub.store import Store
from hub.store.models import InboxEvent
from hub.store.types import utcnow

if TYPE_CHECKING:
    from hub.metrics import Metrics

log = structlog.get_logger("hub.intake")
inbox = InboxEvent.__table__


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
        handler: Callable[[str], Handler | None] | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.pipeline = pipeline
        self.parse = parse  # (channel, payload) -> Lead | None: the hub_parse_lead hook
        self.metrics = metrics
        self.name = name
        self.on_commit = on_commit
        self.handler = handler  # channel -> its Handler or None: the hub_intake_handler hook
        self._stopping = False

    def stop(self) -> None:
        self._stopping = True

    async def run(self, intake: Intake) -> None:
        """Process batches until :meth:`stop`, waiting for the intake between them."""
        poll = self.settings.poll_interval.total_seconds()
        linger = self.settings.batch_linger.total_seconds()
        defer = self.settings.burst_defer.total_seconds()
        batch = self.settings.batch_size
        while not self._stopping:
            before = intake.load_mark()
            intake.batch_started()
            try:
                done = await self.run_once()
            except Exception:
                log.exception("worker_batch_failed", worker=self.name)
                done = -1
            finally:
                intake.batch_ended()
            if done < 0:
                await asyncio.sleep(poll)
                done = 0
            intake.claimed(done)
            after = intake.load_mark()
            if done < batch and not self._stopping:
                await intake.wait_for_work(batch, linger, poll)
            if not self._stopping:
                await intake.yield_to_burst(defer, after, arrivals_since=before)

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
        # Due first, in the index's order: ordering by id alone sorted every pending event
        # for each claim, which a backlog of thousands made the slowest part of a batch.
        stmt = stmt.order_by(inbox.c.next_attempt_at, inbox.c.id).limit(limit)
        if conn.dialect.name == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        rows = await conn.execute(stmt)
        return [_Claimed(r.id, r.channel, r.payload, r.attempts, r.received_at) for r in rows]

    async def _process(self, conn: AsyncConnection, claimed: list[_Claimed]) -> None:
        now = utcnow()
        plans = []
        failures: list[tuple[_Claimed, BaseException]] = []
        handled: list[tuple[_Claimed, Handler]] = []
        for event in claimed:
            handler = self.handler(event.channel) if self.handler is not None else None
            if handler is not None:
                handled.append((event, handler))
                continue
            try:
                lead = self.parse(channel=event.channel, payload=event.payload)
                if lead is None:
                    raise LeadRejected(f"no enabled plugin parses channel {event.channel!r}")
                if not isinstance(lead, Lead):
                    raise TypeError(f"hub_parse_lead returned {type(lead).__name__}, not Lead")
                plans.append(self.pipeline.plan(event.id, lead, event.received_at))
            except Exception as error:
                failures.append((event, error))
        done: list[dict[str, Any]] = []
        extra: dict[int, dict[str, Any]] = {}  # what a handler adds to its lead's decision
        outcomes = await self._handle_batches(conn, handled, now)
        for event, handler in handled:
            try:
                if event.id in outcomes:
                    outcome = outcomes[event.id]
                    if isinstance(outcome, BaseException):
                        raise outcome
                else:
                    async with conn.begin_nested():
                        outcome = await handler.handle(self._stored(conn, event, now))
                if isinstance(outcome, AsLead):
                    plans.append(self.pipeline.plan(event.id, outcome.lead, event.received_at))
                    extra[event.id] = outcome.result
                    continue
                done.append({"event_id": event.id, "result": outcome})
                self.metrics.processed.labels(event.channel).inc()
            except Exception as error:
                failures.append((event, error))
        results = await self.pipeline.run(conn, plans, now) if plans else []
        done += [
            {"event_id": plan.inbox_id, "result": {**extra.get(plan.inbox_id, {}), **result}}
            for plan, result in zip(plans, results, strict=True)
        ]
        if done:
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
                done,
            )
        if failures:
            await self._fail(conn, failures)
        by_id = {event.id: event for event in claimed}
        debug = debug_enabled("hub.intake")
        for plan, result in zip(plans, results, strict=True):
            event = by_id[plan.inbox_id]
            self.metrics.processed.labels(event.channel).inc()
            self.metrics.latency.observe((now - event.received_at).total_seconds())
            if debug:
                log.debug("lead_processed", event_id=event.id, **result)
        if plans or handled:
            log.info(
                "batch_processed",
                worker=self.name,
                events=len(plans) + len(handled),
                failed=len(failures),
                first_event_id=claimed[0].id,
            )

    async def _handle_batches(
        self, conn: AsyncConnection, handled: list[tuple[_Claimed, Handler]], now: datetime
    ) -> dict[int, Any]:
        """Outcomes, by event id, from the handlers that file a batch's events together
        (``handle_batch``, one savepoint for all). One whose call raises has its events
        handled one by one after all, each in its own savepoint."""
        groups: dict[int, tuple[Any, list[_Claimed]]] = {}
        for event, handler in handled:
            if getattr(handler, "handle_batch", None) is not None:
                groups.setdefault(id(handler), (handler, []))[1].append(event)
        outcomes: dict[int, Any] = {}
        for handler, events in groups.values():
            if len(events) < 2:
                continue
            try:
                async with conn.begin_nested():
                    found = await handler.handle_batch([self._stored(conn, e, now) for e in events])
                    batch = dict(zip((e.id for e in events), found, strict=True))
                outcomes.update(batch)
            except Exception as error:
                log.warning(
                    "handler_batch_failed_one_by_one", events=len(events), error=repr(error)
                )
        return outcomes

    def _stored(self, conn: AsyncConnection, event: _Claimed, now: datetime) -> Stored:
        async def run_lead(inbox_id: int, lead: Lead, received_at: datetime) -> dict[str, Any]:
            plan = self.pipeline.plan(inbox_id, lead, received_at)
            return (await self.pipeline.run(conn, [plan], now))[0]

        return Stored(
            id=event.id,
            channel=event.channel,
            payload=event.payload,
            received_at=event.received_at,
            now=now,
            conn=conn,
            run_lead=run_lead,
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
