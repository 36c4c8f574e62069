"""Filing a stored letter: a reply to its deal, a new sender's request as a lead, the rest
skipped with the reason.

The intake worker hands every stored letter here (``hub_intake_handler``), in its
batch's transaction. In order:

1. *Not a request* (:func:`~plugins.email_inbound.skipping.skip_reason`): auto-replies,
   bulk mail, mailing lists, the company's own addresses, the block list are skipped
   with the reason (``hub inbox list`` shows it as the event's result). A bounce marks
   each address that failed for good as bouncing on its contact (``bouncing_emails`` in
   the contact's fields, which campaigns read) and is skipped too.
2. *A reply*: In-Reply-To or References naming a letter the hub has seen (a stored
   letter filed on a deal) or sent (``deal-mail:<id>`` in the outbox) files it on that
   deal as an ``email`` activity, and its owner is told.
3. *A request*: the sender is matched as any lead, with the forms' policy on repeats: a
   known contact's letter goes to their open deal (an activity and a task for the owner),
   a new sender becomes a contact and a deal in the mailbox's pipeline, source "Email".
   Phones in the signature become contact points; the company in the signature, or the
   sender's corporate domain, fills the company. A sender past
   ``leads_per_sender_per_hour`` makes no more leads: their letter is an activity on the
   deal of their last one (a loop between two autoresponders stops there).

Attachments are kept in the attachment store and listed on the activity.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import and_, func, select

from hub.context import PluginView
from hub.deals import Actor
from hub.deals.changes import Change, LogActivity, SetConsent, UpdateContact
from hub.domain.lead import Lead
from hub.domain.normalize import InvalidPoint, normalize_email
from hub.intake import idempotency_keys
from hub.intake.handlers import AsLead, Stored
from hub.store.models import Activity, Contact, ContactPoint, Deal, InboxEvent, Notification
from plugins.email_inbound.config import EmailInboundConfig
from plugins.email_inbound.message import Mail, read_message
from plugins.email_inbound.sending import outbox_key
from plugins.email_inbound.skipping import skip_reason

log = structlog.get_logger("plugins.email_inbound")

CHANNEL = "email_inbound"
ACTOR = Actor.plugin(CHANNEL)
TEXT_KEPT = 20_000  # characters of a letter's text kept on its activity


class MailFiling:
    def __init__(self, config: EmailInboundConfig, hub: PluginView) -> None:
        self.config = config
        self.hub = hub
        self.own_addresses = set(config.own_addresses)
        self.own_domains = set(config.own_domains)
        self.blocked = set(config.block)
        self._recent: dict[str, list[datetime]] = {}  # sender -> when their letters came

    async def handle(self, event: Stored) -> dict[str, Any] | AsLead:
        payload = event.payload
        if payload.get("too_large"):
            return {"skipped": "too_large", "size": payload.get("size")}
        path = self.hub.attachments.path(payload["raw"])
        if path is None:
            raise FileNotFoundError(f"the stored letter {payload['raw']} is missing")
        mail = read_message(path.read_bytes(), max_attachment=self.config.max_attachment)
        sender = _address(mail.sender)
        reason = skip_reason(
            mail,
            own_addresses=self.own_addresses,
            own_domains=self.own_domains,
            blocked=self.blocked,
        )
        if reason == "bounce":
            return {"skipped": "bounce", **await self._bounced(event, mail)}
        if reason is not None:
            return {"skipped": reason, "sender": sender}
        if sender is None:
            return {"skipped": "no_sender"}
        record = await self._record(mail)
        thread = await self._thread(event, mail)
        if thread is not None:
            return await self._reply(event, mail, record, *thread)
        mailbox = self.config.mailboxes.get(payload.get("mailbox", ""))
        looping = await self._past_limit(event, sender)
        if looping:
            last = await self._last_deal(event, sender)
            if last is not None:
                result = await self._reply(event, mail, record, *last)
                return {**result, "filed": "loop_guard"}
        lead = Lead(
            channel=CHANNEL,
            name=mail.sender_name or None,
            emails=[sender],
            phones=list(mail.signature_phones),
            company=mail.signature_company or mail.sender_domain_company,
            message=mail.text[:TEXT_KEPT] or None,
            source=mailbox.source if mailbox else "Email",
            pipeline=mailbox.pipeline if mailbox else None,
            stage=mailbox.stage if mailbox else None,
            activity_kind="email",
            activity_payload={"email": record},
            summary=mail.subject or "(без темы)",
            submission={"from": sender, "subject": mail.subject},
            received_at=mail.date,
            follow_up=not looping,
        )
        filed = "loop_guard" if looping else "lead"
        return AsLead(lead, {"filed": filed, "sender": sender, "message_id": mail.message_id})

    # -- replies ----------------------------------------------------------------------------

    async def _thread(self, event: Stored, mail: Mail) -> tuple[int, int | None] | None:
        """The deal (and its contact) of a letter this one answers, seen or sent by the hub."""
        for referenced in [*mail.in_reply_to, *reversed(mail.references)]:
            key, _ = idempotency_keys(
                external_id=f"mid:{referenced}",
                fingerprint=None,
                now=event.now,
                window=timedelta(seconds=1),
            )
            seen = (
                await event.store.execute(
                    select(InboxEvent.result).where(
                        InboxEvent.channel == CHANNEL,
                        InboxEvent.idem_key == key,
                        InboxEvent.status == "done",
                    )
                )
            ).first()
            if seen is not None and seen.result and seen.result.get("deal_id"):
                return seen.result["deal_id"], seen.result.get("contact_id")
            sent = (
                await event.store.execute(
                    select(Notification.deal_id).where(Notification.key == outbox_key(referenced))
                )
            ).first()
            if sent is not None and sent.deal_id is not None:
                return sent.deal_id, None
        return None

    async def _reply(
        self,
        event: Stored,
        mail: Mail,
        record: dict[str, Any],
        deal_id: int,
        contact_id: int | None,
    ) -> dict[str, Any]:
        deal = (
            await event.store.execute(
                select(Deal.contact_id, Deal.owner_id).where(Deal.id == deal_id)
            )
        ).first()
        if deal is None:  # the deal was deleted since: file it as a new letter would be
            return {"filed": "reply_lost", "deal_id": deal_id}
        changes: list[Change] = [
            LogActivity(
                activity="email",
                summary=mail.subject or "(без темы)",
                deal=deal_id,
                contact=contact_id or deal.contact_id,
                payload={"email": record},
                occurred_at=mail.date,
                inbox_id=event.id,
            )
        ]
        changes += self.hub.notifications.queue(
            to=["owner"],
            template="email_received",
            context={
                "from": _address(mail.sender),
                "from_name": mail.sender_name,
                "subject": mail.subject,
                "preview": mail.text[:500],
            },
            key=f"email:{event.id}",
            now=event.now,
            deal={"id": deal_id, "owner_id": deal.owner_id},
            event_type="activity.logged",
        )
        await self.hub.deals.apply_in(event.conn, changes, ACTOR, event.now)
        return {
            "filed": "reply",
            "deal_id": deal_id,
            "contact_id": contact_id or deal.contact_id,
            "message_id": mail.message_id,
        }

    # -- bounces ----------------------------------------------------------------------------

    async def _bounced(self, event: Stored, mail: Mail) -> dict[str, Any]:
        failed = [
            _address(r.address)
            for r in (mail.bounce.recipients if mail.bounce else [])
            if r.permanent
        ]
        failed = [f for f in failed if f]
        marked: list[int] = []
        changes: list[Change] = []
        for address in failed:
            rows = await event.store.execute(
                select(Contact.id, Contact.custom)
                .join(ContactPoint, ContactPoint.contact_id == Contact.id)
                .where(ContactPoint.kind == "email", ContactPoint.normalized == address)
            )
            for row in rows:
                bouncing = sorted({*(row.custom or {}).get("bouncing_emails", []), address})
                changes.append(UpdateContact(contact=row.id, custom={"bouncing_emails": bouncing}))
                # A hard bounce ends email campaigns to the contact (as an opt-out would).
                changes.append(
                    SetConsent(contact=row.id, channel="email", granted=False, source="bounce")
                )
                marked.append(row.id)
        if changes:
            await self.hub.deals.apply_in(event.conn, changes, ACTOR, event.now)
        return {"failed": failed, "contacts_marked": marked}

    # -- the loop guard -------------------------------------------------------------------

    async def _past_limit(self, event: Stored, sender: str) -> bool:
        """Whether the sender already sent ``leads_per_sender_per_hour`` letters within the
        hour. Counted in this process (a batch's letters are not in the store yet), and
        asked of the store once per sender and hour (letters read before a restart, or by
        another hub process)."""
        hour_ago = event.now - timedelta(hours=1)
        seen = [t for t in self._recent.get(sender, ()) if t >= hour_ago]
        if not seen:
            seen = [event.now] * await self._leads_within_hour(event, sender)
        past = len(seen) >= self.config.leads_per_sender_per_hour
        seen.append(event.now)
        self._recent[sender] = seen
        if len(self._recent) > 100_000:  # forget the quiet ones
            self._recent = {k: v for k, v in self._recent.items() if v[-1] >= hour_ago}
        return past

    async def _leads_within_hour(self, event: Stored, sender: str) -> int:
        """The sender's letters filed in the last hour (their contacts' email activities)."""
        contacts = select(ContactPoint.contact_id).where(
            ContactPoint.kind == "email", ContactPoint.normalized == sender
        )
        count = await event.store.execute(
            select(func.count())
            .select_from(Activity)
            .where(
                Activity.contact_id.in_(contacts),
                Activity.kind == "email",
                Activity.direction == "in",
                Activity.occurred_at >= event.now - timedelta(hours=1),
            )
        )
        return int(count.scalar_one())

    async def _last_deal(self, event: Stored, sender: str) -> tuple[int, int | None] | None:
        row = (
            await event.store.execute(
                select(Deal.id, Deal.contact_id)
                .join(
                    ContactPoint,
                    and_(
                        ContactPoint.contact_id == Deal.contact_id,
                        ContactPoint.kind == "email",
                    ),
                )
                .where(ContactPoint.normalized == sender)
                .order_by(Deal.id.desc())
                .limit(1)
            )
        ).first()
        return (row.id, row.contact_id) if row else None

    # -- what the activity keeps ------------------------------------------------------------

    async def _record(self, mail: Mail) -> dict[str, Any]:
        attachments = []
        for part in mail.attachments:
            digest = await self.hub.attachments.save(part.content)
            attachments.append(
                {
                    "filename": part.filename,
                    "content_type": part.content_type,
                    "size": part.size,
                    "sha256": digest,
                }
            )
        return {
            "message_id": mail.message_id,
            "from": _address(mail.sender),
            "from_name": mail.sender_name,
            "to": list(mail.to),
            "subject": mail.subject,
            "text": mail.text[:TEXT_KEPT],
            "date": mail.date.isoformat() if mail.date else None,
            "attachments": attachments,
            "skipped_attachments": [
                {"filename": s.filename, "reason": s.reason} for s in mail.skipped_attachments
            ],
        }


def _address(raw: str | None) -> str | None:
    if not raw:
        return None
    try:
        return normalize_email(raw)
    except (InvalidPoint, ValueError):
        return raw.strip().lower() or None
