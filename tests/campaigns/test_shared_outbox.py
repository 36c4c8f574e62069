"""Several hub processes on one PostgreSQL store share a campaign's outbox and its
gateway's rate: each recipient gets the message once, both processes send, and together
they keep to the rate instead of each sending at it."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

from hub.campaigns.gateway import Accepted, Outgoing
from hub.deals import SYSTEM
from tests.campaigns.conftest import GatewayPlugin, RecordingGateway, contact, started_hub

PEOPLE = 200
RATE = 100.0


class SeenFrom:
    """The shared gateway as one process's sender sees it: notes who sent when."""

    def __init__(self, gateway: RecordingGateway, process: str, log: list[tuple[str, float]]):
        self.gateway, self.process, self.log = gateway, process, log
        self.name, self.channel = gateway.name, gateway.channel
        self.rate, self.concurrency = gateway.rate, gateway.concurrency

    async def send(self, message: Outgoing) -> Accepted:
        self.log.append((self.process, time.monotonic()))
        return await self.gateway.send(message)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.gateway, name)


async def test_two_processes_send_a_campaign_once_to_each_recipient_at_one_shared_rate(pg_url):
    gateway = GatewayPlugin.gateway = RecordingGateway(rate=RATE)
    sends: list[tuple[str, float]] = []
    hubs = [await started_hub(pg_url), await started_hub(pg_url)]
    try:
        for process, hub in zip(("first", "second"), hubs, strict=True):
            hub.campaign_sender.gateways[gateway.name] = SeenFrom(gateway, process, sends)
        for i in range(PEOPLE):
            await contact(hubs[0], f"Клиент {i}", phone=f"+7916123{i:04d}", segment="Опт")
        campaign = await hubs[0].campaigns.create(
            name="Цены", segment="wholesale", channel="sms", text="Цены", actor=SYSTEM
        )
        await hubs[0].campaigns.start(campaign, SYSTEM)
        for hub in hubs:
            hub.campaign_sender.wake.set()
        deadline = time.monotonic() + 30
        while len(gateway.sent) < PEOPLE:
            assert time.monotonic() < deadline, len(gateway.sent)
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # nothing more comes
    finally:
        for hub in hubs:
            await hub.stop()

    assert len(gateway.sent) == PEOPLE
    assert max(Counter(m.address for m in gateway.sent).values()) == 1
    shares = Counter(process for process, _ in sends)
    assert shares["first"] > 0 and shares["second"] > 0, shares
    times = [at for _, at in sends]
    # One shared clock: 200 sends at 100/s take about 2 s; two clocks of their own, 1 s.
    span = max(times) - min(times)
    assert span >= 0.9 * (PEOPLE - 1) / RATE, (span, shares)
