"""Campaigns as people use them: create, preview (a dry run), start, pause, resume, status,
report; consent withdrawn by an unsubscribe link, a STOP reply or a bounce.

The CLI, the API and the gateway plugins (``hub.campaigns``) all come here; every change
goes to the store through the writer (:class:`hub.deals.DealWriter`), so the campaign's
events and the consent history hold on every path.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from hub.campaigns import outbox
from hub.campaigns.audience import Audience
from hub.campaigns.gateway import Channel, DeliveryReport, Gateway
from hub.campaigns.render import Letter, TemplateInvalid, check, person, sms_length
from hub.campaigns.report import figures
from hub.campaigns.segments import (
    UnknownInSegment,
    agreed,
    contact_ids,
    contacts_t,
    points_t,
    withdrew,
)
from hub.config import Settings, check_hours
from hub.deals import changes as ch
from hub.deals.actors import Actor
from hub.deals.writer import DealWriter
from hub.store import Store
from hub.store.models import Campaign, CampaignMessage, Company, HubState
from hub.store.ops import Catalog, upsert
from hub.store.types import utcnow

campaigns_t = Campaign.__table__
messages_t = CampaignMessage.__table__
companies_t = Company.__table__
state_t = HubState.__table__

UNSUBSCRIBE_KEY = "campaigns.unsubscribe_key"


class CampaignError(ValueError):
    """What a person asked cannot be done; the message says why, in Russian."""


@dataclass(slots=True)
class DryRun:
    """What a start would do, sending nothing."""

    campaign: dict[str, Any]
    segment_size: int
    would_send: int
    skipped: dict[str, int]
    samples: list[dict[str, Any]] = field(default_factory=list)
    sms_parts: dict[int, int] = field(default_factory=dict)  # parts -> messages
    encodings: dict[str, int] = field(default_factory=dict)


class CampaignDesk:
    def __init__(
        self,
        store: Store,
        writer: DealWriter,
        settings: Settings,
        gateways: Callable[[], Mapping[str, Gateway]],
        catalog: Callable[[], Catalog | None],
    ) -> None:
        self.store = store
        self.writer = writer
        self.settings = settings
        self._gateways = gateways
        self._catalog = catalog
        self._key: bytes | None = None

    @property
    def catalog(self) -> Catalog:
        found = self._catalog()
        if found is None:
            raise RuntimeError("campaigns are used before the hub loaded its catalog")
        return found

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.settings.campaigns.timezone or self.settings.hub.timezone)

    # -- segments ------------------------------------------------------------------------

    def audience(self, segment: str) -> Audience:
        found = self.settings.segments.get(segment)
        if found is None:
            known = ", ".join(sorted(self.settings.segments)) or "нет ни одного"
            raise CampaignError(f"нет сегмента «{segment}» (есть: {known})")
        return found

    def recipients(self, audience: Audience) -> Any:
        try:
            return contact_ids(audience, self.catalog, zone=self.zone)
        except UnknownInSegment as error:
            raise CampaignError(str(error)) from None

    async def preview(self, audience: Audience, *, sample: int = 10) -> dict[str, Any]:
        """How many contacts the segment has, and a few of them."""
        ids = self.recipients(audience)
        async with self.store.read() as conn:
            total = (
                await conn.execute(select(func.count()).select_from(ids.subquery()))
            ).scalar_one()
            rows = await conn.execute(
                select(contacts_t.c.id, contacts_t.c.name, contacts_t.c.city, contacts_t.c.segment)
                .where(contacts_t.c.id.in_(ids))
                .order_by(contacts_t.c.id)
                .limit(sample)
            )
            people = [r._asdict() for r in rows]
            by_consent = {}
            for channel in ("sms", "email"):
                counted = await conn.execute(
                    select(func.count()).where(contacts_t.c.id.in_(ids), agreed(channel))
                )
                by_consent[channel] = counted.scalar_one()
        return {
            "filters": audience.filters(),
            "count": total,
            "with_consent": by_consent,
            "sample": people,
        }

    # -- campaigns -----------------------------------------------------------------------

    async def create(
        self,
        *,
        name: str,
        segment: str,
        channel: Channel,
        text: str,
        actor: Actor,
        subject: str | None = None,
        html: str | None = None,
        gateway: str | None = None,
        service: bool = False,
        rate: float | None = None,
        quiet_hours: str | None = None,
        start_at: datetime | None = None,
    ) -> int:
        audience = self.audience(segment)
        self.recipients(audience)  # names a pipeline, stage or user the hub lacks: say so now
        chosen = self.gateway_for(channel, gateway)
        if channel == "email" and not subject:
            raise CampaignError("у письма нужна тема (--subject)")
        for what, source in (("text", text), ("subject", subject), ("html", html)):
            if source:
                try:
                    check(source, what)
                except TemplateInvalid as error:
                    raise CampaignError(str(error)) from None
        if quiet_hours:
            try:
                check_hours(quiet_hours, "quiet_hours")
            except ValueError as error:
                raise CampaignError(str(error)) from None
        if rate is not None and rate <= 0:
            raise CampaignError("скорость отправки должна быть больше нуля")
        change = ch.CreateCampaign(
            name=name,
            channel=channel,
            gateway=chosen.name,
            segment=segment,
            audience=audience.filters(),
            text=text,
            subject=subject,
            html=html,
            service=service,
            rate=min(rate or chosen.rate, chosen.rate),
            quiet_hours=quiet_hours
            if quiet_hours is not None
            else self.settings.campaigns.quiet_hours,
            start_at=start_at,
        )
        await self.writer.apply([change], actor)
        assert change.id is not None
        return change.id

    def gateway_for(self, channel: str, name: str | None) -> Gateway:
        gateways = self._gateways()
        if name is not None:
            found = gateways.get(name)
            if found is None or found.channel != channel:
                raise CampaignError(f"нет шлюза «{name}» для канала {channel}")
            return found
        usable = [g for g in gateways.values() if g.channel == channel]
        if not usable:
            raise CampaignError(
                f"нет шлюза для канала {channel}: включите плагин отправки в конфигурации"
            )
        return usable[0]

    async def get(self, ref: int | str) -> dict[str, Any]:
        query = select(campaigns_t).where(
            campaigns_t.c.id == ref if isinstance(ref, int) else campaigns_t.c.name == ref
        )
        async with self.store.read() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            raise CampaignError(f"нет кампании «{ref}»")
        return row._asdict()

    async def list(self) -> list[dict[str, Any]]:
        async with self.store.read() as conn:
            rows = await conn.execute(select(campaigns_t).order_by(campaigns_t.c.id))
            return [r._asdict() for r in rows]

    async def start(self, ref: int | str, actor: Actor) -> dict[str, Any]:
        campaign = await self.get(ref)
        self.gateway_for(campaign["channel"], campaign["gateway"])
        audience = Audience.model_validate(campaign["audience"])
        change = ch.StartCampaign(campaign_id=campaign["id"], recipients=self.recipients(audience))
        await self.writer.apply([change], actor)
        return {"queued": change.queued, "skipped": dict(change.skipped)}

    async def set_state(self, ref: int | str, state: str, actor: Actor) -> None:
        campaign = await self.get(ref)
        await self.writer.apply(
            [ch.SetCampaignState(campaign_id=campaign["id"], state=state)], actor
        )

    async def dry_run(self, ref: int | str, *, sample: int = 5) -> DryRun:
        """Render every message the campaign would send now and count who would be skipped
        and why; nothing is written."""
        campaign = await self.get(ref)
        audience = Audience.model_validate(campaign["audience"])
        ids = self.recipients(audience)
        channel = campaign["channel"]
        kind = "phone" if channel == "sms" else "email"
        letter = Letter(text=campaign["text"], subject=campaign["subject"], html=campaign["html"])
        address = (
            select(points_t.c.normalized)
            .where(points_t.c.contact_id == contacts_t.c.id, points_t.c.kind == kind)
            .order_by(points_t.c.id)
            .limit(1)
            .scalar_subquery()
        )
        query = (
            select(
                contacts_t,
                address.label("address"),
                withdrew(channel).label("opted_out"),
                agreed(channel).label("agreed"),
                companies_t.c.name.label("company_name"),
            )
            .outerjoin(companies_t, companies_t.c.id == contacts_t.c.company_id)
            .where(contacts_t.c.id.in_(ids))
            .order_by(contacts_t.c.id)
        )
        result = DryRun(campaign=campaign, segment_size=0, would_send=0, skipped={})
        skipped: Counter[str] = Counter()
        parts: Counter[int] = Counter()
        encodings: Counter[str] = Counter()
        seen: set[str] = set()
        async with self.store.read() as conn:
            rows = await conn.stream(query.execution_options(yield_per=2000))
            async for row in rows:
                result.segment_size += 1
                values = row._asdict()
                reason = self._skip_reason(campaign, values, seen)
                if reason is not None:
                    skipped[reason] += 1
                    continue
                seen.add(values["address"])
                result.would_send += 1
                rendered = letter.render(self.context(values, campaign))
                if channel == "sms":
                    length = sms_length(rendered.text)
                    parts[length.parts] += 1
                    encodings[length.encoding] += 1
                if len(result.samples) < sample:
                    result.samples.append(
                        {
                            "contact_id": values["id"],
                            "address": values["address"],
                            "subject": rendered.subject,
                            "text": rendered.text,
                        }
                    )
        result.skipped = dict(skipped)
        result.sms_parts = dict(sorted(parts.items()))
        result.encodings = dict(encodings)
        return result

    @staticmethod
    def _skip_reason(campaign: dict[str, Any], row: dict[str, Any], seen: set[str]) -> str | None:
        # The same checks, in the same order, as the outbox's INSERT ... SELECT.
        if row["opted_out"]:
            return "opted_out"
        if not campaign["service"] and not row["agreed"]:
            return "no_consent"
        if row["address"] is None:
            return "no_address"
        if campaign["channel"] == "email" and row["address"] in (row["custom"] or {}).get(
            "bouncing_emails", []
        ):
            return "bouncing"
        if row["address"] in seen:
            return "same_address"
        return None

    def context(self, contact: Mapping[str, Any], campaign: Mapping[str, Any]) -> dict[str, Any]:
        """What the campaign's template sees about ``contact``."""
        owner = None
        if contact.get("owner_id") is not None:
            email = self.catalog.user_emails.get(contact["owner_id"])
            user = next((u for u in self.settings.users if u.email == email), None)
            if user is not None:
                owner = {"name": user.name, "email": user.email, "phone": user.phone}
        url = None
        if campaign["channel"] == "email":
            url = self.unsubscribe_url(campaign["id"], contact["id"], campaign["channel"])
        return person(contact, owner, contact.get("company_name"), url)

    async def status(self, ref: int | str) -> dict[str, Any]:
        campaign = await self.get(ref)
        states: Counter[str] = Counter()
        skipped: Counter[str] = Counter()
        async with self.store.read() as conn:
            for state, reason, count in (
                await conn.execute(outbox.counts_query(campaign["id"]))
            ).all():
                states[state] += count
                if reason:
                    skipped[reason] += count
        return {"campaign": campaign, "states": dict(states), "skipped": dict(skipped)}

    async def report(self, ref: int | str) -> dict[str, Any]:
        """Status, delivery, cost, opt-outs, and the deals that came of it
        (:mod:`hub.campaigns.report`)."""
        status = await self.status(ref)
        states = status["states"]
        async with self.store.read() as conn:
            found = await figures(
                conn, status["campaign"], self.settings.campaigns.attribution_days
            )
        return {
            **status,
            "recipients": sum(n for state, n in states.items() if state != "skipped"),
            "delivered": states.get("delivered", 0),
            "failed": states.get("failed", 0),
            "review": states.get("review", 0),
            "waiting": states.get("queued", 0) + states.get("sending", 0),
            **found,
        }

    async def held(self, ref: int | str) -> list[dict[str, Any]]:
        """Messages a crash left unknown (the gateway could not tell whether they went)."""
        campaign = await self.get(ref)
        m = messages_t.c
        async with self.store.read() as conn:
            rows = await conn.execute(
                select(m.id, m.contact_id, contacts_t.c.name, m.address, m.attempts, m.error)
                .join(contacts_t, contacts_t.c.id == m.contact_id)
                .where(m.campaign_id == campaign["id"], m.state == "review")
                .order_by(m.id)
            )
            return [r._asdict() for r in rows]

    async def settle_held(
        self, ref: int | str, *, resend: bool, actor: Actor, ids: Sequence[int] | None = None
    ) -> list[int]:
        """Send held messages again (the person checked they did not go) or take them as
        sent; returns the ids settled."""
        campaign = await self.get(ref)
        change = ch.SettleHeldMessages(
            campaign_id=campaign["id"],
            resend=resend,
            message_ids=list(ids) if ids is not None else None,
        )
        await self.writer.apply([change], actor)
        return change.settled

    # -- consent -------------------------------------------------------------------------

    async def set_consent(
        self, contact_id: int, channel: Channel, granted: bool, *, source: str, actor: Actor
    ) -> None:
        await self.writer.apply(
            [ch.SetConsent(contact=contact_id, channel=channel, granted=granted, source=source)],
            actor,
        )

    async def opted_out(self, channel: Channel, address: str, *, source: str) -> int:
        """Withdraw ``channel`` consent of every contact with ``address`` (normalized)."""
        kind = "phone" if channel == "sms" else "email"
        async with self.store.read() as conn:
            rows = await conn.execute(
                select(points_t.c.contact_id)
                .where(points_t.c.kind == kind, points_t.c.normalized == address.strip().lower())
                .distinct()
            )
            ids = [contact_id for (contact_id,) in rows]
        if ids:
            await self.writer.apply(
                [
                    ch.SetConsent(contact=i, channel=channel, granted=False, source=source)
                    for i in ids
                ],
                Actor("system", source),
            )
        return len(ids)

    async def delivered(self, gateway: str, reports: Sequence[DeliveryReport]) -> int:
        return await outbox.delivered(self.store, gateway, reports, utcnow())

    # -- unsubscribe links ---------------------------------------------------------------

    async def load_key(self) -> None:
        """The key that signs unsubscribe links: made once, kept in the store, so every
        process and every restart signs and checks the same links."""
        async with self.store.write() as conn:
            await upsert(
                conn,
                state_t,
                [
                    {
                        "key": UNSUBSCRIBE_KEY,
                        "value": {"key": secrets.token_hex(32)},
                        "updated_at": utcnow(),
                    }
                ],
                key=["key"],
            )
            row = (
                await conn.execute(select(state_t.c.value).where(state_t.c.key == UNSUBSCRIBE_KEY))
            ).scalar_one()
        self._key = bytes.fromhex(row["key"])

    def _sign(self, body: str) -> str:
        if self._key is None:
            raise RuntimeError("unsubscribe links are made before the hub loaded their key")
        digest = hmac.new(self._key, body.encode(), hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def unsubscribe_token(self, campaign_id: int, contact_id: int, channel: str) -> str:
        body = f"{campaign_id}.{contact_id}.{channel}"
        return f"{body}.{self._sign(body)}"

    def unsubscribe_url(self, campaign_id: int, contact_id: int, channel: str) -> str:
        token = self.unsubscribe_token(campaign_id, contact_id, channel)
        return f"{self.settings.campaigns.public_url}/unsubscribe/{token}"

    def read_token(self, token: str) -> tuple[int, int, Channel] | None:
        """The campaign, contact and channel an unsubscribe link is for; None if forged."""
        try:
            campaign, contact, channel, signature = token.split(".")
            ids = int(campaign), int(contact)
        except ValueError:
            return None
        if channel not in ("sms", "email"):
            return None
        if not hmac.compare_digest(signature, self._sign(f"{campaign}.{contact}.{channel}")):
            return None
        return ids[0], ids[1], channel  # type: ignore[return-value]

    async def unsubscribe(self, token: str) -> bool:
        found = self.read_token(token)
        if found is None:
            return False
        campaign_id, contact_id, channel = found
        source = f"unsubscribe:campaign:{campaign_id}"
        await self.writer.apply(
            [ch.SetConsent(contact=contact_id, channel=channel, granted=False, source=source)],
            Actor("system", "unsubscribe"),
        )
        return True
