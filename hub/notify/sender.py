"""The loop that delivers the notification outbox through the notifier plugins.

It claims due rows per notifier (never more than the notifier's ``concurrency``
in flight), renders each, sends it and records the outcome at once, so what was
delivered is known even if the process dies a moment later. Transient failures
come back after a backoff with jitter (5 s, 15 s, 45 s ... at most 2 h apart) or
when the provider said (Telegram's ``retry_after``, Retry-After), until the
notifier's ``retry_for`` has passed since the notification was queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import structlog

from hub.config import NotificationsSection
from hub.metrics import Metrics
from hub.notify import Message, Notifier, RetryLater, Undeliverable, outbox
from hub.notify.outbox import Outcome
from hub.notify.templates import TemplateMissing, Templates
from hub.store import Store
from hub.store.types import utcnow

log = structlog.get_logger("hub.notify")

FIRST_RETRY = timedelta(seconds=5)
LONGEST_WAIT = timedelta(hours=2)
# A retried notification gets at least this many attempts before retry_for gives it up.
MIN_ATTEMPTS = 3


def backoff(attempt: int) -> timedelta:
    """The wait after failed attempt ``attempt`` (1, 2, ...): tripling, capped, ±25 % jitter."""
    base = min(FIRST_RETRY * 3 ** (attempt - 1), LONGEST_WAIT)
    return base * random.uniform(0.75, 1.25)


class Sender:
    def __init__(
        self,
        store: Store,
        notifiers: Mapping[str, Notifier],
        templates: Templates,
        settings: NotificationsSection,
        metrics: Metrics,
    ) -> None:
        self.store = store
        self.notifiers = notifiers
        self.templates = templates
        self.settings = settings
        self.metrics = metrics
        self.worker = uuid.uuid4().hex  # this process, for the claims it holds
        self.wake = asyncio.Event()
        self._in_flight: dict[str, set[asyncio.Task[None]]] = {n: set() for n in notifiers}
        self._stopping = False

    async def run(self) -> None:
        """Deliver until cancelled; a cancelled send's row is resolved by its lease."""
        recovered_at = utcnow() - self.settings.lease
        try:
            while not self._stopping:
                if utcnow() - recovered_at >= self.settings.lease / 2:
                    await self._recover()
                    recovered_at = utcnow()
                claimed = await self.deliver_due()
                if claimed:
                    await asyncio.sleep(0)  # let the sends start before claiming more
                    continue
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self.wake.wait(), self.settings.poll_every.total_seconds()
                    )
        finally:
            tasks = [t for running in self._in_flight.values() for t in running]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def deliver_due(self) -> int:
        """Claim what is due for every notifier with room, and start sending it."""
        claimed = 0
        now = utcnow()
        # A read first: on SQLite a claim takes the store's one write lock, which the lead
        # pipeline needs, so it is taken only when something is due.
        due = await outbox.due_notifiers(self.store, now=now, among=list(self.notifiers))
        for name in due:
            notifier = self.notifiers[name]
            running = self._in_flight[name]
            room = max(1, notifier.concurrency) - len(running)
            rows = await outbox.claim(
                self.store,
                notifier=name,
                worker=self.worker,
                limit=room,
                now=now,
                lease=self.settings.lease,
            )
            for row in rows:
                task = asyncio.create_task(self._send(notifier, row), name=f"notify-{row['id']}")
                running.add(task)
                task.add_done_callback(running.discard)
            claimed += len(rows)
        if claimed == 0 and any(self._in_flight.values()):
            # Everything claimable is in flight: wait for a send to finish, not for the poll.
            await asyncio.wait(
                [t for running in self._in_flight.values() for t in running],
                return_when=asyncio.FIRST_COMPLETED,
            )
            return 1
        return claimed

    async def drain(self) -> None:
        """Send everything due now and wait for it (tests, ``hub notifications send``)."""
        while await self.deliver_due():
            pass
        tasks = [t for running in self._in_flight.values() for t in running]
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _recover(self) -> None:
        found = await outbox.recover(
            self.store,
            now=utcnow(),
            resend={name: n.resend_interrupted for name, n in self.notifiers.items()},
        )
        for state, n in found.items():
            if n:
                log.warning("notifications_interrupted", count=n, now=state)
                self.metrics.notifications.labels("interrupted", state).inc(n)

    async def _send(self, notifier: Notifier, row: dict[str, Any]) -> None:
        bound = log.bind(notification_id=row["id"], notifier=notifier.name, attempt=row["attempts"])
        try:
            message = self.message(row)
            sent = await notifier.send(message)
        except RetryLater as later:
            outcome = self._retry(notifier, row, later)
        except (Undeliverable, TemplateMissing) as error:
            outcome = Outcome(row["id"], "failed", error=str(error))
        except asyncio.CancelledError:
            raise  # shutting down: the lease resolves it
        except Exception as error:  # a notifier's bug must not stop the others
            bound.exception("notifier_crashed")
            outcome = self._retry(notifier, row, RetryLater(f"{type(error).__name__}: {error}"))
        else:
            outcome = Outcome(row["id"], "sent", provider_id=sent.provider_id)
        await outbox.record(self.store, [outcome], worker=self.worker, now=utcnow())
        outcome_name = "retry" if outcome.state == "queued" else outcome.state
        self.metrics.notifications.labels(notifier.name, outcome_name).inc()
        if outcome.state == "sent":
            bound.info("notification_sent", provider_id=outcome.provider_id)
        else:
            bound.warning("notification_not_sent", state=outcome.state, error=outcome.error)

    def _retry(self, notifier: Notifier, row: dict[str, Any], later: RetryLater) -> Outcome:
        now = utcnow()
        wait = later.after if later.after is not None else backoff(row["attempts"])
        gave_up = (
            row["attempts"] >= MIN_ATTEMPTS and now + wait - row["created_at"] > notifier.retry_for
        )
        if gave_up:
            return Outcome(
                row["id"],
                "failed",
                error=f"gave up after {row['attempts']} attempts: {later.reason}",
            )
        return Outcome(row["id"], "queued", error=later.reason, due_at=now + wait)

    def message(self, row: dict[str, Any]) -> Message:
        """The outbox row rendered as the notifier gets it."""
        context = dict(row["context"] or {})
        blocks: dict[str, str] = {}
        if row["template"]:
            blocks = self.templates.render(row["template"], context)
        return Message(
            id=row["id"],
            key=row["key"],
            notifier=row["notifier"],
            address=row["address"],
            subject=blocks.get("subject") or row["event_type"] or row["template"] or "",
            text=blocks.get("text", ""),
            html=blocks.get("html", ""),
            link=context.get("link"),
            event_type=row["event_type"],
            data=context if not row["template"] else {},
            blocks=blocks,
            attempt=row["attempts"],
            created_at=row["created_at"],
        )

    def stop(self) -> None:
        self._stopping = True
        self.wake.set()
