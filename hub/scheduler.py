"""Jobs on a schedule (the audits, digests, escalations), run by exactly one hub process at a
time.

A job's last run is a row in ``hub_state``. When it is due, a process claims it
in one short transaction (the row locked with ``FOR UPDATE`` on PostgreSQL;
SQLite writes one at a time anyway) by moving the last run to now; only the
process that moved it runs the job. A hub that was down for several intervals
finds the job overdue at start-up and runs it once, not once per missed slot.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

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


@dataclass(frozen=True, slots=True)
class Job:
    """A job a plugin runs on a schedule (``hub_jobs``): every ``every``, or once a day at
    ``daily_at`` local time in ``timezone`` (default: the hub's). ``run`` gets the time of
    the slot it runs for (a daily job started late still knows which day it is for)."""

    name: str
    run: Callable[[datetime], Awaitable[Any]]
    every: timedelta | None = None
    daily_at: time | None = None
    timezone: str | None = None

    def __post_init__(self) -> None:
        if (self.every is None) == (self.daily_at is None):
            raise ValueError(f"job {self.name}: give exactly one of every= and daily_at=")


def last_slot(now: datetime, at: time, zone: ZoneInfo) -> datetime:
    """The latest ``at`` (local time in ``zone``) not after ``now``."""
    local = now.astimezone(zone)
    slot = datetime.combine(local.date(), at, tzinfo=zone)
    if slot > local:
        slot = datetime.combine(local.date() - timedelta(days=1), at, tzinfo=zone)
    return slot.astimezone(now.tzinfo)


async def claim_slot(store: Store, name: str, slot: datetime, now: datetime) -> bool:
    """Take the run of job ``name`` for ``slot`` unless a process already ran it since."""
    key = f"schedule.{name}"
    async with store.write() as conn:
        await upsert(conn, state_t, [{"key": key, "value": {}, "updated_at": now}], key=["key"])
        stmt = select(state_t.c.value).where(state_t.c.key == key)
        if conn.dialect.name == "postgresql":
            stmt = stmt.with_for_update()
        value: dict[str, Any] = (await conn.execute(stmt)).scalar_one() or {}
        last = datetime.fromisoformat(value["last_run"]) if value.get("last_run") else None
        if last is not None and last >= slot:
            return False
        await conn.execute(
            update(state_t)
            .where(state_t.c.key == key)
            .values(value={"last_run": now.isoformat(), "slot": slot.isoformat()}, updated_at=now)
        )
    return True


async def daily(
    store: Store, name: str, at: time, zone: ZoneInfo, job: Callable[[datetime], Awaitable[Any]]
) -> None:
    """Run ``job`` once a day at ``at`` in ``zone``; a day missed while the hub was down runs
    once at start-up (only the latest missed day, not one run per day missed)."""
    while True:
        now = utcnow()
        slot = last_slot(now, at, zone)
        if await claim_slot(store, name, slot, now):
            try:
                result = await job(slot)
                log.info("job_done", job=name, slot=slot.isoformat(), result=str(result)[:300])
            except Exception:
                log.exception("job_failed", job=name)
        following = last_slot(slot + timedelta(days=1, hours=2), at, zone)  # DST-proof
        await asyncio.sleep(max(1.0, (following - utcnow()).total_seconds()))


async def run_job(store: Store, job: Job, default_zone: str) -> None:
    if job.every is not None:
        await every(store, job.name, job.every, lambda: job.run(utcnow()))
    else:
        assert job.daily_at is not None
        await daily(store, job.name, job.daily_at, ZoneInfo(job.timezone or default_zone), job.run)
