"""Delivering domain events to plugins, at least once and in order, after their commit.

Events are rows written in the same transaction as the change they describe.
Each subscribing plugin has its own durable cursor; its delivery loop runs as a
supervised background task, so a handler that raises is retried with backoff
from the event that failed, and the other plugins are not held up.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from hub.plugins import PluginRecord, await_me_maybe
from hub.store.models import DomainEvent, HubState
from hub.store.ops import upsert
from hub.store.types import utcnow

if TYPE_CHECKING:
    from hub.context import Hub

events_t = DomainEvent.__table__
state_t = HubState.__table__
BATCH = 200


def cursor_key(plugin: str) -> str:
    return f"events.cursor.{plugin}"


async def load_cursor(hub: Hub, plugin: str) -> int:
    """The last event id delivered to ``plugin``; a new subscriber starts from now."""
    async with hub.store.read() as conn:
        value = (
            await conn.execute(select(state_t.c.value).where(state_t.c.key == cursor_key(plugin)))
        ).scalar_one_or_none()
        if value is not None:
            return int(value["last_id"])
        latest = (await conn.execute(select(func.max(events_t.c.id)))).scalar_one_or_none()
    await save_cursor(hub, plugin, latest or 0)
    return latest or 0


async def save_cursor(hub: Hub, plugin: str, last_id: int) -> None:
    async with hub.store.write() as conn:
        await upsert(
            conn,
            state_t,
            [{"key": cursor_key(plugin), "value": {"last_id": last_id}, "updated_at": utcnow()}],
            key=["key"],
            update_columns=["value", "updated_at"],
        )


def as_event(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "type": row.type,
        "subject": row.subject,
        "subject_id": row.subject_id,
        "payload": row.payload,
        "occurred_at": row.occurred_at,
    }


async def deliver(hub: Hub, record: PluginRecord) -> None:
    """Feed ``record``'s plugin every new domain event until cancelled."""
    cursor = await load_cursor(hub, record.name)
    poll = hub.settings.intake.poll_interval.total_seconds()
    while True:
        async with hub.store.read() as conn:
            rows = (
                await conn.execute(
                    select(events_t)
                    .where(events_t.c.id > cursor)
                    .order_by(events_t.c.id)
                    .limit(BATCH)
                )
            ).all()
        if not rows:
            hub.events_written.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(hub.events_written.wait(), timeout=poll)
            continue
        delivered = cursor
        try:
            for row in rows:
                await await_me_maybe(
                    hub.plugins.call_one(
                        record, "hub_domain_event", event=as_event(row), hub=hub.view
                    )
                )
                delivered = row.id
        finally:
            if delivered != cursor:
                await save_cursor(hub, record.name, delivered)
                cursor = delivered
