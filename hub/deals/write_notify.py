"""The writer's part for the notification outbox: messages queued with their cause."""

from __future__ import annotations

from hub.deals import changes as ch
from hub.deals.batch import Batch
from hub.store.models import Notification
from hub.store.ops import upsert

notifications_t = Notification.__table__


async def queue_notifications(batch: Batch, run: list[ch.QueueNotification]) -> None:
    rows = []
    seen: set[str] = set()
    for change in run:
        if change.key in seen:
            continue  # the same message twice in one batch is one message
        seen.add(change.key)
        rows.append(
            {
                "key": change.key[:300],
                "notifier": change.notifier,
                "address": change.address[:320],
                "template": change.template,
                "context": change.context,
                "event_type": change.event_type,
                "deal_id": change.deal_id,
                "user_id": change.user_id,
                "queued_by": f"{batch.actor.kind}:{batch.actor.name}"[:100],
                "state": "queued",
                "attempts": 0,
                "due_at": max(change.not_before or batch.now, batch.now),
                "created_at": batch.now,
            }
        )
    # A key already queued (an event handled twice, a retried request) stays as it was.
    await upsert(batch.conn, notifications_t, rows, key=["key"])
