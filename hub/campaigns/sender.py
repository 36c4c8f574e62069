"""The loop that sends running campaigns through their gateways, at their pace.

For each running campaign with messages due it claims a batch (a quarter second's
worth at the campaign's rate), hands back those whose recipient is in their quiet
hours (due again when those end, in the recipient's own timezone), books the rest
on the gateway's clock (:func:`hub.campaigns.outbox.book`, shared by every process)
and sends each at its slot, never more than the gateway's ``concurrency`` at once.
Outcomes are recorded in one transaction per batch. A transient failure comes back
after a backoff with jitter, or when the provider said (Retry-After); after
``MAX_ATTEMPTS`` it is failed. Rows cut off by a crash are settled through the
gateway's ``find`` (see :mod:`hub.campaigns.outbox`).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import phonenumbers
import structlog
from phonenumbers import timezone as phone_zones
from sqlalchemy import select

from hub.campaigns import outbox
from hub.campaigns.desk import CampaignDesk
from hub.campaigns.gateway import (
    NOT_THERE,
    Accepted,
    Gateway,
    Outgoing,
    Permanent,
    Transient,
)
from hub.campaigns.render import Letter, sms_length
from hub.campaigns.segments import contacts_t
from hub.campaigns.zones import zone_of_city
from hub.deals import changes as ch
from hub.deals.actors import SYSTEM
from hub.store.models import Campaign, Company
from hub.store.types import utcnow

log = structlog.get_logger("hub.campaigns")

campaigns_t = Campaign.__table__
companies_t = Company.__table__

MAX_ATTEMPTS = 6
FIRST_RETRY = timedelta(seconds=10)
LONGEST_WAIT = timedelta(hours=1)
BATCH_SECONDS = 0.25


def backoff(attempt: int) -> timedelta:
    """The wait after failed attempt ``attempt``: tripling from 10 s, at most 1 h, ±25 %."""
    return min(FIRST_RETRY * 3 ** (attempt - 1), LONGEST_WAIT) * random.uniform(0.75, 1.25)


def quiet_until(local: datetime, hours: str | None) -> datetime | None:
    """When the quiet ``hours`` ("21:00-09:00") covering ``local`` end; None if not quiet."""
    if not hours:
        return None
    start_text, end_text = hours.split("-")
    start = time.fromisoformat(start_text)
    end = time.fromisoformat("23:59:59" if end_text == "24:00" else end_text)
    now = local.time()
    quiet = start <= now < end if start < end else now >= start or now < end
    if not quiet:
        return None
    day: date = local.date()
    if start >= end and now >= start:
        day += timedelta(days=1)
    return datetime.combine(day, end, tzinfo=local.tzinfo)


class RecipientClock:
    """A recipient's timezone: the phone number's, where it has exactly one; else their
    city's (:mod:`hub.campaigns.zones`); else the default. (A Russian mobile number names
    no region of its own.)"""

    def __init__(self, default: ZoneInfo) -> None:
        self.default = default
        self._by_prefix: dict[str, ZoneInfo | None] = {}

    def zone(self, address: str | None, city: str | None = None) -> ZoneInfo:
        return self._phone_zone(address) or zone_of_city(city) or self.default

    def _phone_zone(self, address: str | None) -> ZoneInfo | None:
        if not address or not address.startswith("+"):
            return None
        prefix = address[:7]
        if prefix not in self._by_prefix:
            found = None
            try:
                zones = phone_zones.time_zones_for_number(phonenumbers.parse(address))
            except phonenumbers.NumberParseException:
                zones = ()
            if len(zones) == 1 and zones[0] != "Etc/Unknown":
                found = ZoneInfo(zones[0])
            self._by_prefix[prefix] = found
        return self._by_prefix[prefix]


class CampaignSender:
    def __init__(self, desk: CampaignDesk, gateways: Mapping[str, Gateway]) -> None:
        self.desk = desk
        self.store = desk.store
        self.gateways = dict(gateways)
        self.settings = desk.settings.campaigns
        self.worker = uuid.uuid4().hex
        self.wake = asyncio.Event()
        self.clock = RecipientClock(desk.zone)
        self._slots = {
            name: asyncio.Semaphore(max(1, g.concurrency)) for name, g in gateways.items()
        }
        self._letters: dict[int, tuple[dict[str, Any], Letter]] = {}
        self._stopping = False

    async def run(self) -> None:
        recovered_at: datetime | None = None
        busy = False
        while not self._stopping:
            now = utcnow()
            if recovered_at is None or now - recovered_at >= self.settings.lease / 2:
                await self.recover()
                await self._finish(now)
                recovered_at = now
            if await self.send_due():
                busy = True
                continue
            if busy:  # a campaign may have sent its last message
                await self._finish(now)
                busy = False
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), self.settings.poll_every.total_seconds())

    def stop(self) -> None:
        self._stopping = True
        self.wake.set()

    async def drain(self) -> None:
        """Send everything due now and wait for it (tests, ``hub campaigns send``)."""
        await self.recover()
        while await self.send_due():
            pass
        await self._finish(utcnow())

    async def send_due(self) -> int:
        """One batch of every running campaign with messages due; the number sent."""
        now = utcnow()
        campaigns = await outbox.running(self.store, list(self.gateways), now)
        if not campaigns:
            return 0
        batches = [self._campaign_batch(c, now) for c in campaigns]
        return sum(await asyncio.gather(*batches))

    async def _campaign_batch(self, found: dict[str, Any], now: datetime) -> int:
        gateway = self.gateways[found["gateway"]]
        rate = min(found["rate"], gateway.rate)
        size = max(1, int(rate * BATCH_SECONDS))
        rows = await outbox.claim(
            self.store,
            campaign_id=found["id"],
            worker=self.worker,
            limit=size,
            now=now,
            lease=self.settings.lease,
        )
        if not rows:
            return 0
        campaign, letter = await self._letter(found["id"])
        people = await self._people([r["contact_id"] for r in rows])
        later, ready = [], []
        for row in rows:
            contact = people.get(row["contact_id"])
            zone = self.clock.zone(row["address"], contact["city"] if contact else None)
            until = quiet_until(now.astimezone(zone), campaign["quiet_hours"])
            if until is None:
                ready.append(row)
            else:
                later.append((row["id"], until.astimezone(now.tzinfo)))
        await outbox.release(self.store, later, worker=self.worker)
        if not ready:
            return 0
        start = await outbox.book(self.store, gateway.name, count=len(ready), rate=rate, now=now)
        loop = asyncio.get_running_loop()
        # The booked start on the store's clock, as this loop's monotonic time.
        first = loop.time() + (start - utcnow()).total_seconds()
        sends = [
            self._send(
                gateway, campaign, letter, row, people.get(row["contact_id"]), first + i / rate
            )
            for i, row in enumerate(ready)
        ]
        outcomes = await asyncio.gather(*sends)
        await outbox.record(self.store, outcomes, worker=self.worker, now=utcnow())
        return len(ready)

    async def _send(
        self,
        gateway: Gateway,
        campaign: dict[str, Any],
        letter: Letter,
        row: dict[str, Any],
        contact: dict[str, Any] | None,
        at: float,
    ) -> outbox.Outcome:
        loop = asyncio.get_running_loop()
        wait = at - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        bound = log.bind(campaign_id=campaign["id"], message_id=row["id"], gateway=gateway.name)
        if contact is None:
            return outbox.Outcome(row["id"], "failed", error="контакт удалён")
        message = self.outgoing(campaign, letter, row, contact)
        try:
            async with self._slots[gateway.name]:
                accepted = await gateway.send(message)
        except Transient as error:
            return self._retry(row, error)
        except Permanent as error:
            bound.info("campaign_message_failed", code=error.code, reason=error.reason)
            return outbox.Outcome(row["id"], "failed", error=error.reason)
        except asyncio.CancelledError:
            raise  # shutting down: the lease settles it
        except Exception as error:  # a gateway's bug must not stop the campaign
            bound.exception("gateway_crashed")
            return self._retry(row, Transient(f"{type(error).__name__}: {error}"))
        parts = accepted.parts
        if parts is None and campaign["channel"] == "sms":
            parts = sms_length(message.text).parts
        return outbox.Outcome(
            row["id"], "sent", provider_id=accepted.provider_id, parts=parts, cost=accepted.cost
        )

    def _retry(self, row: dict[str, Any], error: Transient) -> outbox.Outcome:
        if row["attempts"] >= MAX_ATTEMPTS:
            return outbox.Outcome(
                row["id"], "failed", error=f"{row['attempts']} попыток: {error.reason}"
            )
        wait = error.after if error.after is not None else backoff(row["attempts"])
        return outbox.Outcome(row["id"], "queued", error=error.reason, due_at=utcnow() + wait)

    def outgoing(
        self, campaign: dict[str, Any], letter: Letter, row: dict[str, Any], contact: dict[str, Any]
    ) -> Outgoing:
        rendered = letter.render(self.desk.context(contact, campaign))
        headers = {}
        if campaign["channel"] == "email":
            url = self.desk.unsubscribe_url(campaign["id"], contact["id"], "email")
            # RFC 8058: a one-click POST to this address unsubscribes, no login, no page.
            headers = {
                "List-Unsubscribe": f"<{url}>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            }
        return Outgoing(
            id=row["id"],
            key=row["key"],
            campaign_id=campaign["id"],
            contact_id=row["contact_id"],
            channel=campaign["channel"],
            address=row["address"],
            text=rendered.text,
            subject=rendered.subject,
            html=rendered.html,
            headers=headers,
            attempt=row["attempts"],
        )

    async def _letter(self, campaign_id: int) -> tuple[dict[str, Any], Letter]:
        found = self._letters.get(campaign_id)
        if found is None:
            campaign = await self.desk.get(campaign_id)
            letter = Letter(
                text=campaign["text"], subject=campaign["subject"], html=campaign["html"]
            )
            found = self._letters[campaign_id] = (campaign, letter)
        return found

    async def _people(self, ids: list[int]) -> dict[int, dict[str, Any]]:
        async with self.store.read() as conn:
            rows = await conn.execute(
                select(contacts_t, companies_t.c.name.label("company_name"))
                .outerjoin(companies_t, companies_t.c.id == contacts_t.c.company_id)
                .where(contacts_t.c.id.in_(ids))
            )
            return {r.id: r._asdict() for r in rows}

    async def recover(self) -> None:
        """Settle rows a crashed process was sending: ask the gateway what became of each."""
        rows = await outbox.interrupted(self.store, now=utcnow(), gateways=list(self.gateways))
        for row in rows:
            gateway = self.gateways[row["gateway"]]
            campaign, letter = await self._letter(row["campaign_id"])
            people = await self._people([row["contact_id"]])
            try:
                found = (
                    await gateway.find(
                        self.outgoing(campaign, letter, row, people[row["contact_id"]])
                    )
                    if row["contact_id"] in people
                    else None
                )
            except Exception as error:  # the provider is down: ask again next time
                log.warning("campaign_find_failed", message_id=row["id"], error=str(error))
                continue
            if isinstance(found, Accepted):
                values = {
                    "provider_id": found.provider_id,
                    "sent_at": utcnow(),
                    "due_at": utcnow() + outbox.FIRST_ASK,
                }
                state = "sent"
            elif found is NOT_THERE:
                state, values = "queued", {"due_at": utcnow()}
            else:
                state = "review"
                values = {"error": "прервано сбоем: неизвестно, ушло ли сообщение"}
            if await outbox.resolve(
                self.store, row["id"], state=state, lease_until=row["lease_until"], **values
            ):
                log.warning("campaign_message_interrupted", message_id=row["id"], now=state)

    async def _finish(self, now: datetime) -> None:
        for campaign_id in await outbox.finish_done(self.store, now):
            await self.desk.writer.apply(
                [ch.SetCampaignState(campaign_id=campaign_id, state="finished")], SYSTEM
            )
            self._letters.pop(campaign_id, None)
            log.info("campaign_finished", campaign_id=campaign_id)
