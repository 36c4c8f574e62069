"""Filing a stored letter: a reply to its deal, a new sender's request as a lead, the rest
skipped with the reason.

The intake worker hands a batch's stored letters here together (``hub_intake_handler``,
``handle_batch``), in the batch's transaction: the store is asked once per kind of
question for the whole batch (the threads its letters answer, their senders' letters in
the last hour, the deals replied to), and the replies, their notifications and the
bounces' marks go to the writer in one call, the new leads to the lead pipeline's one
bulk run. A letter is filed as it would be alone, in the order the letters came:

1. *Not a request* (:func:`~plugins.email_inbound.skipping.skip_reason`): auto-replies,
   bulk mail, mailing lists, the company's own addresses, the block list are skipped
   with the reason (``hub inbox list`` shows it as the event's result). A bounce marks
   each address that failed for good as bouncing on its contact (``bouncing_emails`` in
   the contact's fields, which campaigns read) and is skipped too.
2. *A reply*: In-Reply-To or References naming a letter the hub has seen (a stored
   letter filed on a deal) or sent (``deal-mail:<id>`` in the outbox) files it on that
   deal as an ``email`` activity, and its owner is told. A letter answering another of
   the same batch waits for it: the answered letter is filed first, and the answer goes
   to the deal it made.
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

from collections.abc import Sequence
from dataclasses import dataclass
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
        [outcome] = await self.handle_batch([event])
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def handle_batch(self, events: Sequence[Stored]) -> list[Outcome | BaseException]:
        """File a batch's letters together: the store asked once per kind of question for
        all of them, and everything they change (replies, their notifications, bounces)
        handed to the writer in one call. A letter that cannot be read is that letter's
        exception, with nothing written for it; one that fails the writer fails the call
        (the worker then files the letters one by one)."""
        if not events:
            return []
        first = events[0]  # the batch's transaction and time, shared by all its events
        letters = [await self._read(event) for event in events]
        bouncing: dict[int, set[str]] = {}  # contact -> addresses marked in this batch
        changes: list[Change] = []
        for letter in letters:
            if letter.bounced:
                assert letter.mail is not None
                letter.outcome = {
                    "skipped": "bounce",
                    **await self._bounced(letter.event, letter.mail, bouncing),
                }
        for contact, addresses in bouncing.items():
            changes.append(
                UpdateContact(contact=contact, custom={"bouncing_emails": sorted(addresses)})
            )
            # A hard bounce ends email campaigns to the contact (as an opt-out would).
            changes.append(
                SetConsent(contact=contact, channel="email", granted=False, source="bounce")
            )
        waiting = [letter for letter in letters if letter.outcome is None]
        threads = await self._threads(first, waiting)
        counts = await self._leads_within_hour(
            first, [x.sender for x in waiting if x.sender and id(x) not in threads]
        )
        recent: dict[str, list[datetime]] = {}  # the loop guard's counts, kept if filed
        replies: list[tuple[_Letter, int, int | None, str]] = []
        answers = _answered_in_batch(waiting, threads)  # id(reply) -> the letter it answers
        needed = {id(answered) for answered in answers.values()}
        filed: dict[int, tuple[int, int | None]] = {}  # id(letter) -> its deal and contact
        for letter in _answered_first(waiting, answers):
            thread = threads.get(id(letter))
            if thread is None and id(letter) in answers:
                thread = filed.get(id(answers[id(letter)]))
            if thread is not None:
                replies.append((letter, *thread, "reply"))
                filed[id(letter)] = thread
                continue
            assert letter.sender is not None and letter.mail is not None
            looping = self._past_limit(first.now, letter.sender, counts, recent)
            if looping:
                last = await self._last_deal(letter.event, letter.sender)
                if last is not None:
                    replies.append((letter, *last, "loop_guard"))
                    filed[id(letter)] = last
                    continue
            lead = self._lead(letter, looping)
            if id(letter) not in needed:
                letter.outcome = lead
                continue
            # A later letter of this batch answers this one: file it now, not in the bulk
            # run after the batch, so the answer knows the deal it belongs to.
            decision = await letter.event.lead(lead.lead)
            letter.outcome = {**lead.result, **decision}
            if decision.get("deal_id"):
                filed[id(letter)] = (decision["deal_id"], decision.get("contact_id"))
        if replies:
            changes += await self._replies(first, replies)
        if changes:
            await self.hub.deals.apply_in(first.conn, _by_kind(changes), ACTOR, first.now)
        self._remember(recent, first.now)
        return [letter.outcome for letter in letters]  # type: ignore[misc]

    async def _read(self, event: Stored) -> _Letter:
        """The letter of ``event`` understood, or the outcome it already has."""
        letter = _Letter(event)
        try:
            payload = event.payload
            if payload.get("too_large"):
                letter.outcome = {"skipped": "too_large", "size": payload.get("size")}
                return letter
            path = self.hub.attachments.path(payload["raw"])
            if path is None:
                raise FileNotFoundError(f"the stored letter {payload['raw']} is missing")
            mail = read_message(path.read_bytes(), max_attachment=self.config.max_attachment)
            letter.mail, letter.sender = mail, _address(mail.sender)
            reason = skip_reason(
                mail,
                own_addresses=self.own_addresses,
                own_domains=self.own_domains,
                blocked=self.blocked,
            )
            if reason == "bounce":
                letter.bounced = True
            elif reason is not None:
                letter.outcome = {"skipped": reason, "sender": letter.sender}
            elif letter.sender is None:
                letter.outcome = {"skipped": "no_sender"}
            else:
                letter.record = await self._record(mail, letter.sender)
        except Exception as error:
            letter.outcome = error
        return letter

    def _lead(self, letter: _Letter, looping: bool) -> AsLead:
        mail, sender, payload = letter.mail, letter.sender, letter.event.payload
        assert mail is not None and sender is not None
        route = self.config.route(payload)
        lead = Lead(
            channel=CHANNEL,
            name=mail.sender_name or None,
            emails=[sender],
            phones=list(mail.signature_phones),
            company=mail.signature_company or mail.sender_domain_company,
            message=mail.text[:TEXT_KEPT] or None,
            source=route.source if route else "Email",
            pipeline=route.pipeline if route else None,
            stage=route.stage if route else None,
            activity_kind="email",
            activity_payload={"email": letter.record},
            summary=mail.subject or "(без темы)",
            submission={"from": sender, "subject": mail.subject},
            received_at=mail.date,
            follow_up=not looping,
        )
        filed = "loop_guard" if looping else "lead"
        return AsLead(lead, {"filed": filed, "sender": sender, "message_id": mail.message_id})

    # -- replies ----------------------------------------------------------------------------

    async def _threads(
        self, first: Stored, letters: Sequence[_Letter]
    ) -> dict[int, tuple[int, int | None]]:
        """The deal (and its contact) of each letter that answers one the hub has seen or
        sent, by ``id()`` of the letter: two questions to the store for the whole batch."""
        wanted: dict[_Letter, list[str]] = {}
        for letter in letters:
            assert letter.mail is not None
            refs = [*letter.mail.in_reply_to, *reversed(letter.mail.references)]
            if refs:
                wanted[letter] = refs
        if not wanted:
            return {}
        referenced = {ref for refs in wanted.values() for ref in refs}
        keys = {ref: _inbox_key(ref, first.now) for ref in referenced}
        seen: dict[str, dict[str, Any]] = {}
        for chunk in _chunks(sorted(set(keys.values()))):
            rows = await first.store.execute(
                select(InboxEvent.idem_key, InboxEvent.result).where(
                    InboxEvent.channel == CHANNEL,
                    InboxEvent.idem_key.in_(chunk),
                    InboxEvent.status == "done",
                )
            )
            seen.update({row.idem_key: row.result for row in rows if row.result})
        sent: dict[str, int] = {}
        for chunk in _chunks(sorted({outbox_key(ref) for ref in referenced})):
            rows = await first.store.execute(
                select(Notification.key, Notification.deal_id).where(Notification.key.in_(chunk))
            )
            sent.update({row.key: row.deal_id for row in rows if row.deal_id is not None})
        found: dict[int, tuple[int, int | None]] = {}
        for letter, refs in wanted.items():
            for ref in refs:  # the nearest first, as a mail client threads them
                result = seen.get(keys[ref])
                if result and result.get("deal_id"):
                    found[id(letter)] = (result["deal_id"], result.get("contact_id"))
                    break
                if outbox_key(ref) in sent:
                    found[id(letter)] = (sent[outbox_key(ref)], None)
                    break
        return found

    async def _replies(
        self, first: Stored, replies: Sequence[tuple[_Letter, int, int | None, str]]
    ) -> list[Change]:
        """Each letter an activity on its deal and a word to the deal's owner; what the
        writer is to write for them all."""
        deals = {
            row.id: row
            for chunk in _chunks(sorted({deal_id for _, deal_id, _, _ in replies}))
            for row in await first.store.execute(
                select(Deal.id, Deal.contact_id, Deal.owner_id).where(Deal.id.in_(chunk))
            )
        }
        changes: list[Change] = []
        for letter, deal_id, contact_id, filed in replies:
            mail, record, event = letter.mail, letter.record, letter.event
            assert mail is not None and record is not None
            deal = deals.get(deal_id)
            if deal is None:  # the deal was deleted since: file it as a new letter would be
                letter.outcome = {"filed": "reply_lost", "deal_id": deal_id}
                continue
            changes.append(
                LogActivity(
                    activity="email",
                    summary=mail.subject or "(без темы)",
                    deal=deal_id,
                    contact=contact_id or deal.contact_id,
                    payload={"email": record},
                    occurred_at=mail.date,
                    inbox_id=event.id,
                )
            )
            changes += self.hub.notifications.queue(
                to=["owner"],
                template="email_received",
                context={
                    "from": letter.sender,
                    "from_name": mail.sender_name,
                    "subject": mail.subject,
                    "preview": mail.text[:500],
                },
                key=f"email:{event.id}",
                now=event.now,
                deal={"id": deal_id, "owner_id": deal.owner_id},
                event_type="activity.logged",
            )
            letter.outcome = {
                "filed": filed,
                "deal_id": deal_id,
                "contact_id": contact_id or deal.contact_id,
                "message_id": mail.message_id,
            }
        return changes

    # -- bounces ----------------------------------------------------------------------------

    async def _bounced(
        self,
        event: Stored,
        mail: Mail,
        bouncing: dict[int, set[str]],
    ) -> dict[str, Any]:
        failed = [
            _address(r.address)
            for r in (mail.bounce.recipients if mail.bounce else [])
            if r.permanent
        ]
        failed = [f for f in failed if f]
        marked: list[int] = []
        for address in failed:
            rows = await event.store.execute(
                select(Contact.id, Contact.custom)
                .join(ContactPoint, ContactPoint.contact_id == Contact.id)
                .where(ContactPoint.kind == "email", ContactPoint.normalized == address)
            )
            for row in rows:
                # A contact two bounces of the batch name is marked once, with both.
                bouncing.setdefault(row.id, set((row.custom or {}).get("bouncing_emails", []))).add(
                    address
                )
                marked.append(row.id)
        return {"failed": failed, "contacts_marked": marked}

    # -- the loop guard -------------------------------------------------------------------

    def _past_limit(
        self,
        now: datetime,
        sender: str,
        counts: dict[str, int],
        recent: dict[str, list[datetime]],
    ) -> bool:
        """Whether the sender already sent ``leads_per_sender_per_hour`` letters within the
        hour. Counted in this process (a batch's letters are not in the store yet), and
        asked of the store once per sender and hour (letters read before a restart, or by
        another hub process): ``counts``."""
        hour_ago = now - timedelta(hours=1)
        seen = recent.get(sender)
        if seen is None:
            seen = [t for t in self._recent.get(sender, ()) if t >= hour_ago]
            if not seen:
                seen = [now] * counts.get(sender, 0)
        past = len(seen) >= self.config.leads_per_sender_per_hour
        recent[sender] = [*seen, now]
        return past

    def _remember(self, recent: dict[str, list[datetime]], now: datetime) -> None:
        self._recent.update(recent)
        if len(self._recent) > 100_000:  # forget the quiet ones
            hour_ago = now - timedelta(hours=1)
            self._recent = {k: v for k, v in self._recent.items() if v[-1] >= hour_ago}

    async def _leads_within_hour(self, first: Stored, senders: Sequence[str]) -> dict[str, int]:
        """Each sender's letters filed in the last hour (their contacts' email activities),
        for the senders this process has not counted within the hour."""
        hour_ago = first.now - timedelta(hours=1)
        unknown = sorted(
            {s for s in senders if not any(t >= hour_ago for t in self._recent.get(s, ()))}
        )
        counts: dict[str, int] = {}
        for chunk in _chunks(unknown):
            rows = await first.store.execute(
                select(ContactPoint.normalized, func.count(Activity.id))
                .select_from(Activity)
                .join(
                    ContactPoint,
                    and_(
                        ContactPoint.contact_id == Activity.contact_id,
                        ContactPoint.kind == "email",
                    ),
                )
                .where(
                    ContactPoint.normalized.in_(chunk),
                    Activity.kind == "email",
                    Activity.direction == "in",
                    Activity.occurred_at >= hour_ago,
                )
                .group_by(ContactPoint.normalized)
            )
            counts.update({normalized: int(n) for normalized, n in rows})
        return counts

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

    async def _record(self, mail: Mail, sender: str | None) -> dict[str, Any]:
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
            "from": sender,
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


Outcome = dict[str, Any] | AsLead


@dataclass(slots=True, eq=False)
class _Letter:
    """One event of a batch while it is filed."""

    event: Stored
    mail: Mail | None = None
    sender: str | None = None
    record: dict[str, Any] | None = None  # what its activity keeps
    bounced: bool = False
    outcome: Outcome | BaseException | None = None


def _answered_in_batch(
    letters: Sequence[_Letter], threads: dict[int, tuple[int, int | None]]
) -> dict[int, _Letter]:
    """For each letter answering another of ``letters`` (and no thread the store knows),
    by ``id()``: the letter it answers, the nearest reference first."""
    by_message_id = {x.mail.message_id: x for x in letters if x.mail and x.mail.message_id}
    answers: dict[int, _Letter] = {}
    for letter in letters:
        if id(letter) in threads or letter.mail is None:
            continue
        for ref in (*letter.mail.in_reply_to, *reversed(letter.mail.references)):
            answered = by_message_id.get(ref)
            if answered is not None and answered is not letter:
                answers[id(letter)] = answered
                break
    return answers


def _answered_first(letters: Sequence[_Letter], answers: dict[int, _Letter]) -> list[_Letter]:
    """``letters`` in their order, except that a letter comes after the one it answers
    (a thread of several replies in one batch, whatever order they came in)."""
    ordered: list[_Letter] = []
    placed: set[int] = set()

    def place(letter: _Letter, path: set[int]) -> None:
        if id(letter) in placed or id(letter) in path:  # a loop of references: as it came
            return
        answered = answers.get(id(letter))
        if answered is not None:
            place(answered, path | {id(letter)})
        placed.add(id(letter))
        ordered.append(letter)

    for letter in letters:
        place(letter, set())
    return ordered


def _inbox_key(message_id: str, now: datetime) -> str:
    """The intake's key of the letter with ``message_id`` (see ``channel.message_key``)."""
    key, _ = idempotency_keys(
        external_id=f"mid:{message_id}", fingerprint=None, now=now, window=timedelta(seconds=1)
    )
    return key


def _chunks(values: Sequence[Any], size: int = 500) -> list[Sequence[Any]]:
    """``values`` in pieces an ``IN (...)`` takes on any SQLite."""
    return [values[i : i + size] for i in range(0, len(values), size)]


def _by_kind(changes: list[Change]) -> list[Change]:
    """The changes with each kind together (the writer writes a run of one kind with one
    statement), in the order each kind first came."""
    order: dict[type, int] = {}
    for change in changes:
        order.setdefault(type(change), len(order))
    return sorted(changes, key=lambda change: order[type(change)])


def _address(raw: str | None) -> str | None:
    if not raw:
        return None
    try:
        return normalize_email(raw)
    except (InvalidPoint, ValueError):
        return raw.strip().lower() or None
