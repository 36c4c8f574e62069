"""Delivery reports asked for: where a provider's callback is not set up (or lost one),
the hub asks each gateway's status query about its sent messages.

Every ``ask_reports_every`` each gateway is asked about the sent messages whose ask is
due, oldest first, a batch at a time until none is due; a message is asked about again
``ask_reports_every`` later until a report settles it or ``ask_reports_for`` has passed
since it was sent. Taking a batch moves its next ask on in the same statement, so two
hub processes do not ask about the same messages.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from datetime import datetime

import structlog

from hub.campaigns import outbox
from hub.campaigns.desk import CampaignDesk
from hub.campaigns.gateway import Gateway
from hub.store.types import utcnow

log = structlog.get_logger("hub.campaigns")

BATCH = 200  # provider ids in one round of a gateway's status query


class DeliveryReports:
    def __init__(self, desk: CampaignDesk, gateways: Mapping[str, Gateway]) -> None:
        self.desk = desk
        self.gateways = dict(gateways)
        self.settings = desk.settings.campaigns
        self._stop = asyncio.Event()

    async def run(self) -> None:
        every = self.settings.ask_reports_every.total_seconds()
        while not self._stop.is_set():
            try:
                await self.ask()
            except Exception:  # the store is busy or down: the next round asks again
                log.exception("delivery_reports_failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), every)

    def stop(self) -> None:
        self._stop.set()

    async def ask(self, now: datetime | None = None) -> int:
        """One round over every gateway; returns how many messages a report settled."""
        now = now or utcnow()
        settled = 0
        for name, gateway in self.gateways.items():
            settled += await self._ask_gateway(name, gateway, now)
        return settled

    async def _ask_gateway(self, name: str, gateway: Gateway, now: datetime) -> int:
        settled = asked = 0
        while True:
            ids = await outbox.to_ask(
                self.desk.store,
                name,
                now=now,
                since=now - self.settings.ask_reports_for,
                again=self.settings.ask_reports_every,
                limit=BATCH,
            )
            if not ids:
                break
            asked += len(ids)
            try:
                reports = await gateway.status(ids)
            except Exception as error:  # the provider is down: these are asked again later
                log.warning("delivery_reports_unanswered", gateway=name, error=str(error))
                break
            settled += await self.desk.delivered(name, reports)
        if asked:
            log.info("delivery_reports_asked", gateway=name, asked=asked, settled=settled)
        return settled
