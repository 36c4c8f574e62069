"""SIGTERM: stop accepting, finish what was accepted, exit cleanly."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import select

from hub.store import Store
from hub.store.models import Deal, InboxEvent
from tests.e2e.daemon import Daemon, free_port, write_config

pytestmark = pytest.mark.slow


async def test_sigterm_mid_burst_exits_zero_and_keeps_every_accepted_lead_for_the_next_start(
    tmp_path: Path, sqlite_url: str
) -> None:
    port = free_port()
    daemon = Daemon(write_config(tmp_path, sqlite_url, port), port)
    daemon.start()
    await daemon.ready()
    accepted: set[int] = set()

    async def post(session: aiohttp.ClientSession, i: int) -> None:
        data = {"fio": f"Клиент {i}", "tel": f"+7 900 100-{i // 100:02d}-{i % 100:02d}"}
        try:
            async with session.post(f"http://127.0.0.1:{port}/forms/contact", data=data) as r:
                if r.status == 202:
                    accepted.add((await r.json())["lead_id"])
        except aiohttp.ClientError:
            pass

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=50)) as session:
        tasks = [asyncio.create_task(post(session, i)) for i in range(1500)]
        while len(accepted) < 300:
            await asyncio.sleep(0.01)
        exit_code = await asyncio.to_thread(daemon.terminate)
        await asyncio.gather(*tasks)

    assert exit_code == 0, daemon.log()
    store = Store(sqlite_url)

    async def states() -> tuple[dict[int, str], set[int]]:
        async with store.read() as conn:
            status = dict((await conn.execute(select(InboxEvent.id, InboxEvent.status))).all())
            with_deal = set((await conn.execute(select(Deal.inbox_id))).scalars().all())
        return status, with_deal

    try:
        status, with_deal = await states()
        # Claimed batches were finished; the rest waits, durable, as pending.
        assert set(status.values()) <= {"done", "pending"}
        assert {i for i, s in status.items() if s == "done"} == with_deal
        assert accepted <= set(status)

        daemon.start()
        await daemon.ready()
        for _ in range(100):
            status, with_deal = await states()
            if all(s == "done" for s in status.values()):
                break
            await asyncio.sleep(0.1)
        assert accepted <= with_deal
        assert daemon.terminate() == 0
    finally:
        await store.close()
