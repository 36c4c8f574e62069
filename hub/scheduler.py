"""Jobs on a schedule (the audits), run by exactly one hub process at a time.

A job's last run is a row in ``hub_state``. When it is due, a process claims it
in one short transaction (the row locked with ``FOR UPDATE`` on PostgreSQL;
SQLite writes one at a time anyway) by moving the last run to now; only the
process that moved it runs the job. A hub that was down for several intervals
finds the job overdue at start-up and runs it once, not once per missed slot.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import select, update

from hub.store import Store
from hub.store.models import HubState
from hub.store.ops import upsert
from hub.store.types import utcnow

log = structlog.get_logger("hub.scheduler")
state_t = HubState.__table__


async def claim(store: Store, name: str, interval: timedelta, now: datetime) -> datetime | None:
    """Take job ``name`` if it is due: returns None if another process ran it within the
    interval, else when it will next be due."""
    key = f"schedule.{name}"
    async with store.write() as conn:
        await upsert(conn, state_t, [{"key": key, "value": {}, "updated_at": now}], key=["key"])
        stmt = select(state_t.c.value).where(state_t.c.key == key)
        if conn.dialect.name == "postgresql":
            stmt = stmt.with_for_update()
        value: dict[str, Any] = (await conn.execute(stmt)).scalar_one() or {}
        last = datetime.fromisoformat(value["last_run"]) if value.get("last_run") else None
        if last is not None and now - last < interval:
            return None
        await conn.execute(
            update(state_t)
            .where(state_t.c.key == key)
            .values(value={"last_run": now.isoformat()}, updated_at=now)
        )
    return now + interval


async def next_due(store: Store, name: str, interval: timedelta) -> datetime:
    async with store.read() as conn:
        value = (
            await conn.execute(select(state_t.c.value).where(state_t.c.key == f"schedule.{name}"))
        ).scalar_one_or_none()
    if not value or not value.get("last_run"):
        return utcnow()
    return datetime.fromisoformat(value["last_run"]) + interval


async def every(
    store: Store, name: str, interval: timedelta, job: Callable[[], Awaitable[Any]]
) -> None:
    """Run ``job`` every ``interval`` until cancelled; a failing job is logged and retried at
    its next slot."""
    while True:
        wait = (await next_due(store, name, interval) - utcnow()).total_seconds()
        if wait > 0:
            await asyncio.sleep(wait)
        if await claim(store, name, interval, utcnow()) is None:
            continue  # another process took this slot
        try:
            result = await job()
            log.info("job_done", job=name, result=str(result)[:300])
        except Exception:
            log.exception("job_failed", job=name)
