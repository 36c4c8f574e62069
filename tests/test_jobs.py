"""Plugins' scheduled jobs: one run per slot however many hubs share the store, and a slot
missed while the hub was down run once when it comes back."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hub.hookspecs import hookimpl
from hub.scheduler import Job, claim_slot, last_slot
from tests.conftest import make_hub, make_settings, wait_for

RUNS: list[datetime] = []


class MorningReport:
    def __init__(self, config: Any, hub: Any) -> None:
        pass

    @hookimpl
    def hub_jobs(self) -> list[Job]:
        return [Job("morning_report", self.run, daily_at=time(9, 0), timezone="Europe/Moscow")]

    async def run(self, slot: datetime) -> None:
        RUNS.append(slot)


async def test_hook_hub_jobs_runs_a_missed_daily_slot_once_across_two_hubs(store_url):
    RUNS.clear()
    settings = make_settings(store_url, plugins={"report": {}}, rules={"audit_every": "0s"})
    first = make_hub(settings, extra={"report": MorningReport})
    second = make_hub(settings, extra={"report": MorningReport})
    await first.start()
    await second.start()
    try:
        await wait_for(lambda: asyncio.sleep(0.2, RUNS))
        await asyncio.sleep(0.5)  # the second hub had its chance to run it too
        expected = last_slot(datetime.now(UTC), time(9, 0), ZoneInfo("Europe/Moscow"))
        assert [expected] == RUNS
        assert expected.astimezone(ZoneInfo("Europe/Moscow")).time() == time(9, 0)
    finally:
        await first.stop()
        await second.stop()
    restarted = make_hub(settings, extra={"report": MorningReport})
    await restarted.start()
    try:
        await asyncio.sleep(0.5)
        assert len(RUNS) == 1  # the same day's slot is not run again after a restart
    finally:
        await restarted.stop()


async def test_a_hub_down_for_three_days_runs_only_the_latest_slot(store_url):
    settings = make_settings(store_url)
    hub = make_hub(settings, start_workers=False)
    await hub.start()
    try:
        zone = ZoneInfo("Europe/Moscow")
        monday = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)  # 09:00 in Moscow
        assert await claim_slot(hub.store, "digest", monday, monday)
        thursday = monday + timedelta(days=3, hours=5)
        slots = [last_slot(thursday - timedelta(days=d), time(9), zone) for d in (2, 1, 0)]
        # The hub comes back on Thursday: the missed Tuesday and Wednesday are not replayed.
        assert await claim_slot(hub.store, "digest", slots[-1], thursday)
        assert not await claim_slot(hub.store, "digest", slots[0], thursday)
        assert not await claim_slot(hub.store, "digest", slots[-1], thursday)
    finally:
        await hub.stop()
