"""Kill the daemon with SIGKILL in the middle of a burst: no accepted lead is lost or doubled."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select

from hub.store import Store
from hub.store.models import ContactPoint, Deal, InboxEvent
from tests.e2e.daemon import Daemon, free_port, write_config

pytestmark = pytest.mark.slow

LEADS = 3000
KILL_AFTER = 1000  # 2xx answers seen before the SIGKILL
CONCURRENCY = 100


def body(i: int) -> dict[str, str]:
    return {
        "fio": f"Клиент {i}",
        "tel": f"+7 912 {i // 10000:03d}-{i // 100 % 100:02d}-{i % 100:02d}",
        "comment": f"заявка {i}",
    }


def e164(i: int) -> str:
    return f"+7912{i // 10000:03d}{i // 100 % 100:02d}{i % 100:02d}"


async def burst(port: int, daemon: Daemon) -> dict[int, int]:
    """Post LEADS leads concurrently; SIGKILL the daemon after KILL_AFTER answers.

    Returns lead index → lead_id for every 2xx answer.
    """
    accepted: dict[int, int] = {}
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(LEADS):
        queue.put_nowait(i)
    killed = asyncio.Event()

    async def client(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            i = queue.get_nowait()
            try:
                async with session.post(
                    f"http://127.0.0.1:{port}/forms/contact", data=body(i)
                ) as response:
                    if 200 <= response.status < 300:
                        accepted[i] = (await response.json())["lead_id"]
                    else:
                        assert response.status >= 500, await response.text()
            except (TimeoutError, aiohttp.ClientError, ConnectionError):
                pass
            if len(accepted) >= KILL_AFTER and not killed.is_set():
                killed.set()
                daemon.kill()

    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(client(session) for _ in range(CONCURRENCY)))
    assert killed.is_set(), "the burst ended before the kill"
    return accepted


async def settle(store: Store, timeout: float = 120) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        async with store.read() as conn:
            pending = (
                await conn.execute(
                    select(func.count())
                    .select_from(InboxEvent)
                    .where(InboxEvent.status == "pending")
                )
            ).scalar()
        if pending == 0:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{pending} events still pending")


async def check_store(store: Store, accepted: dict[int, int]) -> dict[str, Any]:
    async with store.read() as conn:
        deals = (
            await conn.execute(select(Deal.inbox_id, func.count()).group_by(Deal.inbox_id))
        ).all()
        phones = dict(
            (
                await conn.execute(
                    select(Deal.inbox_id, ContactPoint.normalized)
                    .join(ContactPoint, ContactPoint.contact_id == Deal.contact_id)
                    .where(ContactPoint.kind == "phone")
                )
            ).all()
        )
        statuses = dict((await conn.execute(select(InboxEvent.id, InboxEvent.status))).all())
    per_lead = dict(deals)
    doubled = {lead: n for lead, n in per_lead.items() if n != 1}
    assert not doubled, f"leads with more than one deal: {doubled}"
    missing = [i for i, lead_id in accepted.items() if per_lead.get(lead_id) != 1]
    assert not missing, f"{len(missing)} leads answered 2xx have no deal, e.g. {missing[:5]}"
    wrong = [i for i, lead_id in accepted.items() if phones.get(lead_id) != e164(i)]
    assert not wrong, f"lead ids point at other leads' data: {wrong[:5]}"
    assert all(status == "done" for status in statuses.values())
    return {"accepted": len(accepted), "stored": len(statuses), "deals": len(per_lead)}


async def test_sigkill_mid_burst_loses_and_doubles_no_accepted_lead(
    store_url: str, tmp_path: Path
) -> None:
    url = store_url
    port = free_port()
    daemon = Daemon(write_config(tmp_path, url, port), port)
    daemon.start()
    await daemon.ready()

    accepted = await burst(port, daemon)
    assert len(accepted) >= KILL_AFTER

    daemon.start()  # the restart finishes what was accepted
    await daemon.ready()
    store = Store(url)
    try:
        await settle(store)
        figures = await check_store(store, accepted)
    finally:
        await store.close()
    assert daemon.terminate() == 0, daemon.log()
    # Leads stored but whose answer the kill cut off are kept too: more stored than answered.
    assert figures["stored"] >= figures["accepted"]
    assert figures["deals"] == figures["stored"]
    assert figures["stored"] < LEADS, "the kill came after the burst, not in it"
    log = (tmp_path / "hub.log").read_text()
    assert "change-me-" not in log, "a token or secret from the config reached the log"
    assert "Клиент 1" not in log, "a submission's content reached the log at info level"
    events = [json.loads(line) for line in log.splitlines() if line.strip()]  # one JSON a line
    assert any(e["event"] == "hub_listening" for e in events)
    print(f"\n{figures}")
